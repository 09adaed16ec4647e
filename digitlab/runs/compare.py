"""Runs side by side: one row per run folder (a sweep folder stands for its points), the config values that
differ across them, their final metrics, and a figure with every run's accuracy per epoch overlaid.

`collect` reads folders (warning about anything that is not a run), `table` turns runs into columns and rows,
`render` prints them as a table, CSV, JSON or Markdown, `plot` draws the overlay.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from digitlab.errors import ConfigError, DamagedRun, RunError, UserError
from digitlab.run.agreement import check_agreement
from digitlab.run.folder import RunFolder
from digitlab.system.storage import save_png
from digitlab.system.tables import format_markdown, format_table

# Config columns, in order: shown only when they differ across the runs, unless all columns are asked for.
CONFIG_COLUMNS = ["digits", "arch", "params", "loss", "optimizer", "lr", "momentum", "weight_decay", "schedule",
                  "dropout", "batch_size", "epochs", "limit", "validation", "seed"]
# Metric columns, always shown: epochs done, final train and test accuracy, best validation accuracy, seconds.
METRIC_COLUMNS = ["epochs_done", "train_acc", "test_acc", "best_val", "seconds"]
ALIASES = {"train_accuracy": "train_acc", "test_accuracy": "test_acc", "best_val_accuracy": "best_val",
           "val_accuracy": "best_val", "architecture": "arch", "epochs done": "epochs_done", "time": "seconds"}
BEST_FIRST = {"train_acc", "test_acc", "best_val"}  # sorted descending; every other column ascending
FORMATS = ("table", "csv", "json", "markdown")
SWEEP_FILES = {"sweep.yaml", "points.csv", "compare.png", "report.html", "replaced", ".locks"}


@dataclass
class Run:
    """What compare knows about one run folder. `damage` names the first file that is not what digitlab writes
    and why (the run's status is then `damaged`); what could be read is still shown."""

    path: Path
    status: str
    cfg: dict | None
    summary: dict
    metrics: list[dict]
    damage: str | None = None
    values: dict = field(default_factory=dict)  # the row: column -> value
    info: dict = field(default_factory=dict)  # run.json

    @property
    def name(self) -> str:
        return self.path.name


# -- reading -------------------------------------------------------------------------------------------------------
def is_sweep_folder(path: Path) -> bool:
    return (path / "sweep.yaml").is_file()


def is_run_folder(path: Path) -> bool:
    return (path / "run.json").is_file() or (path / "config.yaml").is_file()


def find_runs(folder: Path, depth: int = 3) -> list[Path]:
    """The run folders inside `folder` (a runs folder, a sweep folder, a folder of sweeps), by name, at most
    `depth` levels down; set-aside runs (replaced/) and hidden folders are left out."""
    found = []
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    for child in children:
        if is_run_folder(child):
            found.append(child)
        elif depth > 1 and child.name != "replaced":
            found.extend(find_runs(child, depth - 1))
    return found


def collect(paths) -> tuple[list[Run], list[str]]:
    """The runs of `paths` (run folders, and any folder that holds runs, such as a sweep folder or runs/,
    expanded to them), each once, in the order given, and one warning per path that holds none."""
    runs, warnings, seen = [], [], set()
    for path in map(Path, paths):
        if path.name in SWEEP_FILES and is_sweep_folder(path.parent):
            continue  # runs/<sweep>/* lists the sweep's own files next to its runs
        if path.is_dir() and not is_run_folder(path):
            candidates = find_runs(path)
            if not candidates:
                kind = "sweep folder without runs yet" if is_sweep_folder(path) else "no run folders in it"
                warnings.append(f"{path}: {kind}, skipped")
        else:
            candidates = [path]
        for candidate in candidates:
            key = candidate.resolve()
            if key in seen:
                continue
            try:
                run = read_run(candidate)
            except UserError as exc:
                warnings.append(f"{exc}; skipped")
                continue
            seen.add(key)
            runs.append(run)
    return runs, warnings


def read_run(path: Path) -> Run:
    """One run folder, whatever its status, each file checked: a damaged file makes the run `damaged` (with the
    file and the reason) instead of stopping the comparison. RunError when `path` is not a run folder."""
    folder = RunFolder.open(path)
    damage: list[str] = []

    def read(what, default):
        try:
            return what()
        except DamagedRun as exc:
            damage.append(str(exc))
        except (ConfigError, RunError) as exc:
            damage.append(str(exc))
        return default

    status = read(folder.status, "damaged")
    info = read(folder.info, {}) if not damage else {}
    cfg = read(lambda: _read_config(folder), None)
    summary = read(lambda: folder.read_summary(cfg["name"] if cfg else None), {}) \
        if (folder / "summary.json").is_file() else {}
    metrics = read(folder.read_metrics, [])
    if cfg and not damage:
        read(lambda: check_agreement(folder, cfg, info, metrics), None)
    return Run(path, "damaged" if damage else status, cfg, summary, metrics, damage[0] if damage else None,
               info=info)


def _read_config(folder: RunFolder) -> dict:
    from digitlab.config import load_config
    return load_config(folder / "config.yaml")


# -- columns -------------------------------------------------------------------------------------------------------
def architecture(cfg: dict) -> tuple[str, int] | None:
    """(notation, parameters) of a resolved config. A dense network reads as its widths, '784-100-100-2-1'; a
    conv network starts from its image, '1x28x28-c32k3-mp2-c64k3-mp2-128-10' (c: filters and kernel, s: stride,
    mp/ap: max or average pooling). Batch norm, activations and dropout are left out."""
    from digitlab.config import layer_specs, loss_name
    from digitlab.data import open_source
    from digitlab.nn import LOSSES, AvgPool2d, Conv2d, Linear, MaxPool2d, build_layers
    from digitlab.nn.model import plan
    try:  # shapes only: nothing is allocated
        layers, in_shape, _ = build_layers(layer_specs(cfg), open_source(cfg["data"]).image_shape,
                                           LOSSES[loss_name(cfg)].fuses)
        _, params = plan(layers, in_shape)
    except Exception:  # a config whose dataset is gone, or from another digitlab version: leave the column empty
        return None
    parts = [str(math.prod(in_shape)) if len(in_shape) == 1 else "x".join(map(str, in_shape))]
    for layer in layers:
        if isinstance(layer, Linear):
            parts.append(str(layer.units))
        elif isinstance(layer, Conv2d):
            parts.append(f"c{layer.filters}k{layer.kernel}" + (f"s{layer.stride}" if layer.stride != 1 else ""))
        elif isinstance(layer, (MaxPool2d, AvgPool2d)):
            kind = "mp" if isinstance(layer, MaxPool2d) else "ap"
            parts.append(f"{kind}{layer.size}" + (f"s{layer.step}" if layer.step != layer.size else ""))
    return "-".join(parts), sum(math.prod(s) for s in params.values())


def config_values(cfg: dict | None, summary: dict) -> dict:
    if not cfg:
        return {c: None for c in CONFIG_COLUMNS}
    opt = cfg.get("optimizer") or {}
    schedule = opt.get("schedule")
    arch = architecture(cfg)
    dropouts = [item["dropout"] for item in cfg.get("model") or []
                if isinstance(item, dict) and "dropout" in item]
    dropouts = [d["p"] if isinstance(d, dict) else d for d in dropouts]
    data = cfg.get("data") or {}
    return {
        "digits": "".join(map(str, data.get("digits") or [])) if data.get("digits") else None,
        "arch": arch[0] if arch else None,
        "params": summary.get("params") or (arch[1] if arch else None),
        "loss": cfg["loss"] if isinstance(cfg.get("loss"), str) else (cfg.get("loss") or {}).get("name"),
        "optimizer": opt.get("name"),
        "lr": opt.get("lr"),
        "momentum": opt.get("momentum"),
        "weight_decay": opt.get("weight_decay"),
        "schedule": (schedule.get("name") if isinstance(schedule, dict) else schedule) or "none",
        "dropout": "/".join(_number(d) for d in dropouts) if dropouts else "none",
        "batch_size": cfg.get("batch_size"),
        "epochs": cfg.get("epochs"),
        "limit": data.get("limit"),
        "validation": data.get("validation"),
        "seed": cfg.get("seed"),
    }


def metric_values(run: Run) -> dict:
    """Final metrics from summary.json when the run finished, else from the last row of metrics.csv."""
    rows, summary = run.metrics, run.summary
    last = rows[-1] if rows else {}
    vals = [r["val_accuracy"] for r in rows if r.get("val_accuracy") is not None]
    seconds = summary.get("seconds")
    if seconds is None and rows:
        seconds = round(sum(r.get("seconds") or 0.0 for r in rows), 3)
    return {
        "epochs_done": len(rows),
        "train_acc": summary.get("train_accuracy", last.get("train_accuracy")),
        "test_acc": summary.get("test_accuracy", last.get("test_accuracy")),
        "best_val": summary.get("best_val_accuracy", max(vals) if vals else None),
        "seconds": seconds,
    }


def origin(run: Run) -> dict:
    """The run's sweep and point as its run.json records them (both null for a lone run); for a folder written
    before run.json had them, guessed from where it is: in a sweep folder, named <values>-<point id>."""
    if "sweep" in run.info or "point" in run.info:
        return {"sweep": run.info.get("sweep"), "point": run.info.get("point")}
    if not is_sweep_folder(run.path.parent):
        return {"sweep": None, "point": None}
    tail = run.name.rsplit("-", 1)[-1]
    point = tail if len(tail) == 8 and all(c in "0123456789abcdef" for c in tail) else None
    return {"sweep": run.path.parent.name, "point": point}


def describe(runs: list[Run]) -> None:
    """Fill each run's row (`values`): every column, and started, sweep, point and path."""
    for run in runs:
        run.values = {"name": run.name, "status": run.status, **config_values(run.cfg, run.summary),
                      **metric_values(run), "started": run.info.get("started"), **origin(run), "path": str(run.path)}
        if run.damage:
            run.values["damage"] = run.damage


def table(runs: list[Run], all_columns: bool = False, group_seeds: bool = False,
          sort: str | None = None) -> tuple[list[str], list[dict]]:
    """(columns, rows) for `runs`: name, status, the config columns that differ (all with `all_columns`, or
    when there is one run), the metrics. With `group_seeds`, runs whose configs differ only by their seed become
    one row with the mean and standard deviation of each metric (`<metric>_std`)."""
    describe(runs)
    shown = differing(runs) if not all_columns and len(runs) > 1 else list(CONFIG_COLUMNS)
    if group_seeds:
        rows = _group_seeds(runs)
        if "seed" not in shown and any(r["runs"] > 1 for r in rows):
            shown.append("seed")
        columns = ["name", "status", "runs"] + shown + [c for m in METRIC_COLUMNS for c in (m, f"{m}_std")]
    else:
        rows = [dict(run.values) for run in runs]
        columns = ["name", "status"] + shown + METRIC_COLUMNS
    if sort:
        key = sort_key(sort, columns)
        present = [r for r in rows if r.get(key) is not None]
        missing = [r for r in rows if r.get(key) is None]
        present.sort(key=lambda r: _sortable(r[key]), reverse=key in BEST_FIRST)
        rows = present + missing
    return columns, rows


def differing(runs: list[Run]) -> list[str]:
    """The config columns whose values are not all the same across `runs`."""
    return [c for c in CONFIG_COLUMNS if len({json.dumps(r.values.get(c), sort_keys=True) for r in runs}) > 1]


def sort_key(sort: str, columns: list[str]) -> str:
    key = ALIASES.get(sort, sort)
    if key not in columns and key not in CONFIG_COLUMNS + METRIC_COLUMNS + ["name", "status"]:
        known = ", ".join(["name", "status"] + CONFIG_COLUMNS + METRIC_COLUMNS)
        raise UserError(f"--sort {sort}: unknown column; expected one of {known}")
    return key


def _sortable(value):
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _group_seeds(runs: list[Run]) -> list[dict]:
    groups: dict[str, list[Run]] = {}
    for run in runs:
        cfg = run.cfg or {"path": str(run.path)}
        key = json.dumps({k: v for k, v in cfg.items() if k not in ("name", "seed")}, sort_keys=True, default=str)
        groups.setdefault(key, []).append(run)
    rows = []
    for members in groups.values():
        first = dict(members[0].values)
        statuses = [m.status for m in members]
        first["status"] = statuses[0] if len(set(statuses)) == 1 else ", ".join(
            f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
        first["runs"] = len(members)
        first["seed"] = ",".join(str(m.values.get("seed")) for m in members)
        if len(members) > 1:
            first["name"] = f"{members[0].name} (+{len(members) - 1})"
        for metric in METRIC_COLUMNS:
            values = [m.values[metric] for m in members if m.values.get(metric) is not None]
            first[metric] = statistics.fmean(values) if values else None
            first[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
        first["paths"] = [str(m.path) for m in members]
        for key in ("path", "started", "point"):
            first.pop(key, None)
        rows.append(first)
    return rows


# -- output --------------------------------------------------------------------------------------------------------
def render(columns: list[str], rows: list[dict], fmt: str = "table") -> str:
    """The rows as an aligned text table, CSV, JSON (every field, unrounded) or a Markdown table."""
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else _csv_cell(row.get(c)) for c in columns])
        return buffer.getvalue().rstrip("\n")
    headers = _headers(columns, rows)  # grouped rows show 'mean ± std' in one cell: no _std columns
    cells = [[_display(c, row) for c in headers] for row in rows]
    if fmt == "markdown":
        return format_markdown(headers, cells)
    return format_table(headers, cells)


def _headers(columns: list[str], rows: list[dict]) -> list[str]:
    grouped = any("runs" in r for r in rows)
    return [c for c in columns if not (grouped and c.endswith("_std"))] if grouped else list(columns)


def _display(column: str, row: dict) -> str:
    value = row.get(column)
    std = row.get(f"{column}_std")
    text = _format(column, value)
    if std is not None and row.get("runs", 1) > 1 and value is not None:
        text += f" ± {_format(column, std)}"
    return text


def _format(column: str, value) -> str:
    if value is None:
        return "-"
    if column in ("train_acc", "test_acc", "best_val"):
        return f"{value:.4f}"
    if column == "seconds":
        return f"{value:.1f}"
    if column == "epochs_done" and isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, float):
        return _number(value)
    return str(value)


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _csv_cell(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value


# -- the figure ----------------------------------------------------------------------------------------------------
def legend_labels(runs: list[Run]) -> list[str]:
    """Each run's label: the config values that differ across the runs ('lr=0.001 dropout=0.1'), else its name."""
    keys = differing(runs) if len(runs) > 1 else []
    keys = [k for k in keys if k != "params" or keys == ["params"]]
    labels = [" ".join(f"{k}={_format(k, r.values.get(k))}" for k in keys) or r.name for r in runs]
    if len(set(labels)) < len(labels):  # same config twice (different folders): tell them apart by name
        labels = [f"{label} ({r.name})" if labels.count(label) > 1 else label for label, r in zip(labels, runs)]
    return labels


def plot(runs: list[Run], path: str | Path, title: str = "") -> Path | None:
    """The overlay figure (see `overlay`) written atomically to `path`; None when no run has a finished epoch
    yet."""
    fig = overlay(runs, title)
    return save_png(path, fig) if fig is not None else None


def overlay(runs: list[Run], title: str = ""):
    """Test accuracy per epoch of every run (solid) and its train accuracy (dashed, same colour), one colour per
    run, the legend naming each run by its differing config values; None when no run has a finished epoch."""
    drawn = [r for r in runs if r.metrics]
    if not drawn:
        return None
    if not all(r.values for r in drawn):
        table(drawn)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = legend_labels(drawn)
    colours = plt.get_cmap("tab10" if len(drawn) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (run, label) in enumerate(zip(drawn, labels)):
        colour = colours(i % colours.N)
        epochs = [r["epoch"] for r in run.metrics]
        test = [_nan(r.get("test_accuracy")) for r in run.metrics]
        train = [_nan(r.get("train_accuracy")) for r in run.metrics]
        ax.plot(epochs, test, color=colour, ls="-", marker="o", ms=3, label=label)
        ax.plot(epochs, train, color=colour, ls="--", alpha=0.8)
    ax.set(xlabel="epoch", ylabel="accuracy", title=title or "test accuracy (solid) and train accuracy (dashed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if max(len(r.metrics) for r in drawn) < 10:
        ax.set_xticks(sorted({r["epoch"] for run in drawn for r in run.metrics}))
    fig.tight_layout()
    return fig


def _nan(value):
    return float("nan") if value is None else value


def default_plot_path(paths) -> Path | None:
    """compare.png inside the sweep folder when the one folder compared is a sweep folder."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and paths[0].is_dir() and is_sweep_folder(paths[0]):
        return paths[0] / "compare.png"
    return None
