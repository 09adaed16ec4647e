"""Activations: elementwise (ReLU, LeakyReLU, Sigmoid, Tanh) and row-wise (Softmax). Each keeps its output (or
its input's sign) for the backward pass."""

from __future__ import annotations

import numpy as np

from digitlab.nn import functional as F
from digitlab.nn.base import Layer
from digitlab.options import Number
from digitlab.system import threads


class ReLU(Layer):
    """y = max(x, 0); dL/dx = dL/dy where x > 0, else 0. `inplace` (set by Sequential after a layer whose output
    is fresh and kept by nobody) overwrites x instead of allocating y; the backward always overwrites the
    gradient it is handed, which nobody else holds."""

    preferred_init = "he"
    elementwise = monotone = True
    inplace = False
    gives = "values >= 0"

    def forward(self, x):
        self.y = np.maximum(x, 0, out=x if self.inplace else None)
        return self.y

    def backward(self, grad):
        out = grad if grad.flags.writeable else np.empty_like(grad)
        y = self.y

        def part(lo, hi):  # slices of the batch in threads: elementwise, so the same numbers for any split
            np.multiply(grad[lo:hi], y[lo:hi] > 0, out=out[lo:hi])

        threads.run(part, threads.batch_spans(len(grad), grad.size // max(len(grad), 1)))
        return out


class LeakyReLU(Layer):
    """y = x where x > 0, else slope * x (PyTorch's negative_slope, default 0.01);
    dL/dx = dL/dy where x > 0, else slope * dL/dy."""

    options = {"slope": Number(0, 1, high_open=True)}
    preferred_init = "he"
    elementwise = monotone = True

    def __init__(self, slope: float = 0.01):
        self.slope = float(slope)

    def forward(self, x):
        self.positive = x > 0
        return np.where(self.positive, x, x * x.dtype.type(self.slope))

    def backward(self, grad):
        return np.where(self.positive, grad, grad * grad.dtype.type(self.slope))


class Sigmoid(Layer):
    """y = 1 / (1 + e^-x) (stable, via tanh); dL/dx = dL/dy * y (1 - y)."""

    elementwise = monotone = True
    gives = "values in (0, 1)"

    def forward(self, x):
        self.y = F.sigmoid(x)
        return self.y

    def backward(self, grad):
        return grad * self.y * (1 - self.y)


class Tanh(Layer):
    """y = tanh(x); dL/dx = dL/dy * (1 - y^2)."""

    elementwise = monotone = True
    gives = "values in (-1, 1)"

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, grad):
        return grad * (1 - self.y * self.y)


class Softmax(Layer):
    """y = softmax(x) over the last axis. With y the row's output and g = dL/dy, the Jacobian-vector product is
    dL/dx = y * (g - sum(g * y)) row-wise. (With cross-entropy the two fuse into the loss instead.)"""

    gives = "probabilities in (0, 1) that sum to 1"

    def forward(self, x):
        self.y = F.softmax(x)
        return self.y

    def backward(self, grad):
        return self.y * (grad - (grad * self.y).sum(axis=-1, keepdims=True))
