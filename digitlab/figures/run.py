"""Figures of a run, drawn with matplotlib's Agg backend (no display needed): its curves, the confusion matrix,
the 2-unit layer's plane, the first convolution's kernels and the augmentation. Each function takes arrays, not a
run, and returns a Figure; digitlab.figures.canvas makes it a PNG.

The embedding figure is the course notebooks' picture: the test set in the plane of the network's 2-unit layer,
coloured by digit, over the probability that the rest of the network assigns to each point of that plane.
"""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")
# A run name in a script the bundled font lacks (数字) is drawn as boxes in a title; say nothing about it on stderr.
warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from digitlab.figures.canvas import tiles  # noqa: E402
from digitlab.inside.plane import embedding_layer  # noqa: E402
from digitlab.nn import Sequential  # noqa: E402

SPLIT_STYLE = {"train": dict(color="tab:blue", ls="--"), "val": dict(color="tab:green", ls="-."),
               "test": dict(color="tab:orange", ls="-")}


def curves(rows: list[dict], title: str = "", chance: float | None = None) -> plt.Figure:
    """Loss, accuracy and error rate per epoch: train dashed, validation dash-dot, test solid. The error rate
    (1 - accuracy) is on a log scale, where the late epochs' gains stay visible, beside `chance` (the error of
    always guessing the commonest class) as a grey dotted line. When the learning rate changed (a schedule, an
    extended run), the loss panel shows it too, on a grey axis of its own at the right: the lr of each epoch's
    last batch, as metrics.csv records it (log scale when it spans more than a factor of 20)."""
    fig, (ax_loss, ax_acc, ax_err) = plt.subplots(1, 3, figsize=(14, 4))
    epochs = [r["epoch"] for r in rows]
    for split, style in SPLIT_STYLE.items():
        for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy"), (ax_err, "accuracy")):
            values = [r.get(f"{split}_{metric}") for r in rows]
            if not any(v is not None for v in values):
                continue
            values = [np.nan if v is None else v for v in values]
            if ax is ax_err:
                values = [max(1 - v, 1e-4) if v == v else np.nan for v in values]
            ax.plot(epochs, values, marker="o", ms=3, label=split, **style)
    if chance is not None:
        ax_err.axhline(1 - chance, color="grey", ls=":", lw=1.2, label=f"chance ({1 - chance:.3f})")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_lr = _lr_axis(ax_loss, epochs, [r.get("lr") for r in rows])
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy" + (f" (chance {chance:.3f})" if chance else ""))
    ax_err.set(xlabel="epoch", ylabel="error rate (1 - accuracy)", title="error rate, log scale", yscale="log")
    for ax in (ax_loss, ax_acc, ax_err):
        ax.grid(alpha=0.3, which="both" if ax is ax_err else "major")
        handles, labels = ax.get_legend_handles_labels()
        if ax is ax_loss and ax_lr is not None:
            more = ax_lr.get_legend_handles_labels()
            handles, labels = handles + more[0], labels + more[1]
        if handles:  # a run without a finite value has nothing to name
            ax.legend(handles, labels, fontsize=8)
        if len(epochs) < 12:
            ax.set_xticks(epochs)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _lr_axis(ax: plt.Axes, epochs: list, lrs: list):
    """The learning rate per epoch on a twin axis of `ax`, when it took more than one value; else None."""
    finite = [v for v in lrs if isinstance(v, (int, float)) and np.isfinite(v)]
    if len(set(finite)) < 2:
        return None
    ax_lr = ax.twinx()
    ax_lr.plot(epochs, [v if isinstance(v, (int, float)) else np.nan for v in lrs], color="grey", ls=":", lw=1.5,
               marker=".", ms=4, label="learning rate")
    ax_lr.set_ylabel("learning rate (end of epoch)", color="dimgrey")
    ax_lr.tick_params(axis="y", colors="dimgrey", labelsize=8)
    if min(finite) > 0 and max(finite) / min(finite) > 20:
        ax_lr.set_yscale("log")
    else:
        ax_lr.set_ylim(bottom=0)
    return ax_lr


def confusion(matrix: np.ndarray, classes: list[int], title: str = "test confusion") -> plt.Figure:
    """Counts with true digits as rows and predicted digits as columns, each cell annotated."""
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.6 + 0.55 * k, 1.2 + 0.5 * k))
    shown = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), [str(c) for c in classes])
    ax.set_yticks(range(k), [str(c) for c in classes])
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def embedding(model: Sequential, x: np.ndarray, y: np.ndarray, classes: list[int],
              limit: int = 5000) -> plt.Figure | None:
    """The test set in the 2-unit layer's plane, coloured by digit, over the model's output in that plane:
    P(first digit) contours for one sigmoid output, predicted-class regions otherwise."""
    k = embedding_layer(model)
    if k is None:
        return None
    head = model.layers[k + 1:]
    z = x[:limit]
    with model.evaluating():
        for layer in model.layers[:k + 1]:
            z = layer.forward(z)
        labels = y[:limit]
        pad = 0.1 * (z.max(axis=0) - z.min(axis=0) + 1e-6)
        lo, hi = z.min(axis=0) - pad, z.max(axis=0) + pad
        gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
        out = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
        for layer in head:
            out = layer.forward(out)
        if model.output_activation is not None:
            out = model.output_activation.forward(out)
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab10")
    if out.shape[1] == 1:
        filled = ax.contourf(gx, gy, out[:, 0].reshape(gx.shape), levels=np.linspace(0, 1, 11), cmap="RdBu_r",
                             alpha=0.35)
        ax.contour(gx, gy, out[:, 0].reshape(gx.shape), levels=[0.5], colors="k", linewidths=1)
        fig.colorbar(filled, ax=ax, label=f"P(digit {classes[0]})")
    else:
        region = out.argmax(axis=1).reshape(gx.shape)
        ax.contourf(gx, gy, region, levels=np.arange(len(classes) + 1) - 0.5,
                    colors=[cmap(i % 10) for i in range(len(classes))], alpha=0.18)
    for c, digit in enumerate(classes):
        pts = z[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.6, color=cmap(c % 10), label=str(digit))
    ax.legend(title="digit", markerscale=3, loc="best")
    ax.set(xlabel="unit 1", ylabel="unit 2", title=f"test set in the 2-D layer (layer {k})")
    fig.tight_layout()
    return fig


def augmentation(before: np.ndarray, after: np.ndarray, cols: int = 8) -> plt.Figure:
    """The same training images (B, channels, rows, cols) before and after data augmentation, side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.4))
    for ax, images, title in ((axes[0], before, "before"), (axes[1], after, "after augmentation")):
        ax.imshow(tiles(images, cols), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    return fig


def filters(weight: np.ndarray, title: str = "first convolution's kernels") -> plt.Figure:
    """A conv layer's kernels (filters, channels, k, k), one panel each (channels averaged), each scaled
    symmetrically about 0: red positive, blue negative."""
    kernels = weight.mean(axis=1)
    n = len(kernels)
    cols = min(n, 8)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.2 + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, k in zip(axes.flat, kernels):
        limit = float(np.abs(k).max()) or 1.0
        ax.imshow(k, cmap="RdBu_r", vmin=-limit, vmax=limit)
    fig.suptitle(f"{title} ({n} of {weight.shape[2]}x{weight.shape[3]})")
    fig.tight_layout()
    return fig
