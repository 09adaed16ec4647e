"""2-D convolution (cross-correlation, as in PyTorch), channel-last inside.

Activations are kept channel-last in memory ((N, H, W, C), see nn.functional), and the (N, C, H, W) array each
image layer sees is a transposed view of it, so consecutive conv, batch-norm, ReLU and pooling layers never
copy to change layout. A convolution is one matmul over im2col patches (a strided view, copied once); its
input gradient is added back window by window (col2im), looping over the k*k kernel offsets, never over images
or pixels.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from digitlab.nn.base import WeightLayer
from digitlab.nn.functional import channels_first, channels_last, image_shape
from digitlab.options import Choice, Integer


class Conv2d(WeightLayer):
    """2-D convolution (cross-correlation, as in PyTorch) with `filters` kernels of kernel x kernel pixels.

    weight is (filters, in_channels, kernel, kernel) as in PyTorch, bias (filters,). padding `valid` keeps
    only windows inside the image: out = (H - k) // stride + 1; `same` pads with zeros so that
    out = ceil(H / stride) (the extra row or column, when the padding is odd, goes at the bottom/right, as in
    TensorFlow).
    """

    options = {"filters": Integer(1), "kernel": Integer(1), "stride": Integer(1), "padding": Choice(["valid", "same"]),
               **WeightLayer.options}

    def __init__(self, filters: int, kernel: int = 3, stride: int = 1, padding: str = "valid",
                 init: str | None = None, scale: float | None = None, bias: bool = True, lr_scale: float = 1.0):
        if padding not in ("valid", "same"):
            raise ValueError(f"conv2d padding must be 'valid' or 'same', got {padding!r}")
        super().__init__(filters, init, scale, bias, lr_scale)
        self.filters, self.kernel, self.stride, self.padding = int(filters), int(kernel), int(stride), padding

    def build(self, in_shape):
        c, h, w = image_shape("conv2d", in_shape)
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
        cols = self._patches(self._padded(channels_last(x)))
        self.cols = cols if self.keeps_cache else None
        out = cols @ self._matrix()
        if self.bias is not None:
            out += self.bias.data
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
        if self.bias is not None:  # column sums as one matrix-vector product: numpy's axis-0 sum goes row by row
            if len(getattr(self, "_ones", ())) != len(g) or self._ones.dtype != g.dtype:
                self._ones = np.ones(len(g), dtype=g.dtype)
            np.matmul(self._ones, g, out=self.bias.grad)
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
