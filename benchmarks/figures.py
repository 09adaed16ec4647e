"""The figures of benchmarks/measurements.json (what sweep_wall.py and many_runs.py printed, copied there with the
commands, commits and load averages): benchmarks/sweep_wall.png, point_cost.png and listing.png, each with the
load average of its measurements in its caption.

    .venv/bin/python benchmarks/figures.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
COLOURS = {"before": "#d62728", "after": "#1f77b4", "first step": "#9467bd"}
LISTING_CODES = ("before", "first step", "after")  # the catalog's code in listing.png's right panel


def loads(rows) -> str:
    values = [r["load"] for r in rows if r.get("load") is not None]
    return f"{min(values):.1f}-{max(values):.1f}" if values else "?"


def caption(fig, text: str) -> None:
    fig.text(0.01, 0.01, text, fontsize=8, va="bottom", ha="left", wrap=True)


def sweep_wall(data: dict) -> None:
    rows = data["sweep_wall"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 2]})
    for code in ("before", "after"):
        mine = sorted((r for r in rows if r["code"] == code), key=lambda r: r["points"])
        sizes = sorted({r["points"] for r in mine})
        for key, marker, style, what in (("wall_s", "o", "-", "wall"),
                                         ("cpu_s", "s", "--", "CPU seconds of the sweep and its workers")):
            left.scatter([r["points"] for r in mine], [r[key] for r in mine], marker=marker, color=COLOURS[code],
                         s=22, alpha=0.8)
            middle = [statistics.median(r[key] for r in mine if r["points"] == n) for n in sizes]
            left.plot(sizes, middle, style, color=COLOURS[code], alpha=1 if key == "wall_s" else 0.6,
                      label=f"{code} ({mine[0]['commit']}): {what} (line: median)")
            if key == "wall_s":
                for n, value in zip(sizes, middle):
                    left.annotate(f"{value:.0f} s", (n, value), textcoords="offset points",
                                  xytext=(-34 if n == sizes[-1] else 6, 6), fontsize=8, color=COLOURS[code])
    left.axhline(180, color="grey", ls=":", lw=1)
    left.text(1000, 184, "target at 1,000 points: 3 min", fontsize=8, color="grey", ha="right")
    left.set_ylim(0, 215)
    left.set(xlabel="points (random search, digits8x8-mlp, 3 epochs each, --workers 2)", ylabel="seconds",
             title="a real sweep, start to exit")
    left.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, 0.86))
    left.grid(alpha=0.3)
    ends = data["end"]
    parts = ["look", "points.csv", "compare.png", "report.html"]
    bottom = {code: 0.0 for code in ("before", "after")}
    for part, colour in zip(parts, ["#9467bd", "#8c564b", "#2ca02c", "#ff7f0e"]):
        values = [next(e for e in ends if e["code"] == code)["parts"][part] for code in ("before", "after")]
        right.bar(["before", "after"], values, bottom=[bottom["before"], bottom["after"]], color=colour, label=part)
        bottom = {"before": bottom["before"] + values[0], "after": bottom["after"] + values[1]}
    for code in ("before", "after"):
        right.text(code, bottom[code] + 0.5, f"{bottom[code]:.1f} s", ha="center", fontsize=9)
    right.set(ylabel="seconds", title="the end of a 1,000-point sweep, part by part")
    right.legend(fontsize=8)
    right.grid(alpha=0.3, axis="y")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    caption(fig, f"Each dot one run of benchmarks/sweep_wall.py; 2 cores shared with other jobs, load average (1 min) "
                 f"{loads(rows + ends)} at the start of these runs. Commands and numbers: benchmarks/RESULTS.md.")
    fig.savefig(HERE / "sweep_wall.png", dpi=110)
    plt.close(fig)


def point_cost(data: dict) -> None:
    rows = data["worker"]
    fig, ax = plt.subplots(figsize=(8, 4.6))
    for i, code in enumerate(("before", "after")):
        mine = [r for r in rows if r["code"] == code]
        for j, r in enumerate(mine):
            x = i + (j - (len(mine) - 1) / 2) * 0.18
            ax.bar(x, r["epochs_s"], width=0.16, color="#bbbbbb", label="the epochs" if i == j == 0 else None)
            ax.bar(x, r["fixed_s"], width=0.16, bottom=r["epochs_s"], color=COLOURS[code],
                   label=f"{code}: fixed cost beyond the epochs" if j == 0 else None)
            ax.text(x, r["epochs_s"] + r["fixed_s"] + 0.004, f"{1000 * r['fixed_s']:.0f} ms", ha="center", fontsize=8)
    ax.axhline(0.1, color="grey", ls=":", lw=1)
    ax.text(0.5, 0.103, "target: fixed cost <= 0.1 s", fontsize=8, color="grey", ha="center")
    ax.set_xticks([0, 1], [f"before ({rows[0]['commit']})", f"after ({rows[-1]['commit']})"])
    ax.set(ylabel="seconds a point (median of 40)", title="one point in a sweep worker: its epochs and the rest")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    caption(fig, f"digitlab.sweep.point.run_point, 40 points of digits8x8-mlp (3 epochs) one after the other in one "
                 f"process, each bar one round, rounds interleaved; load average {loads(rows)} on 2 shared cores.")
    fig.savefig(HERE / "point_cost.png", dpi=110)
    plt.close(fig)


def listing(data: dict) -> None:
    rows = sorted((r for r in data["listing"] if r["series"] == "first"), key=lambda r: r["runs"])
    again = [r for r in data["listing"] if r["series"] == "again"]
    fig, (ax, right) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [5, 4]})
    runs = [r["runs"] for r in rows]
    for key, label, colour, target, below in (("cold_s", "cold (no catalog)", "#d62728", 30, True),
                                              ("warm_s", "warm", "#1f77b4", 1.0, True),
                                              ("where_s", "warm, --where test_acc>0.9", "#2ca02c", 1.5, False)):
        ax.plot(runs, [r[key] for r in rows], "o-", color=colour, label=f"{label} (load {loads(rows)})")
        ax.scatter([r["runs"] for r in again], [r[key] for r in again], marker="D", facecolors="none",
                   edgecolors=colour, s=40, label=f"{label}, again (load {loads(again)})")
        ax.axhline(target, color=colour, ls=":", lw=1)
        ax.text(runs[0], target * 1.07, f"target at 10,000: {target:g} s", fontsize=7, color=colour)
        for r in rows + again:
            ax.annotate(f"{r[key]:.2f}", (r["runs"], r[key]), textcoords="offset points",
                        xytext=(-30 if r in again else 5, -10 if below else 4), fontsize=7, color=colour)
    ax.set(xscale="log", yscale="log", xlabel="run folders", ylabel="seconds (wall, median)",
           title=f"digitlab runs over N copies of a 3v8-logreg run folder\n(commit {rows[0]['commit']})")
    ax.set_xticks(runs, [f"{n:,}" for n in runs])
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, 0.9))
    ax.grid(alpha=0.3, which="both")
    warm_cpu(right, [r for r in data["listing"] if r["series"] in LISTING_CODES])
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    caption(fig, "benchmarks/many_runs.py: each a fresh process; cold once, warm and --where the median of 3. Load "
                 f"average {loads(data['listing'])} on 2 shared cores (the legends say which). Right: the warm "
                 "path's CPU seconds at 10,000 folders, the catalog's code before and after, runs interleaved.")
    fig.savefig(HERE / "listing.png", dpi=110)
    plt.close(fig)


def warm_cpu(ax, rows: list[dict]) -> None:
    """CPU seconds of a warm `digitlab runs` (and with --where) over 10,000 folders, before and after: each point
    one run of the benchmark (the median of its 3 listings), the bar their median, the wall time beside each."""
    for i, (key, wall) in enumerate((("warm_cpu_s", "warm_s"), ("where_cpu_s", "where_s"))):
        for j, code in enumerate(LISTING_CODES):
            mine = [r for r in rows if r["series"] == code]
            x = i * 3.6 + j
            if not mine:
                continue
            commits = ", ".join(sorted({r["commit"] for r in mine}))
            ax.bar(x, statistics.median(r[key] for r in mine), width=0.8, color=COLOURS[code], alpha=0.35,
                   label=f"{code} ({commits}; load {loads(mine)})" if i == 0 else None)
            ax.scatter([x] * len(mine), [r[key] for r in mine], color=COLOURS[code], s=14, zorder=3)
            mine.sort(key=lambda r: r[key])
            for k, r in enumerate(mine):  # labels spread apart where the points are close
                ax.annotate(f"{r[key]:.2f} ({r[wall]:.2f}; {r['load']:.1f})", (x, r[key]),
                            textcoords="offset points", xytext=(8, (k - (len(mine) - 1) / 2) * 9), fontsize=6.5,
                            va="center", color=COLOURS[code])
    ax.set_xticks([1, 4.6], ["warm", "warm, --where"])
    ax.set(ylabel="CPU seconds (user + system) of one listing", ylim=(0, 1.8), xlim=(-0.6, 7.4),
           title="the warm listing's CPU at 10,000 folders\n(beside each: CPU s (wall s; load))")
    ax.axhline(1.0, color="#1f77b4", ls=":", lw=1)
    ax.text(-0.4, 1.02, "warm target (wall): 1 s", fontsize=7, color="#1f77b4")
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3, axis="y")


def main() -> None:
    data = json.loads((HERE / "measurements.json").read_text())
    sweep_wall(data)
    point_cost(data)
    listing(data)


if __name__ == "__main__":
    main()
