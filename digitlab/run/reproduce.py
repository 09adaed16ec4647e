"""`digitlab reproduce RUN`: train a run's config.yaml again into a new folder and say whether its metrics.csv
comes out the same, apart from the seconds column. Same config and seed give the same numbers only in the same
environment, so when they differ the report names what run.json recorded differently: the commit, uncommitted
changes (git_dirty, git.diff), the versions of Python, numpy and every runtime dependency, the BLAS threads.

A run that stopped early (pruned, interrupted, crashed, failed) is trained as far as it got: a stop rule ends the
copy after the same epoch, the config (and so the lr schedule) unchanged. An extended run (`train --resume RUN
--epochs N`, see run.extend) is trained as it was: to the epochs it first had, then extended as its history says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from digitlab.config import load_config
from digitlab.errors import RunError
from digitlab.options import plural
from digitlab.run import layout
from digitlab.run.agreement import check_agreement
from digitlab.run.callbacks import StopAfter
from digitlab.run.extend import extend, extensions
from digitlab.run.folder import METRICS_COLUMNS, RunFolder
from digitlab.run.lifecycle import start

ENVIRONMENT = ("git_commit", "git_dirty", "digitlab", "python", "numpy", "blas_threads", "platform")


@dataclass
class Reproduction:
    original: Path
    copy: Path
    epochs: int
    differences: list[str] = field(default_factory=list)  # how metrics.csv differs, first difference first
    environment: list[str] = field(default_factory=list)  # 'blas_threads 1 -> 2', 'numpy 1.26.4 -> 2.0.0'

    @property
    def match(self) -> bool:
        return not self.differences

    def lines(self) -> list[str]:
        env = "; ".join(self.environment)
        if self.match:
            line = f"metrics match ({plural(self.epochs, 'epoch')}, seconds aside)"
            return [line + (f"; the environment differs ({env}) without changing them" if env else "")]
        why = f"the environment differs: {env}" if env else \
            "the environment is the same as far as run.json records it (commit, uncommitted changes, versions, " \
            "BLAS threads)"
        return [f"metrics differ: {'; '.join(self.differences)}; {why}"]


def reproduce_run(run_dir: str | Path, runs_dir: str | Path = "runs", quiet: bool = True) -> Reproduction:
    """Train RUN's config again into runs_dir/<name>-repro-<time> and compare the two metrics.csv files."""
    run = RunFolder.open(run_dir)
    info = run.info()
    if run.status() == "running":
        raise RunError(f"{run.path}: is being trained right now; reproduce it when it has ended")
    cfg = load_config(run / layout.CONFIG)
    rows = run.read_metrics()
    check_agreement(run, cfg, info, rows)  # before training: a cut config.yaml or an emptied metrics.csv is not the run
    stop = StopAfter(len(rows), f"stopped after epoch {len(rows)}, as {run.path.name} did") \
        if info["status"] != "complete" and 0 < len(rows) < cfg["epochs"] else None
    history = extensions(info)
    first = history[0]["epochs_before"] if history else cfg["epochs"]
    targets = [first] + [h["epochs_after"] for h in history]
    # each stage ends where the next went on from: an extension from the complete run, a new target from the
    # epoch the run had stopped at
    ends = [h.get("from_epoch", h["epochs_before"]) for h in history]
    stops = [StopAfter(end, f"stopped after epoch {end}, as {run.path.name} did") if end < target else None
             for end, target in zip(ends, targets)] + [stop]
    copy = start({**cfg, "name": f"{cfg['name']}-repro", "epochs": first}, runs_dir, quiet=quiet, progress=False,
                 stop=stops[0], record={"reproduces": str(run.path)})
    for epochs, stage_stop in zip(targets[1:], stops[1:]):
        copy = extend(copy.path, epochs, quiet=quiet, progress=False, stop=stage_stop)
    result = Reproduction(run.path, copy.path, len(rows))
    result.differences = metrics_differences(run / layout.METRICS, copy / layout.METRICS)
    result.environment = environment_differences(run, copy)
    return result


def metrics_differences(original: Path, copy: Path) -> list[str]:
    """How two metrics.csv files differ, seconds aside: the number of epochs, then how many rows differ and the
    first differing value."""
    def rows(path):
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        lines = [line.split(",") for line in text.splitlines() if line]
        return [dict(zip(lines[0], line)) for line in lines[1:]] if lines else []

    a, b = rows(original), rows(copy)
    compared = [c for c in METRICS_COLUMNS if c != "seconds" and all(c in r for r in a[:1] + b[:1])]
    a, b = ([[r.get(c) for c in compared] for r in rows_] for rows_ in (a, b))
    out = []
    if len(a) != len(b):
        out.append(f"{plural(len(b), 'epoch')} here, {len(a)} in the original")
    changed = [(x, y) for x, y in zip(a, b) if x != y]
    if changed:
        x, y = changed[0]
        column = next(i for i, (p, q) in enumerate(zip(x, y)) if p != q)
        out.append(f"{len(changed)} of {plural(min(len(a), len(b)), 'epoch')}, first at epoch {x[0]}: "
                   f"{compared[column]} {y[column]} here, {x[column]} in the original")
    return out


def environment_differences(original: RunFolder, copy: RunFolder) -> list[str]:
    """What run.json recorded differently for the original (when it started, and at each resume) and the copy."""
    then, now = original.info(), copy.info()
    stages = [then] + [r for r in then.get("resumes", []) if isinstance(r, dict)] + extensions(then)
    out = []
    for key in ENVIRONMENT:
        seen = list(dict.fromkeys(_show(stage.get(key)) for stage in stages if key in stage)) or ["not recorded"]
        if seen != [_show(now.get(key))]:
            out.append(f"{key} {' then '.join(seen)} -> {_show(now.get(key))}")
    before, after = then.get("versions"), now.get("versions") or {}
    if not isinstance(before, dict):
        out.append("dependency versions not recorded by the original")
    else:
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                out.append(f"{name} {before.get(name)} -> {after.get(name)}")
    source, again = then.get("init_from"), now.get("init_from")
    if isinstance(source, dict) and isinstance(again, dict) and source.get("config_hash") != again.get("config_hash"):
        out.append(f"init_from's run {source.get('run')} changed since (config {source.get('config_hash')} -> "
                   f"{again.get('config_hash')})")
    diff_changed = _read(original / layout.GIT_DIFF) != _read(copy / layout.GIT_DIFF)
    if then.get("git_dirty") and now.get("git_dirty") and diff_changed:
        out.append(f"the uncommitted changes ({layout.GIT_DIFF}) differ")
    return out


def _show(value) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
