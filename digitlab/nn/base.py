"""The shape every layer has: `forward(x)` computes the output and keeps what backward needs; `backward(grad)`
writes the parameters' gradients (into preallocated float32 arrays) and returns the gradient for the input.

Shapes are per batch: x is (N, *in_shape). A layer learns its input shape in `build`, which is where a Linear
infers its fan-in from the layer before it. A layer declares its config options once, in `options` (see
digitlab.options); their defaults are its constructor's.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from digitlab.nn.init import INITIALISERS
from digitlab.options import Boolean, Choice, Number, Rule
from digitlab.options import defaults as option_defaults


class Parameter:
    """A float32 array and its gradient; both are views into the model's flat buffers (see `Parameters`)."""

    def __init__(self, data: np.ndarray, grad: np.ndarray):
        self.data, self.grad = data, grad

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape


class Layer:
    """Base class. Stateless layers only override forward/backward.

    `training` switches dropout and batch statistics; `retain` (set by Sequential) keeps what backward needs
    after an evaluation-mode forward too, for gradients with respect to the input (saliency)."""

    options: ClassVar[dict[str, Rule]] = {}
    preferred_init: ClassVar[str | None] = None  # the initialiser a weight right before this layer should get
    transparent_to_init: ClassVar[bool] = False  # looked through when choosing that initialiser (batch norm, pooling)
    closed_form: ClassVar[bool] = False  # fitted in one pass by fit(x, y) instead of by gradient steps
    elementwise: ClassVar[bool] = False  # works on any shape, value by value (activations, dropout)
    monotone: ClassVar[bool] = False  # elementwise and non-decreasing: max pooling commutes with it
    takes_max: ClassVar[bool] = False  # max pooling: a monotone activation before it may run after it
    fresh_output: ClassVar[bool] = False  # forward returns a new array that it keeps no reference to
    # The values an activation gives when it bounds them ("values >= 0", "values in (0, 1)"); None: any real number.
    # A loss on logits refuses a model whose outputs come from a bounded layer (see config.schema).
    gives: ClassVar[str | None] = None
    keeps_range: ClassVar[bool] = False  # outputs stay bounded when the inputs are (dropout, pooling, flatten)

    training = True
    retain = False
    lr_scale = 1.0  # this layer's parameters learn at lr_scale times the optimizer's rate
    needs_input_grad = True  # False for the first layer: the gradient for the data is never used

    @property
    def keeps_cache(self) -> bool:
        return self.training or self.retain

    def build(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Remember the per-sample input shape, return the per-sample output shape."""
        self.in_shape = in_shape
        return in_shape

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of this layer's parameters (after build); the model allocates them."""
        return {}

    def bind(self, params: dict[str, Parameter]) -> None:
        """Receive the parameter views the model allocated."""
        self.params = params

    def reset_parameters(self, rng: np.random.Generator) -> None:
        pass

    def buffers(self) -> dict[str, np.ndarray]:
        """State that is saved with the weights but not trained (batch norm's running statistics)."""
        return {}

    def scratch(self, name: str, shape: tuple, dtype, zero: bool = False) -> np.ndarray:
        """A scratch array of `shape` kept on the layer and reused batch after batch (never saved, unlike
        `buffers`): a fresh 30 MB array per batch costs the kernel's zeroing of every page on first touch. Larger
        batches grow it; smaller ones (an epoch's last) use the front of it. `zero` fills a new one with zeros.
        Only for arrays the layer reads again itself or the next layer consumes within the same pass."""
        kept = self.__dict__.setdefault("_scratch", {})
        have = kept.get(name)
        rows, rest = shape[0], tuple(shape[1:])
        if have is None or have.dtype != dtype or have.shape[1:] != rest or len(have) < rows:
            have = kept[name] = (np.zeros if zero else np.empty)((rows,) + rest, dtype=dtype)
        return have[:rows]

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def option_value(self, name: str):
        return getattr(self, name)

    def spec(self) -> dict:
        """The options that rebuild this layer (those that differ from the constructor's defaults); saved with
        the weights."""
        defaults = option_defaults(type(self))
        out = {}
        for name in self.options:
            value = self.option_value(name)
            if name not in defaults or value != defaults[name]:
                out[name] = value
        return out

    def settings(self) -> dict:
        """Every option with the value this layer runs with, defaults included (an option left unset, None, is
        left out): what the model summary shows."""
        values = {name: self.option_value(name) for name in self.options}
        return {name: value for name, value in values.items() if value is not None}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.settings().items())
        return f"{type(self).__name__}({opts})"


class WeightLayer(Layer):
    """A layer with a weight and an optional bias (Linear, Conv2d): their allocation, binding, initialisation
    by name (see nn.init; the model picks He or Xavier when none is given) and the options they share.
    `weight` and `bias` are Parameters (`bias` is None without one), as in PyTorch."""

    options = {"init": Choice(INITIALISERS), "scale": Number(0, low_open=True), "bias": Boolean(),
               "lr_scale": Number(0, low_open=True)}

    def __init__(self, outputs: int, init: str | None = None, scale: float | None = None, bias: bool = True,
                 lr_scale: float = 1.0):
        self.outputs, self.init, self.scale, self.has_bias = int(outputs), init, scale, bool(bias)
        self.lr_scale = float(lr_scale)

    def weight_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def param_shapes(self):
        weight = self.weight_shape()
        return {"weight": weight, "bias": (self.outputs,)} if self.has_bias else {"weight": weight}

    def bind(self, params):
        self.params = params
        self.weight, self.bias = params["weight"], params.get("bias")

    def reset_parameters(self, rng):
        INITIALISERS[self.init or "xavier"](self.weight.data, rng, self.scale)
        if self.bias is not None:
            self.bias.data[...] = 0

    def option_value(self, name):
        return self.has_bias if name == "bias" else getattr(self, name)
