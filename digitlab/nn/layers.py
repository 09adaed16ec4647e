"""Layers: each computes its output in `forward(x)`, keeping what its backward needs, and in `backward(grad)`
writes its parameters' gradients (into preallocated float32 arrays) and returns the gradient for its input.

Shapes are per batch: x is (N, *in_shape). A layer learns its input shape in `build`, which is where a
Linear infers its fan-in from the layer before it.
"""

from __future__ import annotations

import numpy as np

from digitlab.nn import functional as F
from digitlab.nn.init import INITIALISERS


class Parameter:
    """A float32 array and its gradient; both are views into the model's flat buffers (see `Parameters`)."""

    def __init__(self, data: np.ndarray, grad: np.ndarray):
        self.data, self.grad = data, grad

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape


class Layer:
    """Base class. Stateless layers only override forward/backward."""

    training = True
    needs_input_grad = True  # False for the first layer: the gradient for the data is never used

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

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray | None:
        raise NotImplementedError

    def spec(self) -> dict:
        """The options that rebuild this layer (saved with the weights)."""
        return {}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.spec().items())
        return f"{type(self).__name__}({opts})"


class WeightLayer(Layer):
    """A layer with a weight and an optional bias (Linear, Conv2d): their allocation, binding, initialisation
    by name (see nn.init; the model picks He or Xavier when none is given) and the options they save."""

    def __init__(self, outputs: int, init: str | None = None, scale: float | None = None, bias: bool = True):
        self.outputs, self.init, self.scale, self.bias = int(outputs), init, scale, bias

    def weight_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def param_shapes(self):
        weight = self.weight_shape()
        return {"weight": weight, "bias": (self.outputs,)} if self.bias else {"weight": weight}

    def bind(self, params):
        self.params = params
        self.weight, self.b = params["weight"], params.get("bias")

    def reset_parameters(self, rng):
        INITIALISERS[self.init or "xavier"](self.weight.data, rng, self.scale)
        if self.b is not None:
            self.b.data[...] = 0

    def weight_options(self) -> dict:
        opts = {}
        if self.init:
            opts["init"] = self.init
        if self.scale is not None:
            opts["scale"] = self.scale
        if not self.bias:
            opts["bias"] = False
        return opts


class Linear(WeightLayer):
    """y = x W + b, with W stored (in, out) so the forward pass is one matmul on row-major batches."""

    def __init__(self, units: int, init: str | None = None, scale: float | None = None, bias: bool = True):
        super().__init__(units, init, scale, bias)
        self.units = units

    def build(self, in_shape):
        if len(in_shape) != 1:
            raise ValueError(f"linear expects flat inputs but receives shape {in_shape}; add 'flatten' before it")
        self.in_shape = in_shape
        return (self.units,)

    def weight_shape(self):
        return (self.in_shape[0], self.units)

    def forward(self, x):
        self.x = x
        y = x @ self.weight.data
        if self.b is not None:
            y += self.b.data
        return y

    def backward(self, grad):
        """x (N, in), W (in, out), grad = dL/dy (N, out):
        dL/dW = x^T grad (in, out); dL/db = sum over N of grad (out,); dL/dx = grad W^T (N, in)."""
        np.matmul(self.x.T, grad, out=self.weight.grad)
        if self.b is not None:
            np.sum(grad, axis=0, out=self.b.grad)
        return grad @ self.weight.data.T if self.needs_input_grad else None

    def spec(self):
        return {"units": self.units, **self.weight_options()}


class ReLU(Layer):
    """y = max(x, 0); dL/dx = dL/dy where x > 0, else 0."""

    def forward(self, x):
        self.y = np.maximum(x, 0)
        return self.y

    def backward(self, grad):
        return grad * (self.y > 0)


class Sigmoid(Layer):
    """y = 1 / (1 + e^-x) (stable, via tanh); dL/dx = dL/dy * y (1 - y)."""

    def forward(self, x):
        self.y = F.sigmoid(x)
        return self.y

    def backward(self, grad):
        return grad * self.y * (1 - self.y)


class Tanh(Layer):
    """y = tanh(x); dL/dx = dL/dy * (1 - y^2)."""

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, grad):
        return grad * (1 - self.y * self.y)


class Softmax(Layer):
    """y = softmax(x) over the last axis. With y the row's output and g = dL/dy, the Jacobian-vector product is
    dL/dx = y * (g - sum(g * y)) row-wise. (With cross-entropy the two fuse into the loss instead.)"""

    def forward(self, x):
        self.y = F.softmax(x)
        return self.y

    def backward(self, grad):
        return self.y * (grad - (grad * self.y).sum(axis=-1, keepdims=True))


class Dropout(Layer):
    """Inverted dropout, as in PyTorch: in training each unit is zeroed with probability p and the survivors
    scaled by 1/(1-p), so evaluation is the identity. The mask comes from random bytes (16 bits per unit),
    several times cheaper than float uniforms; the scale uses the exact drop probability of that threshold,
    so the expected output equals the input."""

    def __init__(self, p: float = 0.5):
        self.p = p
        self.threshold = min(int(round(p * 65536)), 65535)  # p just below 1 would round to 65536: scale 1/0
        self.scale = np.float32(65536 / (65536 - self.threshold))
        self.rng: np.random.Generator | None = None  # the model hands the run's Generator to its dropouts

    def forward(self, x):
        if not self.training or self.threshold == 0:
            self.mask = None
            return x
        bits = np.frombuffer(self.rng.bytes(2 * x.size), dtype=np.uint16).reshape(x.shape)
        self.mask = (bits >= self.threshold) * self.scale
        return x * self.mask

    def backward(self, grad):
        return grad if self.mask is None else grad * self.mask

    def spec(self):
        return {"p": self.p}


class Flatten(Layer):
    """(N, *shape) -> (N, prod(shape)); backward reshapes the gradient back."""

    def build(self, in_shape):
        self.in_shape = in_shape
        return (int(np.prod(in_shape)),)

    def forward(self, x):
        return x.reshape(len(x), -1)

    def backward(self, grad):
        return grad.reshape((len(grad),) + self.in_shape)


# The course's word for a linear layer.
Affine = Dense = Linear

# Image layers live in their own modules, which build on Layer above.
from digitlab.nn.conv import Conv2d, MaxPool2d  # noqa: E402
from digitlab.nn.normalization import BatchNorm  # noqa: E402

# Config names -> classes. Aliases map to the same class (the first name is the one saved).
LAYERS: dict[str, type[Layer]] = {
    "linear": Linear, "affine": Linear, "dense": Linear,
    "relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "softmax": Softmax,
    "dropout": Dropout, "flatten": Flatten,
    "conv2d": Conv2d, "conv": Conv2d, "maxpool2d": MaxPool2d, "maxpool": MaxPool2d, "batchnorm": BatchNorm,
}
