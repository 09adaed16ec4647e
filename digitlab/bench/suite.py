"""A benchmark run: every (task, engine) pair in its own worker process, the ratios digitlab / engine, and the
targets met or not."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from digitlab.bench.engines import ENGINES, PEERS
from digitlab.bench.report import fmt
from digitlab.bench.tasks import TASKS, Task
from digitlab.errors import UserError
from digitlab.system.environment import command_line, load_average, machine
from digitlab.system.threads import cpus, limits


def run(tasks: list[str] | None = None, engines: list[str] | None = None, epochs: int = 3,
        threads: int | None = None, limit: int | None = None, seed: int = 0, peers: bool = True,
        echo=lambda line: None) -> dict:
    """Benchmark `tasks` (default: all available) on `engines` (default: all); returns the figures as a dict
    (see `results_table`). `echo` receives a progress line after each measurement."""
    names = list(tasks) if tasks else list(TASKS)
    for name in names:
        if name not in TASKS:
            raise UserError(f"unknown bench task {name!r}; available: {', '.join(TASKS)}")
    engines = list(engines) if engines else list(ENGINES)
    for engine in engines:
        if engine not in ENGINES:
            raise UserError(f"unknown bench engine {engine!r}; available: {', '.join(ENGINES)}")
    if "digitlab" in engines:
        engines.remove("digitlab")
    engines.insert(0, "digitlab")  # always measured, first: every ratio is against it
    if epochs < 1:
        raise UserError("--epochs must be at least 1")
    threads = threads or cpus()
    results = {"command": command_line(), "epochs": epochs, "threads": threads, "limit": limit, "seed": seed,
               "machine": machine(), "load_before": load_average(), "tasks": {}}
    spec = {"epochs": epochs, "threads": threads, "limit": limit, "seed": seed}
    results["data"] = _run_worker({**spec, "engine": "load"}, threads)
    echo(f"data: warm MNIST load {fmt(results['data'].get('load_seconds'), 3)} s")
    versions = {}
    for name in names:
        task = TASKS[name]
        rows = results["tasks"][name] = {"description": task.description, "engines": {}}
        for engine in engines:
            module = PEERS.get(engine)
            if module and not peers:
                row = {"skipped": "peers disabled (--no-peers)"}
            elif module and importlib.util.find_spec(module) is None:
                row = {"skipped": f"{module} is not installed (pip install 'digitlab[bench]')"}
            else:
                row = _run_worker({**spec, "engine": engine, "task": name}, threads)
            versions.update(row.pop("versions", {}))
            rows["engines"][engine] = row
            echo(f"{name:<12} {engine:<10} " + (row.get("skipped") or row.get("error") or
                                                 f"{fmt(row['seconds_per_epoch'], 3)} s/epoch"))
        add_ratios(rows["engines"])
        rows["targets"] = check_targets(task, rows["engines"])
    results["machine"].update(versions)
    results["load_after"] = load_average()
    return results


def add_ratios(rows: dict) -> None:
    """Each row's `ratio`: digitlab's seconds per epoch over that engine's."""
    mine = rows.get("digitlab", {}).get("seconds_per_epoch")
    for row in rows.values():
        theirs = row.get("seconds_per_epoch")
        if mine and theirs:
            row["ratio"] = mine / theirs


def check_targets(task: Task, rows: dict) -> list[dict]:
    out = []
    for engine, limit, what in task.targets:
        ratio = rows.get(engine, {}).get("ratio")
        out.append({"engine": engine, "limit": limit, "what": what, "ratio": ratio,
                    "met": None if ratio is None else ratio <= limit})
    return out


def _run_worker(spec: dict, threads: int) -> dict:
    """One measurement in a fresh interpreter; its last stdout line is the JSON result."""
    env = {**os.environ, **limits(threads)}
    proc = subprocess.run([sys.executable, "-m", "digitlab.bench.worker", json.dumps(spec)], env=env,
                          capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"worker failed (exit {proc.returncode}): {tail}"}
    return json.loads(lines[-1])
