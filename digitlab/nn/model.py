"""Sequential: layers applied in order, with every parameter and gradient a view into one flat float32 buffer.

One buffer means the optimizer updates the whole model with a few in-place ufuncs instead of a Python loop
over arrays, and a checkpoint is two arrays. When the loss fuses the final activation (sigmoid with BCE,
softmax with cross-entropy), that activation is kept as `output_activation`: `forward` stops before it and
returns logits for the loss, `predict` applies it.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from digitlab.nn.base import Layer, Parameter, WeightLayer

EVAL_ACTIVATION_BYTES = 2 << 20  # evaluation runs in slices whose widest activation is about this big (L2-sized)


class ShapeError(ValueError):
    """A layer that cannot take the shape the layer before it gives; `index` is its position in the model."""

    def __init__(self, index: int, message: str):
        self.index = index
        super().__init__(message)


class Parameters:
    """The model's parameters: flat `data` and `grad` buffers, and named views into them ("0.weight", ...)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtype=np.float32):
        total = sum(math.prod(s) for s in shapes.values())
        self.data = np.zeros(total, dtype=dtype)
        self.grad = np.zeros(total, dtype=dtype)
        self.named: dict[str, Parameter] = {}
        offset = 0
        for name, shape in shapes.items():
            size = math.prod(shape)
            self.named[name] = Parameter(self.data[offset:offset + size].reshape(shape),
                                         self.grad[offset:offset + size].reshape(shape))
            offset += size

    def __len__(self) -> int:
        return self.data.size

    def __iter__(self):
        return iter(self.named.values())


