"""Batch normalisation (Ioffe & Szegedy), as PyTorch's BatchNorm1d/BatchNorm2d compute it.

In training each channel is normalised with its batch mean and variance, then scaled by `weight` (gamma) and
shifted by `bias` (beta); running averages of the mean and variance (momentum 0.1, unbiased variance) are kept
as buffers, saved with the weights, and used instead in evaluation. One layer serves dense outputs (N, C) and
conv outputs (N, C, H, W), where the statistics are over N, H and W.
"""

from __future__ import annotations

import numpy as np

from digitlab.nn.base import Layer
from digitlab.nn.functional import channels_first, channels_last
from digitlab.options import Number


class BatchNorm(Layer):
    fresh_output = True
    options = {"momentum": Number(0, 1), "eps": Number(0, low_open=True), "lr_scale": Number(0, low_open=True)}
    transparent_to_init = True

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5, lr_scale: float = 1.0):
        self.momentum, self.eps, self.lr_scale = float(momentum), float(eps), float(lr_scale)

    def build(self, in_shape):
        if len(in_shape) not in (1, 3):
            raise ValueError(f"batchnorm expects features (units,) or images (channels, rows, cols) but receives "
                             f"shape {in_shape}")
        self.in_shape = tuple(in_shape)
        self.channels = in_shape[0]
        self.eval_scale = None
        return self.in_shape

    def param_shapes(self):
        return {"weight": (self.channels,), "bias": (self.channels,)}

    def bind(self, params):
        self.params = params
        self.gamma, self.beta = params["weight"], params["bias"]
        dtype = self.gamma.data.dtype
        self.running_mean = np.zeros(self.channels, dtype=dtype)
        self.running_var = np.ones(self.channels, dtype=dtype)

    def buffers(self):
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def reset_parameters(self, rng):
        self.gamma.data[...] = 1
        self.beta.data[...] = 0
        self.running_mean[...] = 0
        self.running_var[...] = 1

    def _sum(self, a: np.ndarray) -> np.ndarray:
        """Column sums of a (M, C) as one BLAS matrix-vector product (numpy's axis-0 sum runs row by row)."""
        if len(getattr(self, "_ones", ())) != len(a) or self._ones.dtype != a.dtype:
            self._ones = np.ones(len(a), dtype=a.dtype)
        return self._ones @ a

    @staticmethod
    def _rows(x: np.ndarray) -> np.ndarray:
        """(M, C): one row per sample, or per sample and pixel for images (a view for channel-last memory)."""
        return x if x.ndim == 2 else channels_last(x).reshape(-1, x.shape[1])

    @staticmethod
    def _unrows(y: np.ndarray, like: np.ndarray) -> np.ndarray:
        if like.ndim == 2:
            return y
        n, c, h, w = like.shape
        return channels_first(y.reshape(n, h, w, c))

    def forward(self, x):
        rows = self._rows(x)
        self.eval_scale = None
        if not self.training:  # y = x * (gamma / sqrt(running_var + eps)) + (beta - running_mean * that)
            scale = self.gamma.data / np.sqrt(self.running_var + self.eps)
            y = rows * scale
            y += self.beta.data - self.running_mean * scale
            if self.retain:
                self.eval_scale = scale
            return self._unrows(y, x)
        m = len(rows)
        mean = self._sum(rows) / m
        centred = rows - mean
        self.xhat = np.square(centred)
        var = self._sum(self.xhat) / m
        self.inv_std = 1 / np.sqrt(var + self.eps)
        np.multiply(centred, self.inv_std, out=self.xhat)
        self.running_mean *= 1 - self.momentum
        self.running_mean += self.momentum * mean
        self.running_var *= 1 - self.momentum
        self.running_var += self.momentum * var * (m / max(m - 1, 1))
        y = self.xhat * self.gamma.data
        y += self.beta.data
        return self._unrows(y, x)

    def backward(self, grad):
        """Per channel, over its M values: xhat = (x - mean) / sqrt(var + eps), y = gamma xhat + beta.
        With g = dL/dy (M, C): dL/dbeta = sum g, dL/dgamma = sum g xhat, and since mean and var depend on
        every x of the channel, dL/dx = gamma / sqrt(var + eps) * (g - dL/dbeta / M - xhat dL/dgamma / M).
        After an evaluation-mode forward (running statistics, constants): dL/dx = g gamma / sqrt(running_var +
        eps), and the parameters get no gradient. Shapes as the input: (N, C) or (N, C, H, W)."""
        g = self._rows(grad)
        if self.eval_scale is not None:  # after an evaluation-mode forward: y is affine in x
            dx, self.eval_scale = g * self.eval_scale, None
            return self._unrows(dx, grad)
        m = len(g)
        self.beta.grad[...] = self._sum(g)
        dx = g * self.xhat
        self.gamma.grad[...] = self._sum(dx)
        np.multiply(self.xhat, self.gamma.grad / m, out=dx)
        np.subtract(g, dx, out=dx)
        dx -= self.beta.grad / m
        dx *= self.gamma.data * self.inv_std
        self.xhat = None
        return self._unrows(dx, grad)
