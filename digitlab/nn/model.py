"""Sequential: layers applied in order, with every parameter and gradient a view into one flat float32 buffer.

One buffer means the optimizer updates the whole model with a few in-place ufuncs instead of a Python loop
over arrays, and a checkpoint is two arrays. When the loss fuses the final activation (sigmoid with BCE,
softmax with cross-entropy), that activation is kept as `output_activation`: `forward` stops before it and
returns logits for the loss, `predict` applies it.
"""

from __future__ import annotations

import math

import numpy as np

from digitlab.nn.layers import LAYERS, Dropout, Layer, Parameter


EVAL_ACTIVATION_BYTES = 2 << 20  # an evaluation pass works on slices whose widest activation is about this big (L2-sized)


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
        self.training = True

    # -- set-up ------------------------------------------------------------------------------------------
    def reset_parameters(self, rng: np.random.Generator) -> None:
        """Initialise every parameter from `rng`; dropout layers keep `rng` for their masks."""
        for layer in self.layers:
            layer.reset_parameters(rng)
            if isinstance(layer, Dropout):
                layer.rng = rng

    def parameters(self) -> Parameters:
        return self.params

    def num_parameters(self) -> int:
        return len(self.params)

    def train(self, mode: bool = True) -> "Sequential":
        self.training = mode
        for layer in self.layers:
            layer.training = mode
        return self

    def eval(self) -> "Sequential":
        return self.train(False)

    # -- the two passes -----------------------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training and len(x) > self.eval_chunk:  # no backward follows: keep activations cache-sized
            return np.concatenate([self.forward(x[i:i + self.eval_chunk]) for i in range(0, len(x), self.eval_chunk)])
        for layer in self.layers:
            x = layer.forward(x)
        return x

    @property
    def eval_chunk(self) -> int:
        """Samples per slice in evaluation: a conv net's 2000-image evaluation batch would otherwise make
        activations of hundreds of MB, streamed through memory layer after layer; an MLP's fits whole."""
        widest = max((math.prod(s) for s in self.layer_shapes), default=1)
        return max(16, EVAL_ACTIVATION_BYTES // (4 * widest))

    def backward(self, grad: np.ndarray) -> None:
        """Backpropagate dL/doutput; every parameter's .grad is overwritten (no zero_grad needed)."""
        for layer in reversed(self.layers):
            grad = layer.backward(grad)

    __call__ = forward

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Outputs after the final activation, in evaluation mode (forward slices large inputs itself)."""
        was_training = self.training
        self.eval()
        out = self.forward(x)
        self.train(was_training)
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

    def architecture(self) -> list:
        """The layer list in config form, e.g. [{'linear': {'units': 100}}, 'relu', ...]."""
        layers = self.layers + ([self.output_activation] if self.output_activation else [])
        names = {cls: name for name, cls in reversed(list(LAYERS.items()))}
        return [{names[type(l)]: l.spec()} if l.spec() else names[type(l)] for l in layers]

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        head = f"\n  (output) {self.output_activation!r}" if self.output_activation else ""
        return f"Sequential(in_shape={self.in_shape},\n{inner}{head}\n)"


# Layers between a weight and its activation that do not change which initialiser fits (batch norm
# renormalises, max pooling commutes with ReLU): conv -> batchnorm -> relu still gets He.
PASS_THROUGH = (LAYERS["batchnorm"], LAYERS["maxpool2d"])


def input_shape_for(first_layer: str, image_shape: tuple[int, ...]) -> tuple[int, ...]:
    """A model that starts with a dense layer sees flat images; any other sees (channels, rows, cols)."""
    return (math.prod(image_shape),) if LAYERS.get(first_layer) is LAYERS["linear"] else tuple(image_shape)


def build_layers(layer_specs: list[tuple[str, dict]], image_shape: tuple[int, ...],
                 fuses: type[Layer] | None = None) -> tuple[list[Layer], tuple[int, ...], Layer | None]:
    """(layers, input shape, output activation) from (name, options) pairs, allocating nothing.

    A final activation of the type the loss fuses becomes the model's output_activation (cross-entropy on a
    model that ends in logits gets an implicit softmax there), so that `predict` always gives probabilities."""
    layers = [LAYERS[name](**opts) for name, opts in layer_specs]
    for i, layer in enumerate(layers):
        if getattr(layer, "init", "") is None:  # default: He before a ReLU, Xavier/Glorot otherwise
            after = next((l for l in layers[i + 1:] if not isinstance(l, PASS_THROUGH)), None)
            layer.init = "he" if isinstance(after, LAYERS["relu"]) else "xavier"
    head = None
    if fuses is not None:
        head = layers.pop() if layers and isinstance(layers[-1], fuses) else fuses()
    in_shape = input_shape_for(layer_specs[0][0], image_shape) if layer_specs else tuple(image_shape)
    return layers, in_shape, head


def build_model(layer_specs: list[tuple[str, dict]], image_shape: tuple[int, ...],
                fuses: type[Layer] | None = None, dtype=np.float32) -> Sequential:
    """A Sequential from (name, options) pairs (see build_layers). Raises ShapeError naming the layer when
    shapes do not fit."""
    layers, in_shape, head = build_layers(layer_specs, image_shape, fuses)
    return Sequential(layers, in_shape, head, dtype)
