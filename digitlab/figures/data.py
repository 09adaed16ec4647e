"""`digitlab data`: a look at the data before any model, as the Keras notebook starts: the splits' sizes and class
counts side by side, a grid of random samples with their labels, the class counts as bars, the average image of
each class (the 8x8 notebook's mini-project) and a histogram of pixel values. The figures are drawn here, with
matplotlib's Agg backend; `image_grid` also draws a run's class means (digitlab.run.inside).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from digitlab.data import DigitData, load_data, open_source  # noqa: E402
from digitlab.figures.canvas import picture, png  # noqa: E402
from digitlab.options import plural
from digitlab.system.storage import atomic_write, make_folder  # noqa: E402
from digitlab.system.tables import format_table  # noqa: E402

SAMPLES = 40


def count_classes(data: DigitData) -> dict[str, np.ndarray]:
    splits = {"train": data.train, "val": data.val, "test": data.test}
    return {name: np.bincount(split.y, minlength=len(data.classes)) for name, split in splits.items()
            if split is not None and len(split)}


def counts_table(data: DigitData) -> str:
    """digit | train | val | test, and the totals."""
    counts = count_classes(data)
    headers = ["digit", *counts]
    cells = [[str(digit), *(f"{int(c[i]):,}" for c in counts.values())] for i, digit in enumerate(data.classes)]
    cells.append(["all", *(f"{int(c.sum()):,}" for c in counts.values())])
    return format_table(headers, cells)


def class_means(data: DigitData) -> np.ndarray:
    """The average training image of each class (classes, channels, rows, cols)."""
    return np.stack([data.train.x[data.train.y == c].mean(axis=0) if np.any(data.train.y == c)
                     else np.zeros(data.image_shape, np.float32) for c in range(len(data.classes))])


def image_grid(images: np.ndarray, titles: list[str], cols: int = 10, title: str = "",
               cmap: str = "gray_r", symmetric: bool = False) -> plt.Figure:
    """Images (N, channels, rows, cols), one panel each with its title: random samples with their labels, the
    class means, a layer's weights. `symmetric` scales each panel about 0 (red positive, blue negative)."""
    n = len(images)
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.25 + (0.5 if title else 0)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images, titles):
        picture_ = picture(image)
        if symmetric:
            limit = float(np.abs(picture_).max()) or 1.0
            ax.imshow(picture_, cmap="RdBu_r", vmin=-limit, vmax=limit)
        else:
            ax.imshow(picture_, cmap=cmap, vmin=0, vmax=max(1.0, float(picture_.max())))
        ax.set_title(label, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def class_counts(counts: dict[str, np.ndarray], classes: list[int]) -> plt.Figure:
    """Images per class in each split, as grouped bars: a glance at whether the classes are balanced."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(classes) + 2), 3.6))
    width = 0.8 / max(len(counts), 1)
    colours = {"train": "tab:blue", "val": "tab:green", "test": "tab:orange"}
    x = np.arange(len(classes))
    for i, (split, values) in enumerate(counts.items()):
        ax.bar(x + (i - (len(counts) - 1) / 2) * width, values, width, label=f"{split} ({int(values.sum()):,})",
               color=colours.get(split))
    ax.set_xticks(x, [str(c) for c in classes])
    ax.set(xlabel="digit", ylabel="images", title="images per digit")
    ax.set_ylim(0, 1.22 * max(int(v.max()) for v in counts.values()))
    ax.legend(fontsize=8, ncol=len(counts), loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def pixel_histogram(pixels: np.ndarray, levels: int) -> plt.Figure:
    """How often each pixel value occurs (pixels scaled to [0, 1]; `levels` the raw values the dataset has),
    on a log scale: handwriting is mostly background."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(pixels.ravel(), bins=min(levels, 64), range=(0, 1), color="tab:blue", log=True)
    ax.set(xlabel="pixel value (scaled to 0..1)", ylabel="pixels (log scale)", title="pixel values")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def figures(data: DigitData, seed: int, pixel_max: int) -> dict[str, bytes]:
    """The look's figures as PNG bytes, by file name."""
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(data.train), size=min(SAMPLES, len(data.train)), replace=False))
    labels = [str(data.classes[c]) for c in data.train.y[pick]]
    return {
        "samples.png": png(image_grid(data.train.x[pick], labels, title="random training images, each titled with "
                                      "its label")),
        "counts.png": png(class_counts(count_classes(data), data.classes)),
        "means.png": png(image_grid(class_means(data), [str(c) for c in data.classes],
                                    title="the average training image of each digit")),
        "pixels.png": png(pixel_histogram(data.train.x, pixel_max + 1)),
    }


def look(data_cfg: dict, seed: int, out: Path, echo=print) -> list[Path]:
    """Print what `data_cfg` (a resolved data section) holds and write the figures into `out`."""
    source = open_source(data_cfg)
    data = load_data(data_cfg, np.random.default_rng(seed))
    echo(source.describe())
    echo(f"attribution: {source.attribution}" if source.attribution else f"source: {source.title}")
    sizes = data.sizes()
    echo(f"digits {data.classes}: {sizes['train']} train / {sizes['val']} val / "
         f"{plural(sizes['test'], 'test image', grouped=False)}")
    echo("")
    echo(counts_table(data))
    make_folder(out)
    written = [atomic_write(out / name, content) for name, content in figures(data, seed, source.pixel_max).items()]
    return written
