"""Data augmentation: random shifts, rotations, scaling and (optionally) elastic distortion of training batches.

Each image of a batch gets its own random affine map (and displacement field); all are applied at once with
batched coordinate maps and bilinear sampling through numpy fancy indexing, with no loop over images. Pixels
that come from outside the image are 0 (background). The DataLoader applies it to training batches only, with
the run's Generator, so a seed gives the same augmented batches every time.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from digitlab.options import Nested, Number, plural


class Elastic:
    """data.augment.elastic's options: Simard, Steinkraus & Platt's (2003) smoothed random displacement field,
    `alpha` pixels strong, smoothed by a Gaussian of `sigma` pixels (their values for 28x28 digits)."""

    options = {"alpha": Number(0, low_open=True), "sigma": Number(0, low_open=True)}

    def __init__(self, alpha: float = 34.0, sigma: float = 4.0):
        self.alpha, self.sigma = float(alpha), float(sigma)


def warp(images: np.ndarray, angle: np.ndarray, scale: np.ndarray, shift: np.ndarray,
         displacement: np.ndarray | None = None) -> np.ndarray:
    """Images (B, C, H, W) moved by one map per image: rotated by `angle` (radians, B) and scaled by `scale`
    (B) about the centre, then shifted by `shift` (B, 2) pixels as (down, right); `displacement` (B, 2, H, W)
    adds an offset (rows, cols) to where each output pixel samples from. Bilinear, zeros outside."""
    b, c, h, w = images.shape
    dtype = images.dtype
    cy, cx = (h - 1) / 2, (w - 1) / 2
    rows = np.arange(h, dtype=dtype)[None, :, None] - cy - shift[:, 0, None, None].astype(dtype)
    cols = np.arange(w, dtype=dtype)[None, None, :] - cx - shift[:, 1, None, None].astype(dtype)
    cos = (np.cos(angle) / scale).astype(dtype)[:, None, None]
    sin = (np.sin(angle) / scale).astype(dtype)[:, None, None]
    src_y = cos * rows - sin * cols + cy  # the inverse map: where each output pixel comes from
    src_x = sin * rows + cos * cols + cx
    if displacement is not None:
        src_y += displacement[:, 0]
        src_x += displacement[:, 1]
    y0, x0 = np.floor(src_y), np.floor(src_x)
    wy, wx = src_y - y0, src_x - x0
    # Index into the image padded by one zero pixel on each side; anything further out clips onto that border.
    hp, wp = h + 2, w + 2
    y0 = np.clip(y0, -1, h).astype(np.intp) + 1
    x0 = np.clip(x0, -1, w).astype(np.intp) + 1
    y1 = np.minimum(y0 + 1, h + 1) * (src_y >= -1)  # a row above -1 reads the (zero) border too
    x1 = np.minimum(x0 + 1, w + 1) * (src_x >= -1)
    padded = np.zeros((b, c, hp, wp), dtype=dtype)
    padded[:, :, 1:-1, 1:-1] = images
    flat = padded.reshape(b, c, hp * wp)
    base = (np.arange(b) * (c * hp * wp))[:, None, None, None] + (np.arange(c) * (hp * wp))[None, :, None, None]
    flat = flat.reshape(-1)

    def at(yi, xi):
        return flat[base + (yi * wp + xi)[:, None]]

    wy, wx = wy[:, None], wx[:, None]
    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


@functools.lru_cache(maxsize=8)
def gaussian_matrix(n: int, sigma: float, dtype=np.float32) -> np.ndarray:
    """G (n, n) with G @ f the 1-D Gaussian smoothing of f (zeros beyond the edges)."""
    d = np.arange(n)[:, None] - np.arange(n)[None, :]
    g = np.exp(-0.5 * (d / sigma) ** 2)
    return (g / g[n // 2].sum()).astype(dtype)


class Augment:
    """A transform for the DataLoader: `augment(x)` gives the batch x (images (B, C, H, W), or flat rows of
    square one-channel images) with each image randomly moved, drawing from `rng`. With every option 0 it is
    the identity. Options: `shift` pixels (dx and dy uniform in [-shift, shift]), `rotate` degrees (uniform in
    [-rotate, rotate]), `scale` (zoom uniform in [1 - scale, 1 + scale]), `elastic` (see Elastic)."""

    options = {"shift": Number(0), "rotate": Number(0, 180), "scale": Number(0, 1, high_open=True),
               "elastic": Nested(Elastic, off=False)}

    def __init__(self, rng: np.random.Generator, shift: float = 0.0, rotate: float = 0.0, scale: float = 0.0,
                 elastic: dict | bool = False, image_shape: tuple[int, int, int] | None = None):
        self.rng, self.shift, self.rotate, self.scale = rng, float(shift), float(rotate), float(scale)
        self.elastic = vars(Elastic(**(elastic if isinstance(elastic, dict) else {}))) if elastic else None
        self.image_shape = tuple(image_shape) if image_shape is not None else None

    @property
    def identity(self) -> bool:
        return not (self.shift or self.rotate or self.scale or self.elastic)

    def shape_of(self, x: np.ndarray) -> tuple[int, int, int]:
        if self.image_shape is not None:
            return self.image_shape
        if x.ndim == 4:
            return x.shape[1:]
        side = math.isqrt(x[0].size)
        if side * side != x[0].size:
            raise ValueError(f"cannot tell the image shape of rows of {plural(x[0].size, 'pixel')}; give image_shape")
        return (1, side, side)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.identity or len(x) == 0:
            return x
        b, rng = len(x), self.rng
        shape = self.shape_of(x)
        images = x.reshape((b,) + tuple(shape))
        angle = np.deg2rad(rng.uniform(-self.rotate, self.rotate, b)) if self.rotate else np.zeros(b)
        scale = rng.uniform(1 - self.scale, 1 + self.scale, b) if self.scale else np.ones(b)
        shift = rng.uniform(-self.shift, self.shift, (b, 2)) if self.shift else np.zeros((b, 2))
        displacement = None
        if self.elastic:
            h, w = shape[1:]
            field = rng.uniform(-1, 1, (b, 2, h, w)).astype(x.dtype)
            sigma = self.elastic["sigma"]
            displacement = gaussian_matrix(h, sigma) @ field @ gaussian_matrix(w, sigma).T  # separable blur, batched
            displacement *= self.elastic["alpha"]
        return warp(images, angle, scale, shift, displacement).reshape(x.shape)

    def __repr__(self) -> str:
        return f"Augment(shift={self.shift}, rotate={self.rotate}, scale={self.scale}, elastic={self.elastic})"


def make_augment(opts: dict | None, rng: np.random.Generator, image_shape=None) -> Augment | None:
    """The training transform that data.augment's resolved options ask for, or None."""
    if not opts:
        return None
    augment = Augment(rng, image_shape=image_shape, **opts)
    return None if augment.identity else augment


def from_config(cfg: dict, rng: np.random.Generator, image_shape=None) -> Augment | None:
    """The training transform a resolved config asks for (data.augment), or None."""
    return make_augment(cfg["data"].get("augment"), rng, image_shape)
