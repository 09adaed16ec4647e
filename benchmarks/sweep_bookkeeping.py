"""How long a sweep's bookkeeping takes, apart from its training: not a test, a measurement.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/sweep_bookkeeping.py --sizes 100 300 1000 [--profile]

Trains one point of configs/seeds/digits8x8-mlp.yaml for real (its epochs set to 9, a validation split added)
twice, once to the end and once stopped after its first epoch, in a temporary folder. Then, for each size N and
each rule (plain: no pruning; asha: min_epochs 1, reduction_factor 3, so rungs at epochs 1 and 3; median: min_epochs
1, min_points 3), it runs a real sweep of N random-search points (digitlab.sweep.run_sweep, the local executor,
every line it prints dropped) whose training alone is replaced: a job claims its point as a real one does, then
writes the point's folder from those two folders (its own config.yaml, a checkpoint and a model made for that
config, a metrics.csv of the job's epochs with a val_accuracy drawn from the point's id, its run.json with its point
and sweep, summary.json when complete), stopping where the job's stop rule says, and says how the point ended.

Printed per sweep: the bookkeeping's seconds (perf_counter around the sweep's own functions: the first look, each
job's line with the look after it, finding more jobs, the sweep's files at the end) against the invocation's wall
time, which also holds the jobs (writing the folders, the stand-in for training, and each job's claim and status
checks, which a worker process does when the sweep has workers); then where the bookkeeping went, each line with
what it calls; with --profile, cProfile's view of the same functions (profiling slows what it measures). Then two
looks at the finished sweep folder: a first one by a new Schedule, then one by the same Schedule, nothing changed.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from digitlab.config import config_hash, dump, load_config
from digitlab.nn.serialization import META_KEY
from digitlab.run import layout
from digitlab.run.callbacks import StopAfter
from digitlab.run.lifecycle import start
from digitlab.sweep import load_sweep, run_sweep, runner, schedule, state
from digitlab.sweep.executors import local
from digitlab.sweep.prune import ASHA, MedianRule
from digitlab.sweep.schedule import Schedule
from digitlab.sweep.state import claim, folder_status, resumable
from digitlab.system.storage import npz_bytes, read_npz

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "seeds" / "digits8x8-mlp.yaml"
EPOCHS = 9
RULES = {"plain": None,
         "asha": {"method": "asha", "metric": "val_accuracy", "min_epochs": 1, "reduction_factor": 3},
         "median": {"method": "median", "metric": "val_accuracy", "min_epochs": 1, "min_points": 3}}
PROFILED = [  # (module path ending, function): where the bookkeeping goes
    ("sweep/schedule.py", "look"), ("sweep/schedule.py", "_track"), ("sweep/state.py", "point_state"),
    ("sweep/state.py", "find_folder"), ("sweep/state.py", "folder_status"), ("sweep/prune.py", "plan"),
    ("sweep/schedule.py", "jobs"), ("sweep/state.py", "claim"), ("sweep/runner.py", "report"),
    ("sweep/runner.py", "_write_sweep_files"), ("sweep/runner.py", "_final_outcomes"),
    ("sweep/files.py", "write_points_csv"), ("sweep/files.py", "write_compare_png"),
    ("runs/page.py", "write_sweep_report"), ("benchmarks/sweep_bookkeeping.py", "write_point")]


class Templates:
    """The files of one real point: trained to the end, and stopped after its first epoch."""

    def __init__(self, work: Path):
        cfg = load_config(BASE)
        cfg.update(epochs=EPOCHS, name="template")
        cfg["data"]["validation"] = 0.1
        complete = start(cfg, run_dir=work / "complete", quiet=True, progress=False)
        pruned = start(cfg, run_dir=work / "pruned", quiet=True, progress=False, stop=StopAfter(1))
        self.info = json.loads((complete.path / layout.RUN_JSON).read_text())
        self.summary = json.loads((complete.path / layout.SUMMARY).read_text())
        self.row = (complete.path / layout.METRICS).read_text().splitlines()[1].split(",")
        self.header = (complete.path / layout.METRICS).read_text().splitlines()[0]
        self.checkpoint = read_npz(pruned.path / layout.CHECKPOINT)
        self.model = read_npz(complete.path / layout.MODEL)


def accuracy(point_id: str, epoch: int) -> float:
    """A point's val_accuracy after `epoch`: a level drawn from its id, rising a little each epoch."""
    level = random.Random(point_id).uniform(0.3, 0.9)
    return round(min(0.999, level + 0.01 * epoch + random.Random(f"{point_id}-{epoch}").uniform(-0.02, 0.02)), 6)


