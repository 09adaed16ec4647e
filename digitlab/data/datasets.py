"""Datasets: the digits a config asks for, as float32 pixels in [0, 1] and class indices.

`data.digits` lists the digits; a digit's position in that list is its class index (so with [3, 8], a 3 is
class 0 and an 8 class 1). The validation split is stratified and seeded; `data.limit` caps the training set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitlab import threads
from digitlab.data.idx import load_idx_set

CHUNK_ROWS = 2048  # images gathered and converted at a time (1.6 MB of uint8)


@dataclass
class Dataset:
    """Images `x` (N, 1, rows, cols) float32 in [0, 1] and class indices `y` (N,) int64."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class DigitData:
    """The splits of one experiment and the digit each class index stands for."""

    train: Dataset
    val: Dataset | None
    test: Dataset
    classes: list[int]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val) if self.val else 0, "test": len(self.test)}


def to_dataset(images: np.ndarray, classes: np.ndarray, rows: np.ndarray) -> Dataset:
    """Gather `rows` of uint8 `images` and scale them to float32 in [0, 1]: the one place pixels are converted.

    A slice of rows at a time (no full-size uint8 copy), the slices split between threads: writing a fresh
    188 MB array is mostly the kernel handing out pages, which both cores can do at once."""
    x = np.empty((len(rows), 1) + images.shape[1:], dtype=np.float32)

    def convert(lo: int, hi: int) -> None:
        buffer = np.empty((min(CHUNK_ROWS, hi - lo),) + images.shape[1:], dtype=images.dtype)
        for start in range(lo, hi, CHUNK_ROWS):
            chunk = buffer[:min(CHUNK_ROWS, hi - start)]
            np.take(images, rows[start:start + len(chunk)], axis=0, out=chunk)
            np.multiply(chunk, np.float32(1 / 255), out=x[start:start + len(chunk), 0], casting="unsafe")

    if len(rows):
        threads.run(convert, threads.spans(len(rows), min_chunk=4 * CHUNK_ROWS))
    return Dataset(x, classes[rows])


def class_indices(labels: np.ndarray, digits: list[int]) -> np.ndarray:
    """Each label's position in `digits`, or -1 for a label that is not asked for."""
    lookup = np.full(256, -1, dtype=np.int64)
    lookup[np.asarray(digits)] = np.arange(len(digits))
    return lookup[np.asarray(labels, dtype=np.uint8)]


def select_digits(images: np.ndarray, labels: np.ndarray, digits: list[int]) -> Dataset:
    """The images whose label is in `digits`, relabelled to class indices."""
    classes = class_indices(labels, digits)
    return to_dataset(images, classes, np.flatnonzero(classes >= 0))


def stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions (kept, held out) into `y`, holding out `fraction` of each class, chosen by `rng`; both sorted."""
    held = [rng.permutation(np.flatnonzero(y == c))[: int(round(fraction * np.count_nonzero(y == c)))]
            for c in np.unique(y)]
    held = np.sort(np.concatenate(held)) if held else np.empty(0, np.int64)
    kept = np.setdiff1d(np.arange(len(y)), held, assume_unique=True)
    return kept, held


def load_digits(digits: list[int], validation: float = 0.0, limit: int | None = None,
                path: str | None = None, rng: np.random.Generator | None = None) -> DigitData:
    """Train/validation/test splits of the digits asked for, from bundled MNIST or the IDX files in `path`.

    Rows are chosen on the labels alone and the pixels of each split gathered and scaled once.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    raw = load_idx_set(path)
    train_classes = class_indices(raw["train_labels"], digits)
    train_rows = np.flatnonzero(train_classes >= 0)
    val = None
    if validation > 0:
        kept, held = stratified_split(train_classes[train_rows], validation, rng)
        val = to_dataset(raw["train_images"], train_classes, train_rows[held])
        train_rows = train_rows[kept]
    if limit is not None and limit < len(train_rows):
        train_rows = np.sort(rng.choice(train_rows, size=limit, replace=False))
    test = select_digits(raw["test_images"], raw["test_labels"], digits)
    train = to_dataset(raw["train_images"], train_classes, train_rows)
    return DigitData(train, val, test, list(digits))
