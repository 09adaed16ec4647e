"""What every figure module shares: images as the 2-D arrays imshow draws (`picture`, `tiles`), and a finished
figure as PNG bytes or a PNG file (`png`, `save_png`). matplotlib is imported only when a figure is saved, so a
module that saves figures others drew (a run folder, a page) stays light to import.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from digitlab.system.storage import atomic_write

DPI = 110


def picture(image: np.ndarray) -> np.ndarray:
    """One image (channels, rows, cols) as the 2-D array imshow draws (the first channel)."""
    return image.reshape(image.shape[-2:]) if image.ndim >= 2 else image


def tiles(images: np.ndarray, cols: int, pad: int = 1, symmetric: bool = False) -> np.ndarray:
    """Images (B, rows, cols) or (B, 1, rows, cols) tiled into one 2-D array, `cols` to a row, NaN between them;
    with `symmetric`, each tile is scaled to [-1, 1] by its own largest magnitude (weights and gradients are
    compared by their pattern, not size)."""
    b = len(images)
    h, w = images.shape[-2:]
    images = images.reshape(b, h, w)
    if symmetric:
        images = images / np.maximum(np.abs(images).reshape(b, -1).max(axis=1), 1e-12)[:, None, None]
    rows = -(-b // cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), np.nan, dtype=np.float32)
    for i in range(b):  # at most a few hundred tiles
        r, c = divmod(i, cols)
        out[pad + r * (h + pad):(r + 1) * (h + pad), pad + c * (w + pad):(c + 1) * (w + pad)] = images[i]
    return out


def png(figure, tight: bool = True) -> bytes:
    """A matplotlib figure as PNG bytes at the house's resolution; the figure is closed. `tight` crops to what
    is drawn (a second full draw): a figure that lays itself out in inches needs none."""
    import matplotlib.pyplot as plt
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=DPI, **({"bbox_inches": "tight"} if tight else {}))
    finally:
        plt.close(figure)
    return buffer.getvalue()


def save_png(path: str | os.PathLike, figure) -> Path:
    """A matplotlib figure as a PNG at `path`, written atomically; the figure is closed."""
    return atomic_write(path, png(figure))
