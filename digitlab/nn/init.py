"""Weight initialisers: each fills a float32 array in place from the run's Generator.

Defaults follow the layer after a weight: He (Kaiming) normal before a ReLU, Xavier/Glorot uniform otherwise,
which keeps the variance of activations roughly constant through the network.
"""

from __future__ import annotations

import math

import numpy as np


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight stored as (in, out) or as (out_channels, in_channels, kh, kw)."""
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def xavier(w: np.ndarray, rng: np.random.Generator, scale: float | None = None) -> None:
    """Glorot uniform: U(-a, a) with a = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(w.shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    w[...] = rng.uniform(-limit, limit, size=w.shape)


def he(w: np.ndarray, rng: np.random.Generator, scale: float | None = None) -> None:
    """He/Kaiming normal: N(0, 2 / fan_in), for weights followed by a ReLU."""
    fan_in, _ = fans(w.shape)
    w[...] = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=w.shape)


def normal(w: np.ndarray, rng: np.random.Generator, scale: float | None = None) -> None:
    """N(0, scale^2), the course notebooks' plain random start (scale defaults to 0.01)."""
    w[...] = rng.normal(0.0, 0.01 if scale is None else scale, size=w.shape)


def zeros(w: np.ndarray, rng: np.random.Generator, scale: float | None = None) -> None:
    w[...] = 0


INITIALISERS = {"he": he, "kaiming": he, "xavier": xavier, "glorot": xavier, "normal": normal, "zeros": zeros}