def write_point(folder: Path, point, epochs: int, status: str, why: str, t: Templates, sweep_name: str) -> None:
    """The point's folder as its training would leave it after `epochs` epochs, ended `status`."""
    folder.mkdir(exist_ok=True)
    config_yaml = dump(point.cfg)
    (folder / layout.CONFIG).write_text(config_yaml)
    rows = [t.header] + [",".join([str(e), *t.row[1:4], f"{accuracy(point.id, e):.6f}", *t.row[5:]])
                         for e in range(1, epochs + 1)]
    metrics = "\n".join(rows) + "\n"
    (folder / layout.METRICS).write_text(metrics)
    (folder / layout.CHECKPOINT).write_bytes(npz_bytes({**t.checkpoint, "epoch": np.array(epochs),
                                                        "config_yaml": np.array(config_yaml),
                                                        "metrics_csv": np.array(metrics)}))
    if status == layout.Status.COMPLETE:
        meta = json.loads(str(t.model[META_KEY]))
        meta["config_hash"] = config_hash(point.cfg)
        (folder / layout.MODEL).write_bytes(npz_bytes({**t.model, META_KEY: np.array(json.dumps(meta))}))
        last = accuracy(point.id, epochs)
        summary = {**t.summary, "name": point.cfg["name"], "val_accuracy": last, "best_val_accuracy": max(
            accuracy(point.id, e) for e in range(1, epochs + 1)), "epochs": epochs}
        (folder / layout.SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    info = {**t.info, "status": str(status), "sweep": sweep_name, "point": point.id, "epoch": epochs,
            "heartbeat": time.time()}
    info.pop("pruned", None)
    if why:
        info["pruned"] = why
    (folder / layout.RUN_JSON).write_text(json.dumps(info, indent=2) + "\n")


class FakeTraining:
    """Stands for digitlab.sweep.point.run_point: claims the point as it does, then writes its folder."""

    def __init__(self, templates: Templates):
        self.templates, self.seconds, self.jobs = templates, 0.0, 0

    def __call__(self, sweep_dir: str, job, retry_failed: bool) -> dict:
        sweep_dir, point = Path(sweep_dir), job.point
        lock, outcome = claim(sweep_dir, point, retry_failed, job.until)
        if lock is None:
            return outcome
        try:
            began = time.perf_counter()
            folder, state = outcome.pop("folder"), outcome["state"]
            resumed = resumable(folder, state)
            epochs = point.cfg["epochs"]
            rows = [{"val_accuracy": accuracy(point.id, e)} for e in range(1, epochs + 1)]
            done, why = epochs, ""
            for e in range(1, epochs):
                if job.stop is not None and (why := job.stop.check(rows[:e])):
                    done = e
                    break
            status = layout.Status.PRUNED if done < epochs else layout.Status.COMPLETE
            write_point(folder if resumed else sweep_dir / point.folder, point, done, status, why or "",
                        self.templates, sweep_dir.name)
            self.seconds += time.perf_counter() - began
            self.jobs += 1
            return {**outcome, "state": folder_status(sweep_dir / point.folder), "note": "trained",
                    **({"resumed": True} if resumed else {})}
        finally:
            lock.release()


def sweep_file(folder: Path, n: int, rule: str) -> Path:
    spec = {"name": f"{rule}-{n}", "base": str(BASE), "set": {"epochs": EPOCHS, "data.validation": 0.1},
            "random": {"n": n, "seed": 0, "params": {"optimizer.lr": {"loguniform": [0.0001, 0.5]},
                                                     "batch_size": {"choice": [32, 50, 64, 100, 128, 200]}}}}
    if RULES[rule] is not None:
        spec["prune"] = RULES[rule]
    path = folder / f"{rule}-{n}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


class Clock:
    """Seconds spent in the sweep's bookkeeping, with perf_counter around its functions (much lighter than
    cProfile). Each label counts its calls inclusively (a job line's look is also a look); `total` counts only the
    calls made outside any other one measured here: the bookkeeping's time, without counting anything twice."""

    def __init__(self):
        self.spent: dict[str, list] = {}
        self.total, self.depth = 0.0, 0
        reader = getattr(state, "PointReader", None)
        for owner, name, label in [
                (Schedule, "look", "looks (Schedule.look)"),
                (reader, "read", "  reading the points' folders"),
                (schedule if hasattr(schedule, "point_state") else None, "point_state",
                 "  reading the points' folders"),
                (ASHA, "plan", "  the rule's plan"), (MedianRule, "plan", "  the rule's plan"),
                (runner._Progress, "__init__", "the results known at the start"),
                (runner._Progress, "report", "job lines (_Progress.report, its look included)"),
                (runner._Progress, "more", "jobs found (_Progress.more)"),
                (runner, "_write_sweep_files", "the sweep's files (a look, points.csv, compare.png, report.html)"),
                (runner, "write_points_csv", "  points.csv"), (runner, "write_compare_png", "  compare.png"),
                (runner, "write_sweep_report", "  report.html (the sweep's page)")]:
            if owner is not None:
                self._wrap(owner, name, label)

    def _wrap(self, owner, name: str, label: str) -> None:
        inner = getattr(owner, name)
        spent = self.spent.setdefault(label, [0, 0.0])
        clock = self

        def timed(*args, **kwargs):
            began = time.perf_counter()
            clock.depth += 1
            try:
                return inner(*args, **kwargs)
            finally:
                clock.depth -= 1
                seconds = time.perf_counter() - began
                spent[0] += 1
                spent[1] += seconds
                if not clock.depth:
                    clock.total += seconds

        setattr(owner, name, timed)

    def reset(self) -> None:
        self.total = 0.0
        for spent in self.spent.values():
            spent[:] = [0, 0.0]


def profiled(stats: pstats.Stats) -> list[tuple[str, int, float]]:
    out = []
    for ending, name in PROFILED:
        calls = seconds = 0.0
        for (path, _, func), (_, nc, _, ct, _) in stats.stats.items():
            if func == name and path.replace(os.sep, "/").endswith(ending):
                calls, seconds = calls + nc, seconds + ct
        if calls:
            out.append((f"{ending.split('/')[-1][:-3]}.{name}", int(calls), seconds))
    return out


def measure(work: Path, n: int, rule: str, fake: FakeTraining, clock: Clock, profile: bool) -> None:
    sweep = load_sweep(sweep_file(work, n, rule))
    runs = work / "runs"
    fake.seconds, fake.jobs = 0.0, 0
    clock.reset()
    profiler = cProfile.Profile() if profile else None
    load = os.getloadavg()[0]
    began = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    result = run_sweep(sweep, runs, echo=lambda line: None)
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - began
    counts: dict[str, int] = {}
    for o in result.outcomes:
        counts[str(o.state)] = counts.get(str(o.state), 0) + 1
    jobs = wall - clock.total - fake.seconds
    print(f"{rule:>6} {len(sweep.points):>5} points, {fake.jobs} jobs: bookkeeping {clock.total:7.2f} s of the "
          f"invocation's {wall:7.2f} s ({fake.seconds:.2f} s writing the folders, {jobs:.2f} s in the jobs' claims "
          f"and checks) | load {load:.2f} before | "
          f"{', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}; epochs {result.epochs[0]}; points.csv "
          f"{hashlib.sha256((sweep.folder(runs) / layout.POINTS).read_bytes()).hexdigest()[:12]}", flush=True)
    for label, (calls, seconds) in clock.spent.items():
        if calls:
            print(f"         {label:<66} {calls:>6} calls {seconds:8.2f} s")
    if profiler is not None:
        for name, calls, seconds in profiled(pstats.Stats(profiler)):
            print(f"         {name:<28} {calls:>8} calls {seconds:9.2f} s")
    began = time.perf_counter()
    looking = Schedule(sweep, sweep.folder(runs)).look(settle=False)
    first = time.perf_counter() - began
    began = time.perf_counter()
    looking.look(settle=False)
    again = time.perf_counter() - began
    print(f"         a look at the finished sweep: {1e3 * first:.1f} ms by a new Schedule, {1e3 * again:.1f} ms "
          f"again with nothing changed", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--rules", nargs="+", choices=list(RULES), default=list(RULES))
    parser.add_argument("--profile", action="store_true", help="cProfile each sweep and say where its time went")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = parser.parse_args()
    import digitlab
    work = Path(tempfile.mkdtemp(prefix="sweep-bookkeeping-"))
    print(f"digitlab from {Path(digitlab.__file__).parent}; folders under {work}; {os.cpu_count()} cores; load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    try:
        fake = FakeTraining(Templates(work / "templates"))
        local.run_point = fake
        clock = Clock()
        for n in args.sizes:
            for rule in args.rules:
                measure(work, n, rule, fake, clock, args.profile)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    sys.exit(main())
