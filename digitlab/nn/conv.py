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
from digitlab.system import threads


class Conv2d(WeightLayer):
    """2-D convolution (cross-correlation, as in PyTorch) with `filters` kernels of kernel x kernel pixels.

    weight is (filters, in_channels, kernel, kernel) as in PyTorch, bias (filters,). padding `valid` keeps
    only windows inside the image: out = (H - k) // stride + 1; `same` pads with zeros so that
    out = ceil(H / stride) (the extra row or column, when the padding is odd, goes at the bottom/right, as in
    TensorFlow).
    """

    fresh_output = True
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
        """The channel-last batch with its zero border, in a buffer kept between batches (x itself when there is
        no border and it is contiguous)."""
        top, bottom, left, right = self.pad
        if not any(self.pad):
            return np.ascontiguousarray(x)
        n, h, w, c = x.shape
        xp = self.scratch("padded", (n, h + top + bottom, w + left + right, c), x.dtype, zero=True)
        xp[:, top:top + h, left:left + w] = x  # the border stays zero from the buffer's first use
        return xp

    def _windows(self, xp: np.ndarray) -> np.ndarray:
        """The strided view (N, Ho, Wo, k rows, k*C) of every window of the padded channel-last batch. In
        channel-last memory a window's row (k pixels of C channels) is k*C contiguous numbers, so copying it
        (im2col) moves long runs."""
        k, s, (ho, wo) = self.kernel, self.stride, self.out_hw
        n, hp, wp, c = xp.shape
        sc = xp.itemsize  # strides from the shape: numpy may report any stride for an axis of length 1
        sw, sh, sn = c * sc, wp * c * sc, hp * wp * c * sc
        return as_strided(xp, (n, ho, wo, k, k * c), (sn, sh * s, sw * s, sh, sc), writeable=False)

    def _patches(self, xp: np.ndarray) -> np.ndarray:
        """im2col: (N*Ho*Wo, k*k*C [+ 1]) rows, one per output pixel, ordered (ki, kj, channel), with a last
        column of ones when the layer has a bias, so that the bias rides along in the matmul (and its gradient
        in the weight gradient's). Copied once into a reused buffer, in slices of the batch across threads."""
        n, (ho, wo) = len(xp), self.out_hw
        depth = self.kernel * self.kernel * xp.shape[3]
        cols = self.scratch("cols", (n * ho * wo, depth + (self.bias is not None)), xp.dtype)
        if self.bias is not None:
            cols[:, depth] = 1
        windows, target = self._windows(xp), cols[:, :depth].reshape(n, ho, wo, self.kernel, -1)
        threads.run(lambda lo, hi: np.copyto(target[lo:hi], windows[lo:hi]), threads.spans(n, min_chunk=16))
        return cols

    def _matrix(self) -> np.ndarray:
        """The weight as a (k*k*C, filters) matrix matching the patch rows, with the bias as its last row."""
        w = self.weight.data.transpose(2, 3, 1, 0).reshape(-1, self.filters)
        return w if self.bias is None else np.concatenate([w, self.bias.data[None]])

    def forward(self, x):
        cols = self._patches(self._padded(channels_last(x)))
        self.cols = cols if self.keeps_cache else None
        out = cols @ self._matrix()
        return channels_first(out.reshape((len(x),) + self.out_hw + (self.filters,)))

    def backward(self, grad):
        """Patches P (N*Ho*Wo, k*k*C, and a column of ones for the bias) and the weight matrix W (with the bias
        as its last row) give y = P W, so with G = dL/dy as (N*Ho*Wo, F): dL/dW = P^T G (its last row, the
        column sums of G, is dL/db) and dL/dP = G W^T. Each input pixel appears in the patches of every output
        it feeds, so dL/dx is the sum of dL/dP over those places (col2im): for each kernel offset (i, j), the
        columns of dL/dP for that offset, G W[:, :, i, j] (N*Ho*Wo, C), are added to the input window starting at
        (i, j) with the stride. Returns (N, C, H, W), a view of a buffer the next batch reuses; None for the first
        layer (nothing uses the data's gradient)."""
        n, (ho, wo), k, s = len(grad), self.out_hw, self.kernel, self.stride
        g = np.ascontiguousarray(channels_last(grad)).reshape(-1, self.filters)
        dw = self.cols.T @ g
        depth = k * k * self.in_shape[0]
        self.weight.grad[...] = dw[:depth].reshape(k, k, -1, self.filters).transpose(3, 2, 0, 1)
        if self.bias is not None:
            self.bias.grad[...] = dw[depth]
        self.cols = None
        if not self.needs_input_grad:
            return None
        c, h, w = self.in_shape
        top, bottom, left, right = self.pad
        dxp = self.scratch("dx", (n, h + top + bottom, w + left + right, c), grad.dtype)
        dxp.fill(0)
        # One (N*Ho*Wo, F) x (F, C) matmul per offset into a scratch block, added to the shifted window (in
        # slices of the batch across threads): the (N*Ho*Wo, k*k*C) matrix dL/dP is never materialised.
        w_offsets = np.ascontiguousarray(self.weight.data.transpose(2, 3, 0, 1))  # (k, k, F, C)
        block = self.scratch("block", (n, ho, wo, c), grad.dtype)
        spans = threads.spans(n, min_chunk=16)
        for i in range(k):
            for j in range(k):
                np.matmul(g, w_offsets[i, j], out=block.reshape(-1, c))
                window = dxp[:, i: i + (ho - 1) * s + 1: s, j: j + (wo - 1) * s + 1: s]
                threads.run(lambda lo, hi, view=window: np.add(view[lo:hi], block[lo:hi], out=view[lo:hi]), spans)
        return channels_first(dxp[:, top:top + h, left:left + w])
