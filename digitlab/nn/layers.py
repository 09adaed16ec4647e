"""Dense layers: Linear (the course's affine layer, Keras' Dense), Dropout and Flatten."""

from __future__ import annotations

import numpy as np

from digitlab.nn.base import Layer, WeightLayer
from digitlab.options import Integer, Number


class Linear(WeightLayer):
    """y = x W + b, with W stored (in, out) so the forward pass is one matmul on row-major batches."""

    fresh_output = True
    options = {"units": Integer(1), **WeightLayer.options}

    def __init__(self, units: int, init: str | None = None, scale: float | None = None, bias: bool = True,
                 lr_scale: float = 1.0):
        super().__init__(units, init, scale, bias, lr_scale)
        self.units = int(units)

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
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, grad):
        """x (N, in), W (in, out), grad = dL/dy (N, out):
        dL/dW = x^T grad (in, out); dL/db = sum over N of grad (out,); dL/dx = grad W^T (N, in)."""
        np.matmul(self.x.T, grad, out=self.weight.grad)
        if self.bias is not None:
            np.sum(grad, axis=0, out=self.bias.grad)
        return grad @ self.weight.data.T if self.needs_input_grad else None


class Dropout(Layer):
    """Inverted dropout, as in PyTorch: in training each unit is zeroed with probability p and the survivors
    scaled by 1/(1-p), so evaluation is the identity. The mask comes from random bytes (16 bits per unit),
    several times cheaper than float uniforms; the scale uses the exact drop probability of that threshold,
    so the expected output equals the input."""

    options = {"p": Number(0, 1, high_open=True)}
    elementwise = keeps_range = True

    def __init__(self, p: float = 0.5):
        self.p = p
        self.threshold = min(int(round(p * 65536)), 65535)  # p just below 1 would round to 65536: scale 1/0
        self.scale = np.float32(65536 / (65536 - self.threshold))
        self.rng: np.random.Generator | None = None

    def reset_parameters(self, rng):
        self.rng = rng  # the run's Generator draws the masks

    def forward(self, x):
        if not self.training or self.threshold == 0:
            self.mask = None
            return x
        bits = np.frombuffer(self.rng.bytes(2 * x.size), dtype=np.uint16).reshape(x.shape)
        self.mask = (bits >= self.threshold) * self.scale
        return x * self.mask

    def backward(self, grad):
        return grad if self.mask is None else grad * self.mask


class Flatten(Layer):
    """(N, *shape) -> (N, prod(shape)); backward reshapes the gradient back."""

    keeps_range = True

    def build(self, in_shape):
        self.in_shape = in_shape
        return (int(np.prod(in_shape)),)

    def forward(self, x):
        return x.reshape(len(x), -1)

    def backward(self, grad):
        return grad.reshape((len(grad),) + self.in_shape)
