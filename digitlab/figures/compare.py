"""Figures of many runs: every run's accuracy per epoch overlaid (`digitlab compare --plot`, a sweep's
compare.png, the comparison page), and a sweep's points in parallel coordinates (as Weights & Biases and Optuna
draw them): one vertical axis per varied config key and the metric last, one line per point, coloured by the
metric, so the settings that lead to good results show as bundles of bright lines."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from digitlab.figures.canvas import save_png  # noqa: E402
from digitlab.options import plural
from digitlab.runs.collect import Run  # noqa: E402
from digitlab.runs.columns import describe, legend_labels  # noqa: E402

LEGEND_INSIDE = 10  # more runs than this: the legend goes beside the axes, in columns of at most LEGEND_ROWS
LEGEND_ROWS = 25
COLLECTED = 100  # more points than this: their lines are drawn as one collection (a Line2D each takes seconds)
LEGEND_MOST = 100  # more runs than this: the legend names the best LEGEND_ROWS (a legend of 1,000 runs is a
                   # figure 130 inches wide that takes most of a minute to draw, and nobody reads it)


def plot(runs: list[Run], path: str | Path, title: str = "") -> Path | None:
    """The overlay figure (see `overlay`) written atomically to `path`; None when no run has a finished epoch
    yet."""
    fig = overlay(runs, title)
    return save_png(path, fig) if fig is not None else None


def overlay(runs: list[Run], title: str = ""):
    """Test accuracy per epoch of every run (solid) and its train accuracy (dashed, same colour), one colour per
    run, the legend naming each run by its differing config values; None when no run has a finished epoch.
    Up to ten runs the legend sits in the axes; with more it stands beside them in columns, best final test
    accuracy first, and the colours run along a colour map in that order (a qualitative palette has too few
    colours to tell 50 runs apart, and a rank is what the eye looks for). Past LEGEND_MOST runs the legend names
    only the best LEGEND_ROWS, and says so."""
    drawn = [r for r in runs if r.metrics]
    if not drawn:
        return None
    if not all(r.values for r in drawn):
        describe(drawn)
    labels = legend_labels(drawn)
    many = len(drawn) > LEGEND_INSIDE
    if many:
        ranked = sorted(zip(drawn, labels), key=lambda pair: -_final(pair[0]))
        drawn, labels = [run for run, _ in ranked], [label for _, label in ranked]
    named = len(drawn) if len(drawn) <= LEGEND_MOST else LEGEND_ROWS
    columns = math.ceil(named / LEGEND_ROWS)
    if many:
        colour_of = plt.get_cmap("turbo")
        colours = [colour_of(0.05 + 0.9 * i / max(len(drawn) - 1, 1)) for i in range(len(drawn))]
    else:
        colours = [plt.get_cmap("tab10")(i) for i in range(len(drawn))]
    width = 8 + (3.2 * columns if many else 0)
    fig, ax = plt.subplots(figsize=(width, 5 if named <= LEGEND_ROWS else 6.5), layout="constrained")
    if named < len(drawn):  # the runs the legend leaves out: two collections, drawn at once, under the named
        _unnamed(ax, drawn[named:], colours[named:])
    for i, (run, label, colour) in enumerate(zip(drawn[:named], labels, colours)):
        epochs = [r["epoch"] for r in run.metrics]
        test = [_nan(r.get("test_accuracy")) for r in run.metrics]
        train = [_nan(r.get("train_accuracy")) for r in run.metrics]
        on_top = 2 + 1 - i / len(drawn)  # the best drawn last, over the others
        ax.plot(epochs, test, color=colour, ls="-", marker="o", ms=3 if not many else 2, lw=1.5 if not many else 1,
                label=label if len(label) <= 60 else label[:59] + "…", zorder=on_top)
        ax.plot(epochs, train, color=colour, ls="--", alpha=0.8 if not many else 0.5, lw=1, zorder=on_top)
    ax.set(xlabel="epoch", ylabel="accuracy", title=title or "test accuracy (solid) and train accuracy (dashed)")
    ax.grid(alpha=0.3)
    if many:
        title = plural(len(drawn), "run")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncols=columns, frameon=False,
                  title=title if named == len(drawn) else f"the best {named} of {title}", title_fontsize=8)
    else:
        ax.legend(fontsize=8, loc="lower right")
    if max(len(r.metrics) for r in drawn) < 10:
        ax.set_xticks(sorted({r["epoch"] for run in drawn for r in run.metrics}))
    return fig


def _unnamed(ax, runs: list[Run], colours: list) -> None:
    """Test (solid) and train (dashed) accuracy of many runs as two line collections: one artist each instead of
    two a run (a thousand Line2D take seconds to make and draw). An epoch without a value is left out."""
    from matplotlib.collections import LineCollection
    for key, style, alpha in (("train_accuracy", "--", 0.4), ("test_accuracy", "-", 0.8)):
        lines, kept = [], []
        for run, colour in zip(runs, colours):
            points = np.array([(r["epoch"], _nan(r.get(key))) for r in run.metrics], dtype=float)
            points = points[np.isfinite(points[:, 1])]
            if len(points):
                lines.append(points)
                kept.append(colour)
        ax.add_collection(LineCollection(lines[::-1], colors=kept[::-1], linestyles=style, linewidths=0.8,
                                         alpha=alpha, zorder=1.5), autolim=True)
    ax.autoscale_view()


def _final(run: Run) -> float:
    values = [r.get("test_accuracy") for r in run.metrics if r.get("test_accuracy") is not None]
    return values[-1] if values and math.isfinite(values[-1]) else -math.inf


def _nan(value):
    return float("nan") if value is None else value


def _axis(values: list) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Positions in [0, 1] for one axis's values and its tick labels: numbers on a linear or (for a range over
    more than a factor of 10, all positive) log scale; anything else as evenly spaced categories."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if len(numbers) == len([v for v in values if v is not None]) and numbers:
        low, high = min(numbers), max(numbers)
        log = low > 0 and high / low > 10
        f = (lambda v: math.log10(v)) if log else (lambda v: float(v))
        span = (f(high) - f(low)) or 1.0
        pos = np.array([np.nan if v is None else (f(v) - f(low)) / span if high > low else 0.5 for v in values])
        ticks = sorted({v for v in numbers})
        if len(ticks) > 6:
            ticks = [low, high]
        return pos, [((f(t) - f(low)) / span if high > low else 0.5, f"{t:g}") for t in ticks]
    categories = sorted({str(v) for v in values if v is not None})
    where = {c: (i / (len(categories) - 1) if len(categories) > 1 else 0.5) for i, c in enumerate(categories)}
    pos = np.array([np.nan if v is None else where[str(v)] for v in values])
    return pos, [(where[c], c if len(c) <= 18 else c[:17] + "…") for c in categories]


def parallel_coordinates(keys: list[str], rows: list[dict], metric: str, maximize: bool = True) -> plt.Figure:
    """`rows` map each key and `metric` to a value (None where missing); lines are coloured by the metric (the
    best brightest) and drawn best last, on top."""
    columns = keys + [metric]
    scored = [r for r in rows if r.get(metric) is not None]
    missing = [r for r in rows if r.get(metric) is None]
    scored.sort(key=lambda r: r[metric], reverse=not maximize)
    ordered = missing + scored
    axes = [_axis([r.get(c) for r in ordered]) for c in columns]
    values = np.array([r[metric] for r in scored], dtype=float)
    low, high = (values.min(), values.max()) if len(values) else (0.0, 1.0)
    norm = plt.Normalize(low, high if high > low else low + 1e-9)
    cmap = plt.get_cmap("viridis" if maximize else "viridis_r")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.9 * len(columns) + 1.5), 4.6))
    x = np.arange(len(columns))
    lines, colours = [], []  # many points: one collection of lines (and one of their dots), in order: best on top
    for n, row in enumerate(ordered):
        y = np.array([pos[n] for pos, _ in axes])
        colour = "#bbbbbb" if row.get(metric) is None else cmap(norm(row[metric]))
        if len(ordered) > COLLECTED and np.isfinite(y).all():
            lines.append(np.column_stack([x, y]))
            colours.append(colour)
        else:  # one Line2D a point (a value missing: the line breaks there)
            ax.plot(x, y, color=colour, lw=1.6, alpha=0.85, marker="o", ms=3)
    if lines:
        from matplotlib.collections import LineCollection
        ax.add_collection(LineCollection(lines, colors=colours, linewidths=1.6, alpha=0.85))
        ax.scatter(np.concatenate([line[:, 0] for line in lines]), np.concatenate([line[:, 1] for line in lines]),
                   c=np.repeat(np.array([matplotlib.colors.to_rgba(c) for c in colours]), len(x), axis=0), s=9,
                   alpha=0.85, linewidths=0, zorder=2.5)
    for i, (_, ticks) in enumerate(axes):
        ax.axvline(i, color="black", lw=0.8)
        for where, text in ticks:
            ax.text(i + 0.04, where, text, fontsize=8, va="center", ha="left",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    ax.set_xticks(x, columns, fontsize=9)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(columns) - 0.4)
    ax.set_ylim(-0.06, 1.06)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.03, pad=0.02)
    bar.set_label(metric)
    ax.set_title(f"one line per point, coloured by {metric}" + (" (grey: no result)" if missing else ""), fontsize=10)
    with warnings.catch_warnings():  # a layout that cannot fit every label is drawn as it is, without a warning
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()
    return fig
