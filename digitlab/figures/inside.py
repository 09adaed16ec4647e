"""The figures that show a network's inside, drawn with matplotlib's Agg backend like digitlab.figures.run: the
mistakes with their probabilities, first-layer weights as images, the 2-D plane through training (a strip and
an animated GIF), saliency maps, conv activation maps and layer health. Each function takes arrays, not a run, and
returns a Figure (the GIF: its bytes). These figures lay themselves out in inches: save them with
`canvas.png(figure, tight=False)`, which skips the second draw a tight crop costs.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from digitlab.figures.canvas import picture, tiles  # noqa: E402
from digitlab.options import plural

RIGHT, WRONG, OTHER = "#2ca02c", "#d62728", "#9e9e9e"


def mistakes(images: np.ndarray, true: np.ndarray, probabilities: np.ndarray, classes: list,
             limit: int = 24, cols: int = 4) -> plt.Figure:
    """The misclassified images, most confident first (lowest probability for the true class: fastai's top
    losses), each beside its probabilities as bars: the true class green, the predicted red. One axes holds
    every panel (an image and its bars side by side), which draws several times faster than an axes each."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != true)
    order = wrong[np.argsort(probabilities[wrong, true[wrong]], kind="stable")][:limit]
    k = len(classes)
    if not len(order):
        fig = plt.figure(figsize=(6, 0.8))
        fig.text(0.5, 0.5, "no misclassified test images", ha="center", va="center", fontsize=12)
        return fig
    rows = -(-len(order) // cols)
    width, height = 2.45, 1.55  # one panel, in data units: image 1 wide, bars from 1.15 to 2.3
    fig = plt.figure(figsize=(cols * 2.3, rows * 1.45 + 0.45))
    ax = fig.add_axes((0.01, 0.01, 0.98, 1 - 0.5 / (rows * 1.45 + 0.45)))
    lefts, heights, colours = [], [], []
    bar = 1.15 / k
    for n, i in enumerate(order):
        r, c = divmod(n, cols)
        x0, y0 = c * width, (rows - 1 - r) * height
        ax.imshow(picture(images[i]), cmap="gray_r", vmin=0, vmax=1, extent=(x0, x0 + 1, y0, y0 + 1),
                  interpolation="nearest")
        ax.add_patch(plt.Rectangle((x0, y0), 1, 1, fill=False, lw=0.5, ec="#888888"))
        ax.plot([x0 + 1.12, x0 + 2.33], [y0, y0], color="black", lw=0.6)
        ax.text(x0, y0 + 1.05, f"true {classes[true[i]]}, said {classes[predicted[i]]}  "
                f"p={probabilities[i, predicted[i]]:.2f}", fontsize=8, va="bottom")
        for j in range(k):
            lefts.append(x0 + 1.15 + j * bar)
            heights.append(probabilities[i, j])
            colours.append(RIGHT if j == true[i] else WRONG if j == predicted[i] else OTHER)
            if k <= 10:
                ax.text(x0 + 1.15 + (j + 0.45) * bar, y0 - 0.04, str(classes[j]), fontsize=6 if k > 5 else 7,
                        ha="center", va="top")
        lefts.append(x0 + 1.12)  # a faint full-height guide: where p = 1 is
        heights.append(1.0)
        colours.append("none")
    ax.bar(lefts, [max(h, 0.0) for h in heights], width=bar * 0.85, bottom=[(rows - 1 - n // cols) * height
           for n in range(len(order)) for _ in range(k + 1)], align="edge", color=colours,
           edgecolor=["none"] * len(colours))
    ax.set_xlim(-0.05, cols * width)
    ax.set_ylim(-0.2, rows * height - 0.3)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.suptitle(f"misclassified test images, most confident first ({len(order)} of {len(wrong)}): "
                 f"probabilities, true class green, predicted red", fontsize=9, y=0.995, va="top")
    return fig


def weights(w: np.ndarray, total: int, cols: int = 10) -> plt.Figure:
    """A first dense layer's weights (U, H, W), one picture per hidden unit, each scaled symmetrically about 0:
    red where ink raises the unit, blue where it lowers it (scikit-learn's MNIST MLP example)."""
    cols = min(cols, len(w))
    rows = -(-len(w) // cols)
    side = 6.5 / cols
    fig = plt.figure(figsize=(7.6, rows * side + 0.7))
    ax = fig.add_axes((0.01, 0.01, 6.5 / 7.6, rows * side / (rows * side + 0.7)))
    image = ax.imshow(tiles(w, cols, symmetric=True), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.axis("off")
    bar = fig.add_axes((6.7 / 7.6, 0.1, 0.03, 0.6 * rows * side / (rows * side + 0.7)))
    fig.colorbar(image, cax=bar, ticks=[-1, 0, 1])
    bar.tick_params(labelsize=11)
    shown = f"{len(w)} of {plural(total, 'unit')}" if total > len(w) else f"all {plural(total, 'unit')}"
    fig.suptitle(f"first layer's weights, a unit per image ({shown})", fontsize=15, y=0.995, va="top")
    return fig


def _scatter(ax, points, labels, classes, size=3):
    cmap = plt.get_cmap("tab10")
    for c, digit in enumerate(classes):
        pts = points[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=size, alpha=0.6, color=cmap(c % 10), label=str(digit), linewidths=0)


def embedding_strip(record: dict, classes: list, panels: int = 6) -> plt.Figure:
    """The test images in the 2-unit plane at up to `panels` recorded epochs (the first, the last and evenly
    between), all on the same axes so that the movement shows."""
    from digitlab.inside.plane import fixed_limits
    epochs, points, labels = record["epochs"], record["points"], record["labels"]
    chosen = np.unique(np.linspace(0, len(epochs) - 1, min(panels, len(epochs))).round().astype(int))
    low, high = fixed_limits(points)
    cols = min(3, len(chosen))
    rows = -(-len(chosen) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.2 + 0.3, rows * 3.1 + 0.4), squeeze=False)
    for ax in axes.flat[len(chosen):]:
        ax.axis("off")
    for ax, i in zip(axes.flat, chosen):
        _scatter(ax, points[i], labels, classes)
        ax.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]))
        ax.set_title("initial weights" if epochs[i] == 0 else f"after epoch {epochs[i]}", fontsize=10)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(title="digit", markerscale=3, fontsize=7, title_fontsize=7, loc="best")
    fig.suptitle(f"test images in the 2-unit layer (layer {int(record['layer'])}) through training, fixed axes",
                 fontsize=11)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.06, top=1 - 0.75 / (rows * 3.1 + 0.4), wspace=0.25,
                        hspace=0.3)
    return fig


