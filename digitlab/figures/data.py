"""A look at the data before any model, as the Keras notebook starts: the splits' sizes and class counts side by
side, a grid of random samples with their labels, the class counts as bars, the average image of each class (the
8x8 notebook's mini-project) and a histogram of pixel values."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digitlab.data import DigitData, load_data, open_source
from digitlab.figures import run as plots
from digitlab.system.storage import make_folder, png_bytes
from digitlab.system.tables import format_table

SAMPLES = 40


def class_counts(data: DigitData) -> dict[str, np.ndarray]:
    splits = {"train": data.train, "val": data.val, "test": data.test}
    return {name: np.bincount(split.y, minlength=len(data.classes)) for name, split in splits.items()
            if split is not None and len(split)}


def counts_table(data: DigitData) -> str:
    """digit | train | val | test, and the totals."""
    counts = class_counts(data)
    headers = ["digit", *counts]
    cells = [[str(digit), *(f"{int(c[i]):,}" for c in counts.values())] for i, digit in enumerate(data.classes)]
    cells.append(["all", *(f"{int(c.sum()):,}" for c in counts.values())])
    return format_table(headers, cells)


def class_means(data: DigitData) -> np.ndarray:
    """The average training image of each class (classes, channels, rows, cols)."""
    return np.stack([data.train.x[data.train.y == c].mean(axis=0) if np.any(data.train.y == c)
                     else np.zeros(data.image_shape, np.float32) for c in range(len(data.classes))])


def figures(data: DigitData, seed: int, pixel_max: int) -> dict[str, bytes]:
    """The look's figures as PNG bytes, by file name."""
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(data.train), size=min(SAMPLES, len(data.train)), replace=False))
    labels = [str(data.classes[c]) for c in data.train.y[pick]]
    return {
        "samples.png": png_bytes(plots.image_grid(data.train.x[pick], labels, title="random training images, "
                                                  "each titled with its label")),
        "counts.png": png_bytes(plots.class_counts(class_counts(data), data.classes)),
        "means.png": png_bytes(plots.image_grid(class_means(data), [str(c) for c in data.classes],
                                                title="the average training image of each digit")),
        "pixels.png": png_bytes(plots.pixel_histogram(data.train.x, pixel_max + 1)),
    }


def look(data_cfg: dict, seed: int, out: Path, echo=print) -> list[Path]:
    """Print what `data_cfg` (a resolved data section) holds and write the figures into `out`."""
    source = open_source(data_cfg)
    data = load_data(data_cfg, np.random.default_rng(seed))
    echo(source.describe())
    echo(f"attribution: {source.attribution}" if source.attribution else f"source: {source.title}")
    sizes = data.sizes()
    echo(f"digits {data.classes}: {sizes['train']} train / {sizes['val']} val / {sizes['test']} test images")
    echo("")
    echo(counts_table(data))
    from digitlab.system.storage import atomic_write
    make_folder(out)
    written = [atomic_write(out / name, content) for name, content in figures(data, seed, source.pixel_max).items()]
    return written
