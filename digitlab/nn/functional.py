"""Numerically stable elementwise and row-wise functions, in one place (as tinynn keeps them).

Each works in the dtype it is given (float32 on the training path) and never overflows: sigmoid goes through
tanh, softmax and log-softmax subtract the row maximum first.
"""

from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), written as (1 + tanh(x/2)) / 2 so that x = +-1000 gives exactly 1 and 0, not inf."""
    y = np.multiply(x, 0.5)
    np.tanh(y, out=y)
    y += 1
    y *= 0.5
    return y


def logsumexp(x: np.ndarray) -> np.ndarray:
    """log(sum(exp(x))) over the last axis, kept as a column: max + log(sum(exp(x - max)))."""
    top = x.max(axis=-1, keepdims=True)
    return top + np.log(np.exp(x - top).sum(axis=-1, keepdims=True))


def log_softmax(x: np.ndarray) -> np.ndarray:
    """x - logsumexp(x), row-wise."""
    return x - logsumexp(x)


def softmax(x: np.ndarray) -> np.ndarray:
    """exp(x - max) / sum(exp(x - max)), row-wise."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), finite for any finite x."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


# -- image layout ------------------------------------------------------------------------------------------------
# Conv, pooling and batch-norm layers keep images channel-last in memory; the (N, C, H, W) arrays they hand on
# are transposed views of it, so consecutive image layers never copy to change layout.
def channels_last(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, H, W, C): a view, contiguous when x came from an image layer."""
    return x.transpose(0, 2, 3, 1)


def channels_first(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C, H, W): a view."""
    return x.transpose(0, 3, 1, 2)


def image_shape(layer: str, in_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """in_shape when it is (channels, rows, cols), else the ValueError that tells where the layer belongs."""
    if len(in_shape) != 3:
        raise ValueError(f"{layer} expects images (channels, rows, cols) but receives shape {in_shape}; "
                         f"it must come before any flatten or linear layer")
    return in_shape
