"""Pooling over size x size windows moved by `stride` (default: size, windows side by side), per channel:
the maximum (MaxPool2d) or the mean (AvgPool2d). Rows or columns that no window reaches are dropped:
out = (H - size) // stride + 1. Both loop over the size*size positions inside a window, never over pixels."""

from __future__ import annotations

import numpy as np

from digitlab.nn.base import Layer
from digitlab.nn.functional import channels_first, channels_last, image_shape
from digitlab.options import Integer
from digitlab.system import threads


class Pool2d(Layer):
    """What max and average pooling share: options, output shape, the window offsets."""

    options = {"size": Integer(1), "stride": Integer(1)}
    transparent_to_init = keeps_range = True
    name = "pool2d"

    def __init__(self, size: int = 2, stride: int | None = None):
        self.size = int(size)
        self.stride = int(stride) if stride is not None else None

    @property
    def step(self) -> int:
        return self.stride or self.size

    def build(self, in_shape):
        c, h, w = image_shape(self.name, in_shape)
        if h < self.size or w < self.size:
            raise ValueError(f"{self.name}'s {self.size}x{self.size} window does not fit its {h}x{w} input "
                             f"(shape {in_shape})")
        self.in_shape = tuple(in_shape)
        self.out_hw = ((h - self.size) // self.step + 1, (w - self.size) // self.step + 1)
        return (c,) + self.out_hw

    def option_value(self, name):
        return None if name == "stride" and self.stride == self.size else getattr(self, name)

    def _offsets(self):
        """(rows slice, cols slice) of each position inside the window, over all windows at once."""
        (ho, wo), s = self.out_hw, self.step
        for i in range(self.size):
            for j in range(self.size):
                yield slice(i, i + (ho - 1) * s + 1, s), slice(j, j + (wo - 1) * s + 1, s)


class MaxPool2d(Pool2d):
    """The maximum of each window. 2x2 windows side by side (the usual pooling) take a faster path that keeps,
    from the forward pass, which of the four won each window (three comparisons) instead of comparing again."""

    name = "maxpool2d"
    takes_max = True  # an elementwise non-decreasing activation before it can run after it (see Sequential)

    def forward(self, x):
        xl = channels_last(x)
        if self.size == self.step == 2:
            return channels_first(self._forward_2x2(xl))
        out = None
        for rows, cols in self._offsets():
            if out is None:
                out = xl[:, rows, cols].copy()
            else:
                np.maximum(out, xl[:, rows, cols], out=out)
        self.x, self.out = (xl, out) if self.keeps_cache else (None, None)
        return channels_first(out)

    def _forward_2x2(self, xl):
        """Windows a b / c d: the first maximum in row-major order wins ties, as in PyTorch; `top` (the top pair
        won), `ab` (a beat or tied b) and `cd` say where it was. Slices of the batch run in threads (numpy
        releases the GIL; the arithmetic is elementwise, so any split gives the same numbers)."""
        (ho, wo), n, c = self.out_hw, len(xl), xl.shape[3]
        out = np.empty((n, ho, wo, c), dtype=xl.dtype)
        wins = tuple(self.scratch(name, out.shape, bool) for name in ('top', 'ab', 'cd')) if self.keeps_cache else None

        def part(lo, hi):
            x = xl[lo:hi]
            a, b = x[:, 0:2 * ho:2, 0:2 * wo:2], x[:, 0:2 * ho:2, 1:2 * wo:2]
            c_, d = x[:, 1:2 * ho:2, 0:2 * wo:2], x[:, 1:2 * ho:2, 1:2 * wo:2]
            top_max, bottom_max = np.maximum(a, b), np.maximum(c_, d)
            np.maximum(top_max, bottom_max, out=out[lo:hi])
            if wins is not None:
                np.greater_equal(top_max, bottom_max, out=wins[0][lo:hi])
                np.greater_equal(a, b, out=wins[1][lo:hi])
                np.greater_equal(c_, d, out=wins[2][lo:hi])

        threads.run(part, threads.batch_spans(n, xl.size // max(n, 1)))
        self.wins = wins
        self.x = self.out = None
        return out

    def backward(self, grad):
        """y = x at the window's maximum, so dL/dx = dL/dy at that position of each window and 0 elsewhere
        (summed where windows overlap). On a tie the first maximum in row-major order takes it, as in
        PyTorch. grad (N, C, Ho, Wo) -> (N, C, H, W)."""
        g = channels_last(grad)
        c, h, w = self.in_shape
        if self.size == self.step == 2:
            return channels_first(self._backward_2x2(g, h, w, c))
        dx = np.zeros((len(grad), h, w, c), dtype=grad.dtype)
        taken = np.zeros(self.out.shape, dtype=bool)
        hit = np.empty(self.out.shape, dtype=bool)
        for rows, cols in self._offsets():
            np.equal(self.x[:, rows, cols], self.out, out=hit)
            np.greater(hit, taken, out=hit)  # hit and not taken yet
            taken |= hit
            if self.step < self.size:  # overlapping windows add up
                dx[:, rows, cols] += g * hit
            else:
                np.multiply(g, hit, out=dx[:, rows, cols])
        self.x = self.out = None
        return channels_first(dx)

    def _backward_2x2(self, g, h, w, c):
        """Each window's gradient goes to a, b, c or d: g * top splits into a (where ab) and b, the rest into c
        (where cd) and d. Six passes, and every input position is written once (no zero fill but for a last
        row or column that no window reaches); slices of the batch in threads, as forward."""
        top, ab, cd = self.wins
        (ho, wo) = self.out_hw
        dx = self.scratch("dx", (len(g), h, w, c), g.dtype)  # the layer below consumes it before the next batch

        def part(lo, hi):
            d = dx[lo:hi]
            if h > 2 * ho:
                d[:, 2 * ho:] = 0
            if w > 2 * wo:
                d[:, :, 2 * wo:] = 0
            upper = g[lo:hi] * top[lo:hi]
            lower = g[lo:hi] - upper
            np.multiply(upper, ab[lo:hi], out=d[:, 0:2 * ho:2, 0:2 * wo:2])
            np.subtract(upper, d[:, 0:2 * ho:2, 0:2 * wo:2], out=d[:, 0:2 * ho:2, 1:2 * wo:2])
            np.multiply(lower, cd[lo:hi], out=d[:, 1:2 * ho:2, 0:2 * wo:2])
            np.subtract(lower, d[:, 1:2 * ho:2, 0:2 * wo:2], out=d[:, 1:2 * ho:2, 1:2 * wo:2])

        threads.run(part, threads.batch_spans(len(g), h * w * c))
        self.wins = None
        return dx


class AvgPool2d(Pool2d):
    """The mean of each window."""

    name = "avgpool2d"

    def forward(self, x):
        xl = channels_last(x)
        out = None
        for rows, cols in self._offsets():
            if out is None:
                out = xl[:, rows, cols].copy()
            else:
                out += xl[:, rows, cols]
        out *= out.dtype.type(1 / self.size ** 2)
        return channels_first(out)

    def backward(self, grad):
        """y = mean of its size*size window, so every position of a window receives dL/dy / size^2 (summed
        where windows overlap, zero where no window reaches). grad (N, C, Ho, Wo) -> (N, C, H, W)."""
        g = channels_last(grad) * grad.dtype.type(1 / self.size ** 2)
        c, h, w = self.in_shape
        dx = np.zeros((len(grad), h, w, c), dtype=grad.dtype)
        for rows, cols in self._offsets():
            dx[:, rows, cols] += g
        return channels_first(dx)
