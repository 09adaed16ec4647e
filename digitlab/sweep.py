"""Sweeps: a base config and what varies (a grid, random samples, seeds), each point a normal run folder under
`<runs dir>/<sweep name>/`, run unattended, here or on a Dask cluster.

A point is identified by a hash of its resolved config, so running a sweep again finds what is done: complete
points are skipped, crashed and interrupted ones run again (their old folder is moved to `replaced/`), failed
and diverged ones only with `retry_failed`. The process that trains a point holds its lock (`digitlab.locks`),
so two sweeps at once never train the same point. The sweep folder keeps `sweep.yaml`, `points.csv` and
`compare.png`, all rewritten atomically from what is on disk whenever a sweep invocation ends.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import io
import itertools
import json
import math
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from digitlab import checkpoint
from digitlab.config import apply_override, dump, load_config, read_yaml, safe_name, validate
from digitlab.errors import CheckpointError, ConfigError, RunError, UserError
from digitlab.locks import LOCKS, PointLock, held_elsewhere, lock_path, waiting_lock
from digitlab.runs import RunFolder, atomic_write, command_line, utc_now
from digitlab.threads import cpus, limits

SWEEP_KEYS = ["name", "base", "set", "grid", "random", "seeds", "select"]
# What `select` may name (keys of summary.json) and whether higher is better.
SELECT = {"val_accuracy": True, "best_val_accuracy": True, "test_accuracy": True, "train_accuracy": True,
          "val_loss": False, "test_loss": False, "train_loss": False}
DISTRIBUTIONS = {"uniform": "[low, high]", "loguniform": "[low, high]", "randint": "[low, high]",
                 "choice": "[a, b, ...]"}
FAILED = ("failed", "diverged")      # rerun only with retry_failed
RERUN = ("crashed", "interrupted")   # rerun always
REPLACED = "replaced"
MAX_POINTS = 10_000


# -- the sweep file ----------------------------------------------------------------------------------------------
@dataclass
class Point:
    """One config of the sweep. `values` are the keys the sweep varies (grid, random, seed) and their values."""

    id: str
    values: dict
    cfg: dict
    folder: str

    @property
    def label(self) -> str:
        return " ".join(f"{_short(k, self.values)}={_text(v)}" for k, v in self.values.items()) or self.id


@dataclass
class Sweep:
    name: str
    source: Path
    base: Path
    select: str
    spec: dict
    points: list[Point]
    duplicates: int = 0

    @property
    def maximize(self) -> bool:
        return SELECT[self.select]

    def folder(self, runs_dir: str | os.PathLike) -> Path:
        return Path(runs_dir) / self.name


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Read and check a sweep file and resolve every point's config, so that a mistake in any point is one
    line before anything trains."""
    path = Path(path)
    spec = read_yaml(path)
    source = str(path)

    def fail(key, message):
        raise ConfigError(source, key, message)

    if not isinstance(spec, dict):
        fail("", "expected a mapping with keys base, grid, random, seeds, select")
    for key in spec:
        if key not in SWEEP_KEYS:
            fail(str(key), f"unknown key; expected one of: {', '.join(SWEEP_KEYS)}")
    if not spec.get("base") or not isinstance(spec["base"], str):
        fail("base", "expected the path of the base config, relative to the sweep file")
    base = (path.parent / spec["base"]) if not Path(spec["base"]).is_absolute() else Path(spec["base"])
    load_config(base)  # the base alone must be valid: its errors name the base file
    name = spec.get("name", path.stem)
    if not isinstance(name, (str, int)) or not str(name).strip():
        fail("name", f"expected a non-empty string, got {name!r}")
    fixed = _mapping(spec.get("set"), "set", fail)
    grid = _mapping(spec.get("grid"), "grid", fail)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            fail(f"grid.{key}", f"expected a non-empty list of values, got {values!r}")
    samples = _random_samples(spec.get("random"), fail)
    seeds = spec.get("seeds")
    if seeds is not None:
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                               and 0 <= s < 2**32 for s in seeds):
            fail("seeds", f"expected a list of whole numbers >= 0, e.g. [0, 1, 2], got {seeds!r}")
    select = spec.get("select", "val_accuracy")
    if select not in SELECT:
        fail("select", f"expected one of {', '.join(SELECT)}, got {select!r}")

    size = math.prod(len(v) for v in grid.values()) * max(1, len(samples)) * len(seeds or [0])
    if size > MAX_POINTS:
        fail("grid", f"{size} points; a sweep has at most {MAX_POINTS}")
    base_raw = read_yaml(base)
    points, seen, duplicates = [], set(), 0
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    for g, r, s in itertools.product(combos or [{}], samples or [{}], [{"seed": x} for x in seeds or []] or [{}]):
        values = {**g, **r, **s}
        cfg = _resolve(base_raw, base, fixed, values, source)
        point_id = config_hash(cfg)
        if point_id in seen:
            duplicates += 1
            continue
        seen.add(point_id)
        folder = point_folder(values, point_id)
        cfg["name"] = folder
        points.append(Point(point_id, values, cfg, folder))
    if select.startswith(("val_", "best_val")) and not points[0].cfg["data"]["validation"]:
        fail("select", f"{select} needs a validation split: set data.validation in the base config or in `set`")
    return Sweep(safe_name(str(name)), path, base, select, spec, points, duplicates)


