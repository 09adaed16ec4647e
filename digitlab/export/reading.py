"""The runs an export reads: the folders given (a sweep folder or runs/ stands for its runs), each read and checked
as `digitlab compare` reads it, and one line for each run that cannot be exported (damaged, still running,
unfinished or without a model when a model is asked for) while the rest are. Also what every format shares: a
run's label (its sweep and point), its flattened config, and where a model file goes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate
from pathlib import Path

from digitlab.errors import RunError, UserError
from digitlab.options import plural
from digitlab.run import layout
from digitlab.run.folder import RunFolder
from digitlab.run.view import RunView
from digitlab.runs.collect import Run, collect, is_sweep_folder


@dataclass
class Exportable:
    """A run that can be exported: what many-run views know of it (`run`: status, config, summary, metrics,
    run.json) and its RunView (the model, the data, the test scores, each read when first asked for)."""

    run: Run
    view: RunView

    @property
    def label(self) -> str:
        """`<sweep>/<point folder>` for a point of a sweep, the run folder's name otherwise."""
        path = self.run.path
        return f"{path.parent.name}/{path.name}" if is_sweep_folder(path.parent) else path.name

    @property
    def identity(self) -> str:
        """What identifies the run wherever it is exported from: its folder's absolute path."""
        return str(self.run.path.resolve())

    @property
    def metrics(self) -> list[dict]:
        return self.run.metrics

    @property
    def elapsed(self) -> list[float]:
        """Each epoch's end in seconds from the run's start: the seconds of the epochs up to it."""
        return list(accumulate(row.get("seconds") or 0.0 for row in self.metrics))


def timestamp(text) -> float | None:
    """Seconds since the epoch of a time run.json records (ISO 8601, Z for UTC); None when there is none."""
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def gather(paths, need_model: bool) -> tuple[list[Exportable], list[str]]:
    """The runs of `paths` that can be exported and one line for each that cannot. With `need_model` a run must be
    complete and its model.npz must load (checked against its config, as `digitlab evaluate` checks it)."""
    runs, problems = collect(paths)
    problems = [w if w.endswith("skipped") else f"{w}; skipped" for w in problems]
    items = []
    for run in runs:
        if run.damage:
            problems.append(f"{run.damage}; skipped")
            continue
        if run.status == layout.Status.RUNNING:
            problems.append(f"{run.path}: still running; export it when it ends")
            continue
        if not run.metrics:
            problems.append(f"{run.path}: no finished epoch in {layout.METRICS}; skipped")
            continue
        view = RunView(RunFolder(run.path), cfg=run.cfg, info=run.info, rows=run.metrics)
        if need_model:
            if run.status != layout.Status.COMPLETE:
                problems.append(f"{run.path}: unfinished ({run.status}), so it has no final model; skipped")
                continue
            if not (run.path / layout.MODEL).is_file():
                problems.append(f"{run.path}: no {layout.MODEL} (the trained weights); skipped")
                continue
            try:
                view.model  # noqa: B018 - reads and checks model.npz against config.yaml
            except RunError as exc:
                problems.append(f"{exc}; skipped")
                continue
        items.append(Exportable(run, view))
    return items, problems


def flat_config(cfg: dict, prefix: str = "") -> dict[str, str | int | float | bool]:
    """The config as dotted keys with plain values (data.digits, optimizer.lr...); lists (the digits, the model's
    layers) and empty values as their JSON text."""
    out: dict = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_config(value, name + "."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value, separators=(",", ":"))
    return out


def destination(out: str | None, item: Exportable, suffix: str, default: str, count: int) -> Path:
    """Where a model file goes: `default` inside the run folder without --out; --out itself when one run is
    exported and it ends in `suffix`; else inside the folder --out, named after the run's label."""
    if out is None:
        return item.run.path / default
    target = Path(out)
    if target.suffix == suffix:
        if count == 1:
            return target
        raise UserError(f"{out}: --out names one {suffix} file, but {plural(count, 'run')} are exported; give a folder")
    return target / (item.label.replace("/", "-") + suffix)


def unique_destinations(paths: list[Path], what: str = "file") -> None:
    """Two runs would be written to one file (or folder, `what`): say so before writing anything."""
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:
            raise UserError(f"{path}: two runs would be exported to this {what}; export them to separate --out "
                            f"folders")
        seen.add(path.resolve())
