"""From a source's labelled images to the splits of one experiment: the digits asked for (a digit's position in
`data.digits` is its class index, so with [3, 8] a 3 is class 0), a capped training pool (`data.limit`), a
stratified validation split, and a test split (the official one, or a stratified fraction for a dataset
without one). Every choice comes from the run's Generator except the test split, which is the same for every
run of a dataset, so that runs are compared on the same images. The rows each split took are recorded
(`DigitData.indices`) and saved in the run folder, so a finished run's splits can be rebuilt exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from digitlab.data.source import Source
from digitlab.errors import DataError, SplitError
from digitlab.options import plural
from digitlab.system import threads

CHUNK_ROWS = 2048  # images gathered and converted at a time (1.6 MB of uint8 for MNIST)
TEST_SPLIT_SEED = 0  # the test split of a dataset without an official one: the same images for every run


@dataclass
class Dataset:
    """Images `x` (N, channels, rows, cols) float32 in [0, 1] and class indices `y` (N,) int64."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class DigitData:
    """The splits of one experiment, the digit each class index stands for, and where each split came from:
    `indices[split]` are rows of the source's part `parts[split]`."""

    train: Dataset
    val: Dataset | None
    test: Dataset
    classes: list[int]
    image_shape: tuple[int, int, int]
    indices: dict[str, np.ndarray] = field(default_factory=dict)
    parts: dict[str, str] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val) if self.val else 0, "test": len(self.test)}


def to_dataset(images: np.ndarray, classes: np.ndarray, rows: np.ndarray, pixel_max: int = 255) -> Dataset:
    """Gather `rows` of integer `images` and scale them to float32 in [0, 1]: the one place pixels are converted.

    A slice of rows at a time (no full-size uint8 copy), the slices split between threads: writing a fresh
    188 MB array is mostly the kernel handing out pages, which both cores can do at once."""
    x = np.empty((len(rows), 1) + images.shape[1:], dtype=np.float32)
    scale = np.float32(1 / pixel_max)

    def convert(lo: int, hi: int) -> None:
        buffer = np.empty((min(CHUNK_ROWS, hi - lo),) + images.shape[1:], dtype=images.dtype)
        for start in range(lo, hi, CHUNK_ROWS):
            chunk = buffer[:min(CHUNK_ROWS, hi - start)]
            np.take(images, rows[start:start + len(chunk)], axis=0, out=chunk)
            np.multiply(chunk, scale, out=x[start:start + len(chunk), 0], casting="unsafe")

    if len(rows):
        threads.run(convert, threads.spans(len(rows), min_chunk=4 * CHUNK_ROWS))
    return Dataset(x, classes[rows])


def class_indices(labels: np.ndarray, digits: list[int]) -> np.ndarray:
    """Each label's position in `digits`, or -1 for a label that is not asked for."""
    labels = np.asarray(labels).astype(np.int64)
    lookup = np.full(max(256, int(labels.max(initial=0)) + 1), -1, dtype=np.int64)
    lookup[np.asarray(digits)] = np.arange(len(digits))
    return lookup[labels]


def select_digits(images: np.ndarray, labels: np.ndarray, digits: list[int], pixel_max: int = 255) -> Dataset:
    """The images whose label is in `digits`, relabelled to class indices."""
    classes = class_indices(labels, digits)
    return to_dataset(images, classes, np.flatnonzero(classes >= 0), pixel_max)


def stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions (kept, held out) into `y`, holding out `fraction` of each class, chosen by `rng`; both sorted."""
    held = [rng.permutation(np.flatnonzero(y == c))[: int(round(fraction * np.count_nonzero(y == c)))]
            for c in np.unique(y)]
    held = np.sort(np.concatenate(held)) if held else np.empty(0, np.int64)
    kept = np.setdiff1d(np.arange(len(y)), held, assume_unique=True)
    return kept, held


def draw_splits(source: Source, digits: list[int], validation: float = 0.0, test: float | None = None,
                limit: int | None = None, rng: np.random.Generator | None = None) -> DigitData:
    """The train, validation and test splits of `digits`. `limit` caps the training pool before the validation
    split is drawn from it, so a quick run stays quick whatever the validation fraction."""
    rng = rng if rng is not None else np.random.default_rng(0)
    parts = source.parts()
    train_part, test_part = ("train", "test") if "test" in parts else ("all", "all")
    classes = class_indices(parts[train_part][1], digits)  # each row's class, -1 for digits not asked for
    candidates = np.flatnonzero(classes >= 0)
    if test_part == "test":
        pool, test_rows = candidates, np.flatnonzero(class_indices(parts["test"][1], digits) >= 0)
    else:
        kept, held = stratified_split(classes[candidates], test or 0.0, np.random.default_rng(TEST_SPLIT_SEED))
        pool, test_rows = candidates[kept], candidates[held]
    if not len(test_rows):
        raise SplitError(f"data.test: {test} of the {plural(len(candidates), 'image')} of digits {digits} holds out "
                         f"no test image; raise data.test" if test_part == "all" else
                         f"data: {source.name}'s test part has no image of digits {digits}")
    whole_pool = pool
    if limit is not None and limit < len(pool):
        pool = np.sort(rng.choice(pool, size=limit, replace=False))
    indices = {"train": pool, "test": test_rows}
    if validation > 0:
        kept, held = stratified_split(classes[pool], validation, rng)
        if not len(held):
            raise SplitError(f"data.validation: {validation} of a training pool of {plural(len(pool), 'image')} "
                             f"holds out no validation image; raise it, or set 0 for no validation split")
        indices["train"], indices["val"] = pool[kept], pool[held]
    counts = np.bincount(classes[indices["train"]], minlength=len(digits))
    if (counts == 0).any():
        missing = digits[int(np.flatnonzero(counts == 0)[0])]
        if not (classes[whole_pool] == digits.index(missing)).any():
            raise SplitError(f"data: digit {missing} has no image in {source.name}'s training pool" +
                             (f" once data.test {test} is held out; lower data.test" if train_part == "all" else ""))
        raise SplitError(f"data: digit {missing} has no training example left (limit {limit}, validation "
                         f"{validation}); raise data.limit or lower data.validation")
    return from_indices(source, digits, indices, {"train": train_part, "val": train_part, "test": test_part}, parts)


def from_indices(source: Source, digits: list[int], indices: dict[str, np.ndarray], part_of: dict[str, str],
                 parts: dict | None = None) -> DigitData:
    """The splits that `indices` (rows of the source's parts `part_of[split]`) name: how a run folder's
    recorded splits are rebuilt."""
    parts = parts if parts is not None else source.parts()
    datasets = {}
    for split, rows in indices.items():
        images, labels = parts[part_of[split]]
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows) and split != "val":  # runs made before empty validation splits were refused have them
            raise DataError(f"{split} split: holds no image")
        if len(rows) and (rows.min() < 0 or rows.max() >= len(labels)):
            raise DataError(f"{split} split: rows outside the {plural(len(labels), 'image')} of {source.name}'s "
                            f"{part_of[split]} part")
        classes = class_indices(labels, digits)
        if len(rows) and (classes[rows] < 0).any():
            raise DataError(f"{split} split: holds images of digits not in {digits}")
        datasets[split] = to_dataset(images, classes, rows, source.pixel_max)
    return DigitData(datasets["train"], datasets.get("val"), datasets["test"], list(digits), source.image_shape,
                     {k: np.asarray(v, dtype=np.int64) for k, v in indices.items()},
                     {k: part_of[k] for k in indices})
