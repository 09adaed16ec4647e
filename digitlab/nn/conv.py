"""Convolution and max pooling on image batches (N, channels, rows, cols), vectorised in numpy.

Internally both work channel-last: a batch's memory is (N, rows, cols, channels) and the (N, C, H, W) array
the next layer sees is a transposed view of it, so consecutive conv, batch-norm, ReLU and pooling layers never
copy to change layout. A convolution is one matmul over im2col patches (a strided view, copied once); its
input gradient is added back window by window (col2im), looping over the k*k kernel offsets, never over images
or pixels.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from digitlab.nn.layers import Layer, WeightLayer

EVAL_CHUNK_BYTES = 32 << 20  # evaluation needs no cached patches: convolve big batches a slice at a time


def channels_last(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, H, W, C): a view, contiguous when x came from a layer of this module."""
    return x.transpose(0, 2, 3, 1)


def channels_first(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C, H, W): a view."""
    return x.transpose(0, 3, 1, 2)


def _image_shape(name: str, in_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(in_shape) != 3:
        raise ValueError(f"{name} expects images (channels, rows, cols) but receives shape {in_shape}; "
                         f"it must come before any flatten or linear layer")
    return in_shape


class Conv2d(WeightLayer):
    """2-D convolution (cross-correlation, as in PyTorch) with `filters` kernels of kernel x kernel pixels.

    weight is (filters, in_channels, kernel, kernel) as in PyTorch, bias (filters,). padding `valid` keeps
    only windows inside the image: out = (H - k) // stride + 1; `same` pads with zeros so that
    out = ceil(H / stride) (the extra row or column, when the padding is odd, goes at the bottom/right, as in
    TensorFlow).
    """

    def __init__(self, filters: int, kernel: int = 3, stride: int = 1, padding: str = "valid",
                 init: str | None = None, scale: float | None = None, bias: bool = True):
        if padding not in ("valid", "same"):
            raise ValueError(f"conv2d padding must be 'valid' or 'same', got {padding!r}")
        super().__init__(filters, init, scale, bias)
        self.filters, self.kernel, self.stride, self.padding = int(filters), int(kernel), int(stride), padding

    def build(self, in_shape):
        c, h, w = _image_shape("conv2d", in_shape)
        k, s = self.kernel, self.stride
        if self.padding == "same":
            ho, wo = -(-h // s), -(-w // s)
            ph, pw = max((ho - 1) * s + k - h, 0), max((wo - 1) * s + k - w, 0)
        else:
            if h < k or w < k:
                raise ValueError(f"conv2d's {k}x{k} kernel does not fit its {h}x{w} input (shape {in_shape}); "
                                 f"use a smaller kernel or padding: same")
            ho, wo, ph, pw = (h - k) // s + 1, (w - k) // s + 1, 0, 0
        self.in_shape, self.out_hw = tuple(in_shape), (ho, wo)
        self.pad = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)  # top, bottom, left, right
        return (self.filters, ho, wo)

    def weight_shape(self):
        return (self.filters, self.in_shape[0], self.kernel, self.kernel)

    def _padded(self, x: np.ndarray) -> np.ndarray:
        """The channel-last batch with its zero border (x itself when there is none)."""
        top, bottom, left, right = self.pad
        if not any(self.pad):
            return x
        n, h, w, c = x.shape
        xp = np.zeros((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
        xp[:, top:top + h, left:left + w] = x
        return xp

    def _patches(self, xp: np.ndarray) -> np.ndarray:
        """im2col: (N*Ho*Wo, k*k*C) rows, one per output pixel, ordered (ki, kj, channel), copied once.

        In channel-last memory a window's row (k pixels of C channels) is k*C contiguous numbers, so the
        strided view (N, Ho, Wo, k rows, k*C) copies in long runs."""
        k, s, (ho, wo) = self.kernel, self.stride, self.out_hw
        xp = np.ascontiguousarray(xp)
        n, hp, wp, c = xp.shape
        sc = xp.itemsize  # strides from the shape: numpy may report any stride for an axis of length 1
        sw, sh, sn = c * sc, wp * c * sc, hp * wp * c * sc
        windows = as_strided(xp, (n, ho, wo, k, k * c), (sn, sh * s, sw * s, sh, sc), writeable=False)
        return np.ascontiguousarray(windows).reshape(n * ho * wo, k * k * c)

    def _matrix(self) -> np.ndarray:
        """The weight as a (k*k*C, filters) matrix matching the patch rows."""
        return self.weight.data.transpose(2, 3, 1, 0).reshape(-1, self.filters)

    def forward(self, x):
        xl = channels_last(x)
        wmat = self._matrix()
        if not self.training:  # no backward: bound the patch matrix by convolving a slice of the batch at a time
            per_image = math.prod(self.out_hw) * wmat.shape[0] * x.itemsize
            step = max(1, EVAL_CHUNK_BYTES // per_image)
            if len(x) > step:
                return np.concatenate([self.forward(x[i:i + step]) for i in range(0, len(x), step)])
        cols = self._patches(self._padded(xl))
        self.cols = cols if self.training else None
        out = cols @ wmat
        if self.b is not None:
            out += self.b.data
        return channels_first(out.reshape((len(x),) + self.out_hw + (self.filters,)))

    def backward(self, grad):
        """Patches P (N*Ho*Wo, k*k*C) and weight matrix W (k*k*C, F) give y = P W + b, so with
        G = dL/dy as (N*Ho*Wo, F): dL/dW = P^T G, dL/db = sum of G over rows, dL/dP = G W^T.
        Each input pixel appears in the patches of every output it feeds, so dL/dx is the sum of dL/dP over
        those places (col2im): for each kernel offset (i, j), the columns of dL/dP for that offset,
        G W[:, :, i, j] (N*Ho*Wo, C), are added to the input window starting at (i, j) with the stride.
        Returns (N, C, H, W); None for the first layer (nothing uses the data's gradient)."""
        n, (ho, wo), k, s = len(grad), self.out_hw, self.kernel, self.stride
        g = np.ascontiguousarray(channels_last(grad)).reshape(-1, self.filters)
        dw = self.cols.T @ g
        self.weight.grad[...] = dw.reshape(k, k, -1, self.filters).transpose(3, 2, 0, 1)
        if self.b is not None:  # column sums as one matrix-vector product: numpy's axis-0 sum goes row by row
            if len(getattr(self, "_ones", ())) != len(g) or self._ones.dtype != g.dtype:
                self._ones = np.ones(len(g), dtype=g.dtype)
            np.matmul(self._ones, g, out=self.b.grad)
        if not self.needs_input_grad:
            self.cols = None
            return None
        self.cols = None
        c, h, w = self.in_shape
        top, bottom, left, right = self.pad
        dxp = np.zeros((n, h + top + bottom, w + left + right, c), dtype=grad.dtype)
        # One (N*Ho*Wo, F) x (F, C) matmul per offset into a contiguous scratch block, added to the shifted
        # window: the (N*Ho*Wo, k*k*C) matrix dL/dP is never materialised, and every add runs over long rows.
        w_offsets = np.ascontiguousarray(self.weight.data.transpose(2, 3, 0, 1))  # (k, k, F, C)
        block = np.empty((n, ho, wo, c), dtype=grad.dtype)
        for i in range(k):
            for j in range(k):
                np.matmul(g, w_offsets[i, j], out=block.reshape(-1, c))
                dxp[:, i: i + (ho - 1) * s + 1: s, j: j + (wo - 1) * s + 1: s] += block
        return channels_first(dxp[:, top:top + h, left:left + w])

    def spec(self):
        opts = {"filters": self.filters, "kernel": self.kernel}
        if self.stride != 1:
            opts["stride"] = self.stride
        if self.padding != "valid":
            opts["padding"] = self.padding
        return {**opts, **self.weight_options()}


class MaxPool2d(Layer):
    """Max over size x size windows moved by `stride` (default: size, windows side by side), per channel.
    Rows or columns that no window reaches are dropped: out = (H - size) // stride + 1."""

    def __init__(self, size: int = 2, stride: int | None = None):
        self.size = int(size)
        self.stride = int(stride) if stride is not None else self.size

    def build(self, in_shape):
        c, h, w = _image_shape("maxpool2d", in_shape)
        if h < self.size or w < self.size:
            raise ValueError(f"maxpool2d's {self.size}x{self.size} window does not fit its {h}x{w} input "
                             f"(shape {in_shape})")
        self.in_shape = tuple(in_shape)
        self.out_hw = ((h - self.size) // self.stride + 1, (w - self.size) // self.stride + 1)
        return (c,) + self.out_hw

    def _offsets(self):
        """(offset index, rows slice, cols slice) of each position inside the window."""
        (ho, wo), s = self.out_hw, self.stride
        for i in range(self.size):
            for j in range(self.size):
                yield i * self.size + j, slice(i, i + (ho - 1) * s + 1, s), slice(j, j + (wo - 1) * s + 1, s)

    def forward(self, x):
        xl = channels_last(x)
        out = None
        for _, rows, cols in self._offsets():
            if out is None:
                out = xl[:, rows, cols].copy()
            else:
                np.maximum(out, xl[:, rows, cols], out=out)
        self.x, self.out = (xl, out) if self.training else (None, None)
        return channels_first(out)

    def backward(self, grad):
        """y = x at the window's maximum, so dL/dx = dL/dy at that position of each window and 0 elsewhere
        (summed where windows overlap). On a tie the first maximum in row-major order takes it, as in
        PyTorch. grad (N, C, Ho, Wo) -> (N, C, H, W)."""
        g = channels_last(grad)
        c, h, w = self.in_shape
        dx = np.zeros((len(grad), h, w, c), dtype=grad.dtype)
        taken = np.zeros(self.out.shape, dtype=bool)
        hit = np.empty(self.out.shape, dtype=bool)
        for _, rows, cols in self._offsets():
            np.equal(self.x[:, rows, cols], self.out, out=hit)
            np.greater(hit, taken, out=hit)  # hit and not taken yet
            taken |= hit
            if self.stride < self.size:  # overlapping windows add up
                dx[:, rows, cols] += g * hit
            else:
                np.multiply(g, hit, out=dx[:, rows, cols])
        self.x = self.out = None
        return channels_first(dx)

    def spec(self):
        return {"size": self.size} if self.stride == self.size else {"size": self.size, "stride": self.stride}
