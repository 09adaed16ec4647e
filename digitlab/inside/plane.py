"""The 2-D plane of a network with a 2-unit layer (the course's 784-100-100-2-1): where that layer puts each
image. Recorded at several epochs while training, it shows the network pulling the digits apart."""

from __future__ import annotations

import numpy as np

from digitlab.inside.probe import trace
from digitlab.nn import Sequential


def embedding_layer(model: Sequential) -> int | None:
    """Index of the layer whose output is the network's 2-D plane: the end of the first run of 2-wide layers
    before the output (so `linear: 2` followed by `tanh` is seen after the tanh), or None."""
    start = None
    for i, shape in enumerate(model.layer_shapes[:-1]):
        if shape == (2,):
            start = i
        elif start is not None:
            break
    return start


def project(model: Sequential, x: np.ndarray, layer: int) -> np.ndarray:
    """(N, 2): the output of `layer` (a 2-unit layer) for inputs x, in evaluation mode."""
    return np.asarray(trace(model, x, upto=layer + 1).outputs[-1], dtype=np.float32).reshape(len(x), 2)


def fixed_limits(points: np.ndarray, pad: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of each axis over every snapshot (E, N, 2), from the 0.5th to the 99.5th percentile so that a
    few far points do not squeeze the rest into a corner; padded by `pad` of the range."""
    finite = points[np.isfinite(points).all(axis=-1)]
    if not len(finite):
        return np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    low, high = np.percentile(finite, 0.5, axis=0), np.percentile(finite, 99.5, axis=0)
    span = np.maximum(high - low, 1e-6)
    return low - pad * span, high + pad * span