def embedding_gif(record: dict, classes: list, frames: int = 16, ms: int = 450) -> bytes:
    """The plane as an animated GIF: up to `frames` recorded epochs on fixed axes, the last one held longer.
    The axes, ticks and legend are drawn once; each frame restores them and draws only the points and the
    epoch's label on top (blitting), several times faster than drawing every frame whole."""
    from PIL import Image

    from digitlab.inside.plane import fixed_limits
    epochs, points, labels = record["epochs"], record["points"], record["labels"]
    chosen = np.unique(np.linspace(0, len(epochs) - 1, min(frames, len(epochs))).round().astype(int))
    low, high = fixed_limits(points)
    fig, ax = plt.subplots(figsize=(4.2, 4.0), dpi=80)
    cmap = plt.get_cmap("tab10")
    groups = [labels == c for c in range(len(classes))]
    dots = [ax.scatter(points[chosen[0]][g][:, 0], points[chosen[0]][g][:, 1], s=4, alpha=0.6, linewidths=0,
                       color=cmap(c % 10), label=str(d), animated=True)
            for c, (g, d) in enumerate(zip(groups, classes))]
    ax.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]))
    ax.tick_params(labelsize=7)
    ax.legend(title="digit", markerscale=3, fontsize=7, title_fontsize=7, loc="upper right")
    ax.set_title(f"test images in the 2-unit layer (layer {int(record['layer'])})", fontsize=9)
    label = ax.text(0.03, 0.97, "", transform=ax.transAxes, fontsize=10, va="top", animated=True,
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="#cccccc"))
    fig.tight_layout()
    images = []
    try:
        fig.canvas.draw()
        background = fig.canvas.copy_from_bbox(fig.bbox)
        for i in chosen:
            fig.canvas.restore_region(background)
            for dot, g in zip(dots, groups):
                dot.set_offsets(points[i][g])
                ax.draw_artist(dot)
            label.set_text("initial weights" if epochs[i] == 0 else f"after epoch {epochs[i]}")
            ax.draw_artist(label)
            rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
            images.append(Image.fromarray(rgb).quantize(colors=64, method=Image.Quantize.MEDIANCUT))
    finally:
        plt.close(fig)
    buffer = io.BytesIO()
    durations = [ms] * (len(images) - 1) + [ms * 4]
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
    return buffer.getvalue()