def _mapping(value, key, fail) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(key, f"expected a mapping of config keys to values, e.g. {{optimizer.lr: 0.01}}, got {value!r}")
    return value


def _random_samples(spec, fail) -> list[dict]:
    """`random: {n: 8, seed: 0, params: {optimizer.lr: {loguniform: [1e-4, 1e-2]}}}`: n draws, the same on
    every invocation (they come from `seed`), rounded to 4 significant digits so that they read well."""
    if spec is None:
        return []
    if not isinstance(spec, dict) or set(spec) - {"n", "seed", "params"}:
        fail("random", "expected a mapping with n, params and optionally seed")
    n, seed, params = spec.get("n"), spec.get("seed", 0), spec.get("params")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_POINTS:
        fail("random.n", f"expected a whole number from 1 to {MAX_POINTS}, got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        fail("random.seed", f"expected a whole number, got {seed!r}")
    if not isinstance(params, dict) or not params:
        fail("random.params", "expected a mapping of config keys to distributions, e.g. "
                              "{optimizer.lr: {loguniform: [1e-4, 1e-2]}}")
    draws = {}
    for key, dist in params.items():
        where = f"random.params.{key}"
        kind, arg = next(iter(dist.items())) if isinstance(dist, dict) and len(dist) == 1 else (None, None)
        if kind not in DISTRIBUTIONS:
            fail(where, f"expected one of {', '.join(f'{{{k}: {v}}}' for k, v in DISTRIBUTIONS.items())}")
        if not isinstance(arg, list) or not arg:
            fail(f"{where}.{kind}", f"expected {DISTRIBUTIONS[kind]}, got {arg!r}")
        if kind != "choice":
            arg = [_as_number(a) for a in arg]
            if len(arg) != 2 or None in arg or arg[0] > arg[1] or (kind == "loguniform" and arg[0] <= 0) or \
                    (kind == "randint" and not all(float(a).is_integer() for a in arg)):
                fail(f"{where}.{kind}", f"expected {DISTRIBUTIONS[kind]} with low <= high"
                                        f"{' > 0' if kind == 'loguniform' else ''}, got {dist[kind]!r}")
        draws[key] = (kind, arg)
    rng = random.Random(seed)
    samples = []
    for _ in range(n):
        sample = {}
        for key, (kind, arg) in draws.items():
            if kind == "uniform":
                value = _round(rng.uniform(arg[0], arg[1]))
            elif kind == "loguniform":
                value = _round(math.exp(rng.uniform(math.log(arg[0]), math.log(arg[1]))))
            elif kind == "randint":
                value = rng.randint(int(arg[0]), int(arg[1]))
            else:
                value = rng.choice(arg)
            sample[key] = value
        samples.append(sample)
    return samples


def _as_number(value):
    if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            return None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def _resolve(base_raw: dict, base: Path, fixed: dict, values: dict, source: str) -> dict:
    """The validated config of one point: the base, then `set`, then the point's values, as --set overrides."""
    raw = copy.deepcopy(base_raw)
    where = " ".join(f"{k}={_text(v)}" for k, v in values.items())
    for section, assignments in (("set", fixed), ("point", values)):
        for keys, value in assignments.items():
            for key in str(keys).split(","):  # "model.2.dropout,model.5.dropout": one value for both
                try:
                    apply_override(raw, f"{key.strip()}={json.dumps(value)}")
                except ConfigError as exc:
                    raise ConfigError(source, f"{section}.{exc.key or key}", exc.message) from None
    try:
        return validate(raw, str(base))
    except ConfigError as exc:
        raise ConfigError(source, exc.key, f"{exc.message} (in the point {where or 'base + set'})") from None


def config_hash(cfg: dict) -> str:
    """8 hex digits of the SHA-256 of the resolved config without its name: everything that changes results."""
    text = json.dumps({k: v for k, v in cfg.items() if k != "name"}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def point_folder(values: dict, point_id: str) -> str:
    """A readable folder name ending in the point's id: 'dropout=0.1-lr=0.001-seed=0-1a2b3c4d'."""
    prefix = "-".join(f"{_short(k, values)}={_text(v)}" for k, v in values.items())
    prefix = safe_name(prefix)[:60].strip(".-") if prefix else ""
    return f"{prefix}-{point_id}" if prefix and prefix != "run" else point_id


def _short(key: str, values: dict) -> str:
    """The last word of a dotted key (model.2.dropout -> dropout) unless another varied key ends the same."""
    def word(k):
        return [p for p in str(k).split(",")[0].split(".") if not p.isdigit()][-1]

    clash = [k for k in values if k != key and word(k) == word(key)]
    return str(key) if clash else word(key)


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, (list, dict)) \
        else str(value)


# -- the state of a point, from the disk ---------------------------------------------------------------------------
def find_folder(sweep_dir: Path, point: Point) -> Path | None:
    """The point's run folder: its own name, or any folder ending in its id (named by an older sweep file)."""
    own = sweep_dir / point.folder
    if own.is_dir():
        return own
    if sweep_dir.is_dir():
        for child in sorted(sweep_dir.iterdir()):
            if child.is_dir() and (child.name == point.id or child.name.endswith("-" + point.id)):
                return child
    return None


def folder_status(folder: Path, locked_here: bool = False) -> str:
    """A point folder's status. `running` with nobody holding the point's lock is `crashed` (the kernel drops a
    lock when its holder dies); a folder without a readable run.json is `crashed` too."""
    try:
        status = RunFolder(folder).status()
    except RunError:
        return "crashed"
    if status == "running" and (locked_here or held_elsewhere(lock_path(folder.parent, folder.name.rsplit(
            "-", 1)[-1])) is None):
        return "crashed"
    return status


def point_state(sweep_dir: Path, point: Point) -> tuple[str, Path | None, str | None]:
    """(state, folder, holder): state is `pending` (never run), `running` (its lock is held: `holder` says by
    whom), or the folder's status (complete, failed, diverged, interrupted, crashed)."""
    holder = held_elsewhere(lock_path(sweep_dir, point.id))
    folder = find_folder(sweep_dir, point)
    if holder:
        return "running", folder, holder
    if folder is None:
        return "pending", None, None
    return folder_status(folder), folder, None


def should_run(state: str, retry_failed: bool) -> bool:
    return state == "pending" or state in RERUN or (retry_failed and state in FAILED)


def read_result(folder: Path | None, select: str) -> tuple[float | None, int | None]:
    """(metric named by select, params) from a run folder's summary.json, when it has one."""
    if folder is None or not (folder / "summary.json").is_file():
        return None, None
    try:
        summary = RunFolder(folder).read_json("summary.json")
    except RunError:
        return None, None
    return summary.get(select), summary.get("params")


# -- running one point -----------------------------------------------------------------------------------------------
def set_aside(sweep_dir: Path, folder: Path, state: str) -> Path:
    """Move a crashed, interrupted or failed point's folder to replaced/<folder>.<state>-<n>: kept for a post
    mortem, out of the way of the rerun, never overwritten."""
    attic = sweep_dir / REPLACED
    attic.mkdir(exist_ok=True)
    for n in itertools.count(1):
        target = attic / f"{folder.name}.{state}-{n}"
        if not target.exists():
            os.rename(folder, target)
            return target
    raise AssertionError("unreachable")


def claim(sweep_dir: Path, point: Point, retry_failed: bool) -> tuple[PointLock | None, dict]:
    """Take the point's lock and check, under it, that the point still needs running. (lock, outcome) when
    the caller should run it (outcome["folder"] is its old folder, if any); (None, outcome) when not."""
    lock = PointLock(lock_path(sweep_dir, point.id))
    if not lock.acquire():
        return None, {"id": point.id, "state": "running", "note": f"running elsewhere ({lock.holder or 'locked'})"}
    try:
        folder = find_folder(sweep_dir, point)
        state = "pending" if folder is None else folder_status(folder, locked_here=True)
    except BaseException:
        lock.release()
        raise
    if not should_run(state, retry_failed):
        lock.release()
        note = "already complete" if state == "complete" else f"{state} earlier; --retry-failed runs it again"
        return None, {"id": point.id, "state": state, "note": note}
    return lock, {"id": point.id, "state": state, "folder": folder}


def resumable(folder: Path | None, state: str) -> bool:
    """A crashed or interrupted point with a checkpoint continues from it instead of starting over."""
    return folder is not None and state in RERUN and (folder / checkpoint.NAME).is_file()


def record_failure(run_dir: Path, cfg: dict, error: str) -> None:
    """A failed run folder for a point that failed before training made one (bad data path, ...), so the sweep
    remembers it failed instead of taking it for never run."""
    folder = RunFolder(run_dir) if run_dir.is_dir() else RunFolder.create_at(run_dir)
    if not (folder / "config.yaml").exists():
        folder.write("config.yaml", dump(cfg))
    folder.update_status(status="failed", ended=utc_now(), error=error, command=command_line())


def run_point(sweep_dir: str, point: Point, retry_failed: bool) -> dict:
    """Claim, train and release one point in this process: an outcome dict (id, state, note, error)."""
    sweep_dir = Path(sweep_dir)
    lock, outcome = claim(sweep_dir, point, retry_failed)
    if lock is None:
        return outcome
    try:
        from digitlab.experiment import resume, train
        folder, state = outcome.pop("folder"), outcome["state"]
        run_dir, error = sweep_dir / point.folder, None
        if resumable(folder, state):
            try:
                resume(folder, quiet=True, progress=False)
                return {**outcome, "state": folder_status(folder), "note": "trained", "resumed": True}
            except CheckpointError as exc:  # a missing or damaged checkpoint, a changed config: start over
                error = f"could not resume ({exc}); trained from scratch"
            except UserError as exc:  # a failed write, the run live elsewhere: keep the folder as it is
                return {**outcome, "state": folder_status(folder), "note": "not resumed", "error": str(exc)}
            except Exception as exc:  # the resumed training itself failed: recorded in its run.json
                return {**outcome, "state": folder_status(folder), "note": "trained", "resumed": True,
                        "error": f"{type(exc).__name__}: {exc}"}
        if folder is not None:
            outcome["moved"] = str(set_aside(sweep_dir, folder, state))
        try:
            train(point.cfg, run_dir=run_dir, quiet=True, progress=False)
        except Exception as exc:  # the point failed; the sweep goes on
            error = f"{type(exc).__name__}: {exc}"
            if not (run_dir / "run.json").is_file():
                record_failure(run_dir, point.cfg, error)
        return {**outcome, "state": folder_status(run_dir), "note": "trained", "error": error}
    finally:
        lock.release()


def train_remote(cfg: dict) -> dict:
    """On a Dask worker: train `cfg` in a temporary folder and return the run folder's files as bytes (relative
    path -> bytes), so that the client writes the run folder and workers need no shared disk."""
    from digitlab.experiment import train
    with tempfile.TemporaryDirectory(prefix="digitlab-") as tmp:
        run_dir = Path(tmp) / "run"
        error = None
        try:
            train(cfg, run_dir=run_dir, quiet=True, progress=False)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        files = {}
        if run_dir.is_dir():
            for path in sorted(run_dir.rglob("*")):
                if path.is_file() and not path.name.startswith("."):
                    files[str(path.relative_to(run_dir))] = path.read_bytes()
        return {"files": files, "error": error}


def write_remote_run(sweep_dir: Path, point: Point, result: dict) -> Path:
    """Write the files a worker sent into a hidden folder, each atomically, then rename the folder into place:
    the run folder appears whole or not at all."""
    final = sweep_dir / point.folder
    incoming = sweep_dir / f".incoming-{point.id}-{os.getpid()}-{time.time_ns()}"
    incoming.mkdir()
    try:
        for name, data in result["files"].items():
            target = incoming / name
            if ".." in Path(name).parts or Path(name).is_absolute():
                raise RunError(f"{point.id}: a worker sent a file outside its run folder: {name!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, data)
        if not (incoming / "run.json").is_file():
            record_failure(incoming, point.cfg, result.get("error") or "the worker sent no run.json")
        os.rename(incoming, final)
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    return final


# -- running a sweep -------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    point: Point
    state: str
    folder: Path | None
    metric: float | None = None
    params: int | None = None
    note: str = ""


@dataclass
class SweepResult:
    sweep: Sweep
    folder: Path
    outcomes: list[Outcome] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    best: Outcome | None = None
    dry_run: bool = False
    interrupted: int | None = None  # the signal that stopped the sweep
    lost: list[str] = field(default_factory=list)  # points a Dask worker did not bring back

    @property
    def failed(self) -> list[Outcome]:
        """Points that did not complete: failed, diverged, crashed, interrupted, or lost on the cluster."""
        return [o for o in self.outcomes if o.state in FAILED + RERUN or o.point.id in self.lost]

    @property
    def elsewhere(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state in ("running", "pending")]


def best_of(outcomes: list[Outcome], maximize: bool) -> Outcome | None:
    """The complete point with the best metric; ties go to fewer parameters, then to the point id."""
    scored = [o for o in outcomes if o.state == "complete" and o.metric is not None]
    if not scored:
        return None
    sign = -1 if maximize else 1
    return min(scored, key=lambda o: (sign * o.metric, o.params if o.params is not None else math.inf, o.point.id))


def run_sweep(sweep: Sweep, runs_dir: str | os.PathLike = "runs", workers: int | None = None,
              executor: str = "local", address: str | None = None, retry_failed: bool = False,
              dry_run: bool = False, echo: Callable[[str], None] = print) -> SweepResult:
    """Run the points of `sweep` that need running, then write points.csv and compare.png and return what
    became of every point."""
    sweep_dir = sweep.folder(runs_dir)
    if (sweep_dir / "run.json").exists():
        raise RunError(f"{sweep_dir}: is a run folder, not a sweep's; give the sweep another name")
    result = SweepResult(sweep, sweep_dir, dry_run=dry_run)
    if executor == "dask" and not dry_run:
        _import_dask()
    states = {p.id: point_state(sweep_dir, p) for p in sweep.points}
    to_run = [p for p in sweep.points if should_run(states[p.id][0], retry_failed)]
    counts = _count(state for state, _, _ in states.values())
    extra = f" ({sweep.duplicates} duplicate configs merged)" if sweep.duplicates else ""
    echo(f"sweep {sweep.name}: {len(sweep.points)} points{extra} -> {sweep_dir}")
    echo(f"  {counts}; {len(to_run)} to run" + ("" if retry_failed or not any(
        s in FAILED for s, _, _ in states.values()) else " (--retry-failed also reruns failed and diverged points)"))
    if dry_run:
        for p in sweep.points:
            state, folder, holder = states[p.id]
            mark = "to run" if p in to_run else "done" if state == "complete" else \
                f"running elsewhere ({holder})" if state == "running" else f"{state}, skipped"
            if p in to_run and state != "pending":
                mark = f"to run again ({state})"
            echo(f"  {p.id}  {mark:<24} {p.label}")
        result.outcomes = _final_outcomes(sweep, sweep_dir, states=states)
        return result

    sweep_dir.mkdir(parents=True, exist_ok=True)
    _write_sweep_file(sweep, sweep_dir)
    try:
        if not to_run:
            echo("nothing to run: " + ("every point is complete" if counts == f"{len(sweep.points)} complete"
                                       else "no point needs running"))
        else:
            elsewhere = [p for p in sweep.points if states[p.id][0] == "running"]
            progress = _Progress(sweep, sweep_dir, states, len(to_run) + len(elsewhere), echo)
            for point in elsewhere:
                progress.report(point, {"state": "running", "note": f"running elsewhere ({states[point.id][2]})"})
            if executor == "dask":
                _run_dask(sweep, sweep_dir, to_run, retry_failed, address, workers, progress)
            elif (workers or 1) > 1 and len(to_run) > 1:
                _run_pool(sweep, sweep_dir, to_run, retry_failed, min(workers, len(to_run)), progress)
            else:
                for point in to_run:
                    outcome = run_point(str(sweep_dir), point, retry_failed)
                    progress.report(point, outcome)
                    if outcome.get("note") == "trained" and outcome["state"] == "interrupted":  # Ctrl-C, SIGTERM
                        result.interrupted = _signal_of(find_folder(sweep_dir, point))
                        echo("interrupted: the sweep stops here; run it again to continue where it stopped")
                        break
            result.trained, result.lost = progress.trained, progress.lost
    except BaseException:  # Ctrl-C, a lost Dask scheduler...: points.csv still tells what is on disk
        with contextlib.suppress(Exception):
            _write_sweep_files(sweep, sweep_dir, result)
        raise
    _write_sweep_files(sweep, sweep_dir, result)
    return result


def _write_sweep_files(sweep: Sweep, sweep_dir: Path, result: SweepResult) -> None:
    """points.csv and compare.png from the points' states now, under a lock: a concurrent sweep that writes
    after this one has also looked after it."""
    with waiting_lock(sweep_dir / LOCKS / "sweep-files.lock"):
        result.outcomes = _final_outcomes(sweep, sweep_dir)
        result.best = best_of(result.outcomes, sweep.maximize)
        write_points_csv(sweep, sweep_dir, result.outcomes)
        _write_compare_png(sweep, sweep_dir, result.outcomes)


def _signal_of(folder: Path | None) -> int:
    try:
        return int(RunFolder(folder).read_json("run.json").get("signal") or 2)
    except (RunError, TypeError, ValueError):
        return 2


def _count(states) -> str:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    order = ["complete", "pending", "running", "crashed", "interrupted", "failed", "diverged"]
    names = {"pending": "not run yet", "running": "running elsewhere"}
    return ", ".join(f"{counts[s]} {names.get(s, s)}" for s in sorted(counts, key=lambda s: (
        order.index(s) if s in order else len(order), s)))


class _Progress:
    """Prints one line per point as it ends: points done / total, the point's result, the best so far."""

    def __init__(self, sweep: Sweep, sweep_dir: Path, states: dict, pending: int, echo):
        self.sweep, self.sweep_dir, self.echo = sweep, sweep_dir, echo
        self.total = len(sweep.points)
        self.done = self.total - pending
        self.trained: list[str] = []
        self.lost: list[str] = []  # points whose Dask task was lost (worker died): no folder, not run
        self.known = [Outcome(p, s, f, *read_result(f, sweep.select)) for p in sweep.points
                      for s, f, _ in [states[p.id]] if s == "complete"]

    def report(self, point: Point, outcome: dict) -> None:
        self.done += 1
        folder = find_folder(self.sweep_dir, point)
        state = outcome["state"]
        metric, params = read_result(folder, self.sweep.select) if state == "complete" else (None, None)
        if outcome.get("note") == "trained":
            self.trained.append(point.id)
            if state == "complete":
                self.known.append(Outcome(point, state, folder, metric, params))
        best = best_of(self.known, self.sweep.maximize)
        shown = f"{self.sweep.select} {metric:.4f}" if metric is not None else ""
        what = state if outcome.get("note") == "trained" else f"skipped: {outcome.get('note')}"
        if outcome.get("resumed"):
            what += " (resumed from its checkpoint)"
        line = f"[{self.done}/{self.total}] {point.id} {point.label}: {what} {shown}".rstrip()
        if outcome.get("moved"):
            line += f" (old folder moved to {Path(outcome['moved']).relative_to(self.sweep_dir)})"
        if outcome.get("error"):
            line += f" ({outcome['error']})"
        if best is not None:
            line += f"  | best so far {best.metric:.4f} ({best.point.id})"
        self.echo(line)


def _final_outcomes(sweep: Sweep, sweep_dir: Path, states: dict | None = None) -> list[Outcome]:
    outcomes = []
    for point in sweep.points:
        state, folder, holder = states[point.id] if states else point_state(sweep_dir, point)
        metric, params = read_result(folder, sweep.select)
        outcomes.append(Outcome(point, state, folder, metric, params, f"held by {holder}" if holder else ""))
    return outcomes


def _run_pool(sweep: Sweep, sweep_dir: Path, to_run: list[Point], retry_failed: bool, workers: int,
              progress: _Progress) -> None:
    """Points in `workers` processes started with 'spawn', each with its BLAS threads limited to
    cores // workers: the variables are set before the worker starts, so before it loads numpy."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    limited = limits(cpus() // workers)
    saved = {name: os.environ.get(name) for name in limited}
    os.environ.update(limited)
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_watch_parent) as pool:
            futures = {pool.submit(_pool_run_point, str(sweep_dir), point, retry_failed): point for point in to_run}
            try:
                pending = set(futures)
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        point = futures[future]
                        try:
                            outcome = future.result()
                        except Exception as exc:  # the worker process died (killed, out of memory)
                            outcome = {"id": point.id, "state": folder_status(sweep_dir / point.folder)
                                       if (sweep_dir / point.folder).is_dir() else "crashed", "note": "trained",
                                       "error": f"worker died: {type(exc).__name__}: {exc}"}
                        progress.report(point, outcome)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _import_dask():
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UserError("--executor dask needs Dask: pip install 'digitlab[dask]' "
                        "(or pip install 'dask[distributed]')") from None
    return Client, LocalCluster


_orphaned = threading.Event()


def _watch_parent() -> None:
    """In a pool worker: when the sweep process dies (SIGKILL, a crash), stop too instead of lingering. SIGTERM
    to itself ends the training loop after its batch (the point becomes `interrupted`, its checkpoint intact, and
    the next sweep continues it); a worker still there 30 s later exits anyway."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.25)
        _orphaned.set()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        os._exit(1)

    threading.Thread(target=watch, name="digitlab-parent-watch", daemon=True).start()


def _pool_run_point(sweep_dir: str, point: Point, retry_failed: bool) -> dict:
    if _orphaned.is_set():  # a point queued before the sweep died: leave it to the next sweep
        os._exit(1)
    outcome = run_point(sweep_dir, point, retry_failed)
    if _orphaned.is_set():
        os._exit(1)
    return outcome


def dask_client(address: str | None, workers: int | None):
    """A distributed.Client: connected to `address`, or to a new LocalCluster on 127.0.0.1 (processes, one
    thread each; Dask sets OMP/MKL/OPENBLAS_NUM_THREADS=1 in its workers). Returns (client, cluster or None)."""
    import logging

    Client, LocalCluster = _import_dask()
    try:
        if address:
            return Client(address, timeout="20s"), None
        cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, host="127.0.0.1", processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        return Client(cluster), cluster
    except OSError as exc:
        raise UserError(f"--executor dask: cannot reach the Dask scheduler at {address or 'a local cluster'}: "
                        f"{exc}") from None


def _run_dask(sweep: Sweep, sweep_dir: Path, to_run: list[Point], retry_failed: bool, address: str | None,
              workers: int | None, progress: _Progress) -> None:
    """Points on a Dask cluster. This process claims each point (its lock), a worker trains it in a temporary
    folder and sends the files back, this process writes the run folder and releases the lock. At most twice
    as many points as the cluster has threads are claimed at once, so a second sweep can take the rest."""
    from distributed import wait

    client, cluster = dask_client(address, workers)
    claimed: dict = {}
    try:
        threads = sum(client.nthreads().values()) or 1
        progress.echo(f"dask: {len(client.nthreads())} workers, {threads} threads at {client.scheduler.address}")
        queue = list(to_run)
        while queue or claimed:
            while queue and len(claimed) < 2 * threads:
                point = queue.pop(0)
                lock, outcome = claim(sweep_dir, point, retry_failed)
                if lock is None:
                    progress.report(point, outcome)
                    continue
                folder = outcome.pop("folder")
                if folder is not None:  # no resuming on a cluster: its checkpoint lives here
                    outcome["moved"] = str(set_aside(sweep_dir, folder, outcome["state"]))
                future = client.submit(train_remote, point.cfg, pure=False, key=f"digitlab-{point.id}-{time.time_ns()}")
                claimed[future] = (point, lock, outcome)
            if not claimed:
                break
            finished = wait(list(claimed), return_when="FIRST_COMPLETED").done
            for future in finished:
                point, lock, outcome = claimed.pop(future)
                try:
                    try:
                        remote = future.result()
                    except Exception as exc:  # the worker died or the task could not run: nothing to write,
                        progress.lost.append(point.id)  # the point stays to run next time
                        progress.report(point, {**outcome, "state": "crashed", "note": "trained",
                                                "error": f"on the cluster: {type(exc).__name__}: {exc}"})
                        continue
                    run_dir = write_remote_run(sweep_dir, point, remote)
                    progress.report(point, {**outcome, "state": folder_status(run_dir, locked_here=True),
                                            "note": "trained", "error": remote.get("error")})
                finally:
                    lock.release()
    finally:
        for future, (_, lock, _) in claimed.items():
            future.cancel()
            lock.release()
        client.close()
        if cluster is not None:
            cluster.close()


# -- the sweep folder's files --------------------------------------------------------------------------------------
def _write_sweep_file(sweep: Sweep, sweep_dir: Path) -> None:
    """sweep.yaml: the sweep file as run, its base made absolute so that the copy runs from anywhere."""
    spec = dict(sweep.spec)
    spec["name"] = sweep.name
    spec["base"] = str(sweep.base.resolve())
    header = f"# digitlab sweep {sweep.source}, last run {utc_now()}\n"
    atomic_write(sweep_dir / "sweep.yaml", header + yaml.safe_dump(spec, sort_keys=False, default_flow_style=None))


def write_points_csv(sweep: Sweep, sweep_dir: Path, outcomes: list[Outcome]) -> Path:
    """points.csv: point, status, metric (the one `select` names), run folder, params, then the varied keys."""
    keys = list(dict.fromkeys(k for o in outcomes for k in o.point.values))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["point", "status", "metric", "run_folder", "params"] + keys)
    for o in outcomes:
        writer.writerow([o.point.id, o.state, "" if o.metric is None else o.metric,
                         o.folder.name if o.folder else "", "" if o.params is None else o.params]
                        + [_text(o.point.values[k]) if k in o.point.values else "" for k in keys])
    atomic_write(sweep_dir / "points.csv", buffer.getvalue())
    return sweep_dir / "points.csv"


def _write_compare_png(sweep: Sweep, sweep_dir: Path, outcomes: list[Outcome]) -> Path | None:
    from digitlab import compare
    runs = []
    for o in outcomes:
        if o.folder is not None:
            try:
                runs.append(compare.read_run(o.folder))
            except UserError:
                continue
    return compare.plot(runs, sweep_dir / "compare.png", title=f"{sweep.name}: test accuracy (solid), train "
                                                               f"(dashed)") if runs else None


def summary_rows(result: SweepResult) -> tuple[list[str], list[list[str]]]:
    """The final table: every point with its status, metric and parameters, the best marked."""
    headers = ["point", "status", result.sweep.select, "params", "values", "run folder"]
    cells = []
    for o in result.outcomes:
        state = "running elsewhere" if o.state == "running" else "not run" if o.state == "pending" else o.state
        mark = " *" if result.best is not None and o is result.best else ""
        cells.append([o.point.id + mark, state, "-" if o.metric is None else f"{o.metric:.4f}",
                      "-" if o.params is None else str(o.params), o.point.label,
                      o.folder.name if o.folder else "-"])
    return headers, cells