def plan(layers: list[Layer], in_shape: tuple[int, ...]) -> tuple[list[tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """Build each layer for the shape the one before it gives, allocating nothing: every layer's output shape
    and every parameter's shape ("<index>.<name>"). Config validation uses it to size a model before any
    memory is touched."""
    shape, layer_shapes, param_shapes = tuple(in_shape), [], {}
    for i, layer in enumerate(layers):
        try:
            shape = layer.build(shape)
        except ValueError as exc:
            raise ShapeError(i, str(exc)) from None
        layer_shapes.append(shape)
        param_shapes.update({f"{i}.{k}": v for k, v in layer.param_shapes().items()})
    return layer_shapes, param_shapes


def execution_order(layers: list[Layer]) -> list[int]:
    """The order the layers run in: as listed, except that an elementwise non-decreasing activation (ReLU,
    sigmoid...) right before max pooling runs after it. max(f(x)) = f(max(x)) for such an f, and the gradients
    are the same too, so the numbers do not change; the activation just touches a quarter of the values."""
    order = list(range(len(layers)))
    i = 0
    while i < len(layers) - 1:
        if layers[i].monotone and layers[i + 1].takes_max:
            order[i], order[i + 1] = i + 1, i
            i += 2
        else:
            i += 1
    return order


class Sequential:
    """Layers in order. `dtype` is float32 for training; the tests build float64 models to check gradients."""

    def __init__(self, layers: list[Layer], in_shape: tuple[int, ...], output_activation: Layer | None = None,
                 dtype=np.float32):
        self.layers, self.in_shape, self.output_activation = layers, tuple(in_shape), output_activation
        self.layer_shapes, shapes = plan(layers, self.in_shape)
        self.out_shape = self.layer_shapes[-1] if layers else self.in_shape
        if output_activation is not None:
            output_activation.build(self.out_shape)
        self.params = Parameters(shapes, dtype)
        for i, layer in enumerate(layers):
            layer.bind({k.split(".", 1)[1]: p for k, p in self.params.named.items() if k.split(".")[0] == str(i)})
        first = next((layer for layer in layers if layer.param_shapes()), None)
        if first is not None and layers.index(first) == 0:
            first.needs_input_grad = False
        self.order = execution_order(layers)
        for before, after in zip(self.order, self.order[1:]):
            if hasattr(layers[after], "inplace"):  # an activation may overwrite a fresh output nobody keeps
                layers[after].inplace = layers[before].fresh_output
        self.training = True
        self.backward_ready = False  # what the last forward kept lets a backward run

    # -- set-up ------------------------------------------------------------------------------------------
    def reset_parameters(self, rng: np.random.Generator) -> None:
        """Initialise every parameter from `rng`; dropout layers keep `rng` for their masks."""
        for layer in self.layers:
            layer.reset_parameters(rng)

    def parameters(self) -> Parameters:
        return self.params

    def decay_mask(self) -> np.ndarray:
        """1 for the weights of linear and conv layers, 0 for biases and batch norm's parameters: where weight
        decay applies when an optimizer has `decay_all: false`."""
        return self._per_element(lambda layer, kind: kind == "weight" and isinstance(layer, WeightLayer))

    def lr_scales(self) -> np.ndarray | None:
        """Each parameter element's learning-rate multiplier (its layer's lr_scale), or None when all are 1."""
        if all(layer.lr_scale == 1 for layer in self.layers):
            return None
        return self._per_element(lambda layer, kind: layer.lr_scale)

    def _per_element(self, value) -> np.ndarray:
        """An array over the flat parameter buffer: value(layer, kind) for every element of each parameter
        ("3.weight" is layer 3's, kind "weight")."""
        out = np.empty(len(self.params), dtype=self.params.data.dtype)
        offset = 0
        for name, p in self.params.named.items():
            index, kind = name.split(".", 1)
            out[offset:offset + p.data.size] = value(self.layers[int(index)], kind)
            offset += p.data.size
        return out

    def num_parameters(self) -> int:
        return len(self.params)

    def train(self, mode: bool = True) -> Sequential:
        self.training = mode
        for layer in self.layers:
            layer.training = mode
        return self

    def eval(self) -> Sequential:
        return self.train(False)

    @contextlib.contextmanager
    def evaluating(self):
        """Evaluation mode inside the block, and the mode it had before restored after it."""
        was_training = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(was_training)

    @property
    def closed_form(self) -> bool:
        """True for a model fitted in one pass (class means) rather than trained by gradient steps."""
        return any(layer.closed_form for layer in self.layers)

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fit the closed-form layers in one pass, each on what the layers before it give for x (classes y)."""
        with self.evaluating():
            for layer in self.layers:
                if layer.closed_form:
                    layer.fit(x, y)
                x = layer.forward(x)

    # -- the two passes -----------------------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """The outputs before the output activation (logits when the loss fuses it). In training mode every
        layer keeps what backward needs; in evaluation mode nothing is kept and large inputs are run a
        cache-sized slice at a time."""
        self.backward_ready = False
        if not self.training and len(x) > self.eval_chunk:
            return np.concatenate([self.forward(x[i:i + self.eval_chunk]) for i in range(0, len(x), self.eval_chunk)])
        for i in self.order:
            x = self.layers[i].forward(x)
        self.backward_ready = self.training
        return x

    @property
    def eval_chunk(self) -> int:
        """Samples per slice in evaluation: a conv net's 2000-image evaluation batch would otherwise make
        activations of hundreds of MB, streamed through memory layer after layer; an MLP's fits whole."""
        widest = max((math.prod(s) for s in self.layer_shapes), default=1)
        return max(16, EVAL_ACTIVATION_BYTES // (4 * widest))

    def backward(self, grad: np.ndarray) -> None:
        """Backpropagate dL/doutput; every parameter's .grad is overwritten (no zero_grad needed). It needs the
        training-mode forward just before it: an evaluation-mode forward keeps nothing to go back through."""
        if not self.backward_ready:
            raise RuntimeError("backward needs a training-mode forward just before it (model.train()); the last "
                               "forward ran in evaluation mode and kept nothing. Use input_gradient for saliency.")
        self.backward_ready = False
        for i in reversed(self.order):
            grad = self.layers[i].backward(grad)

    def input_gradient(self, x: np.ndarray, output_grad) -> np.ndarray:
        """dL/dx for inputs x in evaluation mode (no dropout, batch norm's running statistics), where
        `output_grad(outputs)` gives dL/doutputs for the outputs before the output activation. Saliency maps are
        this with L the predicted class's score. Parameter gradients are overwritten on the way."""
        first = self.layers[0]
        with self.evaluating():
            for layer in self.layers:
                layer.retain = True
            was, first.needs_input_grad = first.needs_input_grad, True
            try:
                out = x
                for i in self.order:
                    out = self.layers[i].forward(out)
                grad = output_grad(out)
                for i in reversed(self.order):
                    grad = self.layers[i].backward(grad)
            finally:
                first.needs_input_grad = was
                for layer in self.layers:
                    layer.retain = False
        return np.array(grad)  # a copy: layers may hand back views of buffers they reuse

    __call__ = forward

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs after the final activation, in evaluation mode (forward slices large inputs itself)."""
        with self.evaluating():
            out = self.forward(x)
        return self.output_activation.forward(out) if self.output_activation is not None else out

    # -- saving ---------------------------------------------------------------------------------------------
    def buffers(self) -> dict[str, np.ndarray]:
        """Saved but untrained state by name ("1.running_mean", ...): the arrays themselves, not copies."""
        return {f"{i}.{k}": b for i, layer in enumerate(self.layers) for k, b in layer.buffers().items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, by name."""
        return {**{name: p.data.copy() for name, p in self.params.named.items()},
                **{name: b.copy() for name, b in self.buffers().items()}}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        targets = {**{name: p.data for name, p in self.params.named.items()}, **self.buffers()}
        expected = {name: a.shape for name, a in targets.items()}
        given = {name: tuple(np.shape(a)) for name, a in state.items()}
        if expected != given:
            raise ValueError(f"weights do not match the architecture: expected {expected}, got {given}")
        for name, a in targets.items():
            a[...] = state[name]

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        head = f"\n  (output) {self.output_activation!r}" if self.output_activation else ""
        return f"Sequential(in_shape={self.in_shape},\n{inner}{head}\n)"