def saliency(images: np.ndarray, gradients: np.ndarray, true: np.ndarray, predicted: np.ndarray,
             classes: list) -> plt.Figure:
    """Each digit above its saliency map (the gradient of the predicted class's score with respect to the
    pixels, scaled to its own largest magnitude): red where more ink raises the score, blue where it lowers it."""
    n = len(images)
    first = np.stack([picture(i) for i in images])
    second = np.stack([picture(g) for g in gradients])
    fig = plt.figure(figsize=(n * 0.95 + 0.6, 2.7))
    top = fig.add_axes((0.05, 0.47, 0.94, 0.33))
    bottom = fig.add_axes((0.05, 0.08, 0.94, 0.33))
    top.imshow(tiles(first, n, pad=2), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    bottom.imshow(tiles(second, n, pad=2, symmetric=True), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    h, w = first.shape[1:]
    for j in range(n):
        colour = "black" if true[j] == predicted[j] else WRONG
        top.text(2 + j * (w + 2) + w / 2, -1, f"true {classes[true[j]]}\nsaid {classes[predicted[j]]}", fontsize=7,
                 ha="center", va="bottom", color=colour)
    for ax, name in ((top, "image"), (bottom, "saliency")):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
        ax.set_ylabel(name, fontsize=8)
    fig.suptitle("saliency: d(score of the predicted class) / d(pixel); red raises the score, blue lowers it",
                 fontsize=9, y=0.99, va="top")
    return fig


def activation_maps(image: np.ndarray, maps: list[tuple[str, np.ndarray]], label: str,
                    cols: int = 16) -> plt.Figure:
    """The probe digit, then each conv layer's channels as a grid of maps, `cols` to a row (each map scaled to
    its own range: dark is strong). Laid out in inches, so that a layer of 64 maps gets four rows, not a squeeze."""
    width, side, title = 10.0, 9.4 / cols, 0.35
    heights = [1.5] + [title + side * -(-len(m) // cols) for _, m in maps]
    total = sum(heights) + 0.1
    fig = plt.figure(figsize=(width, total))
    top = total
    for row, height in enumerate(heights):
        top -= height
        ax = fig.add_axes((0.03, top / total, 0.94, (height - title * (row > 0) - 0.05 * (row == 0)) / total))
        if row == 0:
            ax.imshow(picture(image), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(f"probe digit: {label}", fontsize=10)
        else:
            name, m = maps[row - 1]
            low = m.reshape(len(m), -1).min(axis=1)[:, None, None]
            span = np.maximum(m.reshape(len(m), -1).max(axis=1)[:, None, None] - low, 1e-12)
            ax.imshow(tiles((m - low) / span, min(cols, len(m))), cmap="gray_r", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_title(f"{name}: {len(m)} channels of {m.shape[1]}x{m.shape[2]}", fontsize=9)
        ax.axis("off")
    return fig


HEALTH_SHOWN = ("linear", "conv2d", "relu", "leaky_relu", "sigmoid", "tanh", "softmax")  # not batchnorm, pooling


def layer_health(rows: list[dict]) -> plt.Figure:
    """Per layer and epoch: output mean with its spread (a band of one standard deviation), the spread of the
    loss's gradient at the layer's output (log scale: vanishing gradients fall), and the share of dead ReLU or
    saturated sigmoid/tanh units. Weight layers and activations are drawn (batch norm and pooling are in
    layer_health.csv), one colour per layer, one legend for the three panels."""
    layers = [n for n in dict.fromkeys(r["name"] for r in rows) if n.split(" ", 1)[-1] in HEALTH_SHOWN]
    cmap = plt.get_cmap("tab10" if len(layers) <= 10 else "tab20")
    fig, (ax_act, ax_grad, ax_bad) = plt.subplots(1, 3, figsize=(14, 4.6))
    handles = []
    for n, name in enumerate(layers):
        mine = [r for r in rows if r["name"] == name]
        epochs = np.array([r["epoch"] for r in mine])
        colour = cmap(n % cmap.N)
        mean = np.array([r["act_mean"] for r in mine], dtype=float)
        std = np.array([r["act_std"] for r in mine], dtype=float)
        handles.append(ax_act.plot(epochs, mean, color=colour, marker="o", ms=3, label=name)[0])
        ax_act.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.08)
        grads = [r["grad_std"] for r in mine]
        if any(g is not None for g in grads):
            ax_grad.plot(epochs, [np.nan if g is None or g <= 0 else g for g in grads], color=colour, marker="o",
                         ms=3)
        for key, style in (("dead", "-"), ("saturated", "--")):
            values = [r[key] for r in mine]
            if any(v is not None for v in values):
                ax_bad.plot(epochs, [np.nan if v is None else v for v in values], color=colour, ls=style, marker="o",
                            ms=3)
    ax_act.set(xlabel="epoch", ylabel="output", title="output mean ± std per layer")
    ax_grad.set(xlabel="epoch", ylabel="std of dL/d output", title="gradient spread at each layer (log)",
                yscale="log")
    ax_bad.set(xlabel="epoch", ylabel="share of units", title="dead ReLU (solid), saturated (dashed)",
               ylim=(-0.03, 1.03))
    ax_bad.axhline(0.5, color="grey", ls=":", lw=1)
    if not ax_bad.lines[:-1]:
        ax_bad.text(0.5, 0.5, "no ReLU, sigmoid or tanh layer", ha="center", va="center", transform=ax_bad.transAxes)
    for ax in (ax_act, ax_grad, ax_bad):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=8, frameon=False)
    fig.suptitle("layer health on a fixed probe batch of training images (epoch 0: the initial weights)",
                 fontsize=11)
    rows_of_legend = -(-len(handles) // 7)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.13 + 0.045 * rows_of_legend, top=0.87, wspace=0.22)
    return fig
