"""Pruned sweeps keep every guarantee of a sweep: a rerun runs nothing new, SIGKILL then rerun ends as an
uninterrupted sweep, two invocations at once never train the same epochs of a point, worker processes and Dask
prune the same points as one process, and a point paused at its rung resumes from its checkpoint when a later
invocation promotes it.

Nine points (a 784-16-2 network on 3 vs 8, 300 images) of 9 epochs, rungs at epochs 1 and 3: 21 epochs in all.
Every sweep that is compared with another runs with one BLAS thread, as pool and Dask workers do here, so that the
numbers agree to the last digit.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from digitlab.cli import main
from digitlab.run.folder import RunFolder
from digitlab.sweep import load_sweep
from digitlab.sweep.state import lock_path
from digitlab.system.locks import FileLock
from digitlab.system.threads import LIMIT_VARIABLES, limits

TINY = {"name": "tiny", "seed": 0, "data": {"digits": [3, 8], "validation": 0.1, "limit": 300},
        "model": [{"linear": 16}, "relu", {"linear": 2}], "loss": "cross_entropy",
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "schedule": "cosine"}, "epochs": 9,
        "batch_size": 50}
ASHA = {"method": "asha", "metric": "val_accuracy", "min_epochs": 1, "reduction_factor": 3}
JOB = re.compile(r"^\[\d+/\d+\] ([0-9a-f]{8}) .*?: (pruned|complete) at epoch (\d+)/", re.M)


def write_sweep(folder: Path, name: str = "asha", prune: dict | None = None, base: dict | None = None) -> Path:
    (folder / "base.yaml").write_text(yaml.safe_dump(base or TINY, sort_keys=False))
    spec = {"name": name, "base": "base.yaml", "prune": prune or ASHA,
            "random": {"n": 9, "seed": 1, "params": {"optimizer.lr": {"loguniform": [0.001, 0.5]}}}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def one_thread() -> dict:
    return {**{k: v for k, v in os.environ.items() if k not in LIMIT_VARIABLES}, **limits(1)}


def sweep(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digitlab", "sweep", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=one_thread())


def jobs(output: str) -> list[tuple[str, int]]:
    """(point id, epoch it was trained to) for every job an invocation ran."""
    return [(m.group(1), int(m.group(3))) for m in JOB.finditer(output)]


def final(sweep_dir: Path) -> dict[str, tuple]:
    """Every point folder's status and metrics.csv without the seconds column."""
    out = {}
    for run in sorted(p for p in sweep_dir.iterdir() if (p / "run.json").is_file()):
        metrics = [line.rsplit(",", 1)[0] for line in (run / "metrics.csv").read_text().splitlines()]
        out[run.name] = (RunFolder(run).status(), tuple(metrics))
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The ASHA sweep run once, uninterrupted, one point after the other."""
    root = tmp_path_factory.mktemp("reference")
    path = write_sweep(root)
    result = sweep(path, "--runs-dir", root / "runs")
    assert result.returncode == 0, result.stdout + result.stderr
    return path, root / "runs" / "asha", result.stdout


@pytest.mark.slow
def test_a_pruned_sweep_stops_points_at_their_rungs_and_a_rerun_runs_nothing(reference):
    path, sweep_dir, output = reference
    states = final(sweep_dir)
    assert sorted(s for s, _ in states.values()) == ["complete"] + ["pruned"] * 8
    epochs = sorted(len(m) - 1 for _, m in states.values())
    assert epochs == [1] * 6 + [3, 3, 9]  # 9 points at rung 1, 3 at rung 2, 1 to the end
    assert "epochs: 21 trained of the full grid's 81 (26%)" in output
    assert sorted(jobs(output)) == sorted(set(jobs(output)))  # no (point, epoch) trained twice
    with open(sweep_dir / "points.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["status"] for r in rows} == {"pruned", "complete"}
    assert all(r["last_epoch"] and r["epochs"] == "9" and r["stopped"] for r in rows)
    assert any(r["stopped"].startswith("rung 1 (epoch 1): val_accuracy ") for r in rows)
    for run in sweep_dir.iterdir():  # a pruned point keeps its folder, checkpoint and metrics
        if (run / "run.json").is_file() and RunFolder(run).status() == "pruned":
            assert (run / "checkpoint.npz").is_file() and not (run / "model.npz").exists()
            assert json.loads((run / "run.json").read_text())["point"] == run.name.rsplit("-", 1)[1]
    again = CliRunner().invoke(main, ["sweep", str(path), "--runs-dir", str(sweep_dir.parent)])
    assert again.exit_code == 0, again.output
    assert "nothing to run: every point is complete or pruned" in again.output and jobs(again.output) == []
    assert "0 points run now" in again.output
    assert final(sweep_dir) == final(sweep_dir)


@pytest.mark.slow
def test_sigkill_then_rerun_equals_an_uninterrupted_pruned_sweep(reference, tmp_path):
    path, reference_dir, _ = reference
    sweep_dir = tmp_path / "runs" / "asha"
    process = subprocess.Popen([sys.executable, "-m", "digitlab", "sweep", str(path), "--runs-dir",
                                str(tmp_path / "runs")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=one_thread())
    try:
        deadline = time.time() + 120
        while sum(1 for p in sweep_dir.glob("*/run.json") if '"pruned"' in p.read_text(errors="replace")) < 3:
            assert process.poll() is None and time.time() < deadline, "the sweep ended before it was part way"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert final(sweep_dir) != final(reference_dir)
    result = sweep(path, "--runs-dir", tmp_path / "runs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert final(sweep_dir) == final(reference_dir)
    assert not (sweep_dir / "replaced").exists()


@pytest.mark.slow
def test_two_invocations_at_once_never_train_the_same_epochs(reference, tmp_path):
    path, reference_dir, _ = reference
    command = [sys.executable, "-m", "digitlab", "sweep", str(path), "--runs-dir", str(tmp_path / "runs")]
    first, second = (subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env=one_thread()) for _ in range(2))
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == second.returncode == 0, outputs
    ran = jobs(outputs[0]) + jobs(outputs[1])
    assert len(ran) == len(set(ran)), outputs  # no epoch of any point trained by both
    assert final(tmp_path / "runs" / "asha") == final(reference_dir)
    for run in (tmp_path / "runs" / "asha").glob("*/run.json"):  # each resume continues where the last stopped
        assert [r["from_epoch"] for r in json.loads(run.read_text()).get("resumes", [])] in ([], [1], [1, 3])


@pytest.mark.slow
def test_worker_processes_and_dask_prune_the_same_points(reference, tmp_path):
    """The suite's one Dask LocalCluster: its points end as the uninterrupted sweep's did, metrics.csv to the text."""
    path, reference_dir, _ = reference
    pool = sweep(path, "--runs-dir", tmp_path / "pool", "--workers", "2")
    assert pool.returncode == 0, pool.stdout + pool.stderr
    assert final(tmp_path / "pool" / "asha") == final(reference_dir)
    dask = sweep(path, "--runs-dir", tmp_path / "dask", "--executor", "dask")
    assert dask.returncode == 0, dask.stdout + dask.stderr
    assert re.search(r"dask: \d+ workers?, \d+ threads? at tcp://127\.0\.0\.1:", dask.stdout), dask.stdout
    assert final(tmp_path / "dask" / "asha") == final(reference_dir)
    # promoted points were resumed on a worker from the checkpoint this process shipped, not started over
    promoted = [json.loads(p.read_text()) for p in (tmp_path / "dask" / "asha").glob("*/run.json")]
    assert sorted(len(info.get("resumes", [])) for info in promoted) == [0] * 6 + [1, 1, 2]
    assert "resumed from its checkpoint" in dask.stdout
    assert not [p for p in (tmp_path / "dask" / "asha").iterdir() if p.name.startswith(".") and p.name != ".locks"]


@pytest.mark.slow
def test_the_median_rule_prunes_the_same_points_in_worker_processes(tmp_path):
    median = {"method": "median", "metric": "val_accuracy", "min_epochs": 1, "min_points": 2}
    path = write_sweep(tmp_path, name="median", prune=median, base={**TINY, "epochs": 4})
    spec = yaml.safe_load(path.read_text())
    spec["random"].update(n=6, seed=3)
    path.write_text(yaml.safe_dump(spec))
    one = sweep(path, "--runs-dir", tmp_path / "one")
    pool = sweep(path, "--runs-dir", tmp_path / "pool", "--workers", "2")
    assert one.returncode == pool.returncode == 0, one.stdout + pool.stdout
    states = final(tmp_path / "one" / "median")
    assert states == final(tmp_path / "pool" / "median")
    assert {s for s, _ in states.values()} == {"complete", "pruned"}
    assert "below the median" in one.stdout


@pytest.mark.slow
def test_a_point_waiting_at_its_rung_resumes_when_a_later_invocation_promotes_it(tmp_path):
    path = write_sweep(tmp_path)
    points = load_sweep(path).points
    runs, held = tmp_path / "runs", points[-1]
    other = FileLock(lock_path(runs / "asha", held.id))  # another invocation is training the last point
    assert other.acquire()
    try:
        first = CliRunner().invoke(main, ["sweep", str(path), "--runs-dir", str(runs)])
    finally:
        other.release()
    assert first.exit_code == 0, first.output
    assert "waits at rung 1 (epoch 1)" in first.output and "running elsewhere" in first.output
    assert "rung for results still to come" in first.output
    waiting = [p.parent for p in runs.glob("asha/*/run.json") if "waits for the rung's decision" in p.read_text()]
    assert waiting and {len(RunFolder(p).read_metrics()) for p in waiting} <= {1, 3}  # paused at rung 1 or 2
    second = CliRunner().invoke(main, ["sweep", str(path), "--runs-dir", str(runs)])
    assert second.exit_code == 0, second.output
    assert "resumed from its checkpoint" in second.output
    assert sorted(RunFolder(p.parent).status() for p in runs.glob("asha/*/run.json")) == ["complete"] + ["pruned"] * 8


@pytest.mark.parametrize("prune, message", [
    ({"method": "hyperband"}, "prune.method: expected one of asha, median"),
    ({"method": "asha", "reduction_factor": 1}, "prune.reduction_factor: expected a whole number in [2, 100]"),
    ({"method": "asha", "min_epoch": 1}, "prune.min_epoch: unknown key; did you mean 'min_epochs'?"),
    ({"method": "median", "metric": "val_acc"}, "prune.metric: expected one of val_accuracy"),
])
def test_a_bad_prune_section_is_one_line_and_exit_2(tmp_path, prune, message):
    path = write_sweep(tmp_path, prune=prune)
    result = CliRunner().invoke(main, ["sweep", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"error: {path}: {message}")


def test_pruning_on_validation_needs_a_validation_split(tmp_path):
    path = write_sweep(tmp_path, base={**TINY, "data": {"digits": [3, 8], "limit": 300}})
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**spec, "select": "test_accuracy"}))
    result = CliRunner().invoke(main, ["sweep", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "prune.metric: val_accuracy needs a validation split" in result.output


def test_the_shipped_measurement_sweeps_hold_the_same_points():
    """mnist10-asha-full trains to the end exactly the points mnist10-asha prunes: same configs, same seeds."""
    sweeps = Path(__file__).resolve().parent.parent / "configs" / "sweeps"
    pruned, full = load_sweep(sweeps / "mnist10-asha.yaml"), load_sweep(sweeps / "mnist10-asha-full.yaml")
    assert pruned.prune is not None and full.prune is None and len(pruned.points) >= 27
    assert [p.id for p in pruned.points] == [p.id for p in full.points]
    varied = {k for p in pruned.points for k in p.values}
    assert {"optimizer.lr", "model.2.dropout,model.5.dropout", "model.0.linear,model.3.linear"} <= varied


def test_a_cluster_worker_resumes_an_interrupted_point_from_its_shipped_checkpoint(tmp_path):
    """What --executor dask does with a crashed or interrupted point, without a cluster: the client ships the
    folder, the worker resumes it, the client puts the continued folder in place of the old one."""
    from digitlab.run.callbacks import StopAfter
    from digitlab.run.lifecycle import start
    from digitlab.sweep.executors.dask import folder_files, train_remote, write_remote_run
    from digitlab.sweep.point import origin

    point = load_sweep(write_sweep(tmp_path, base={**TINY, "epochs": 3})).points[0]
    sweep_dir = tmp_path / "runs" / "asha"
    straight = start(point.cfg, run_dir=tmp_path / "straight", quiet=True, progress=False)
    stopped = start(point.cfg, run_dir=sweep_dir / point.folder, quiet=True, progress=False,
                    stop=StopAfter(1), record=origin(sweep_dir, point.id))
    stopped.update_status(status="interrupted", signal=2)  # as Ctrl-C after epoch 1 leaves it
    remote = train_remote(point.cfg, folder_files(stopped.path), None, origin(sweep_dir, point.id))
    assert remote["error"] is None and remote["restarted"] is None
    folder = write_remote_run(sweep_dir, point, remote, replacing=stopped.path)
    info = json.loads((folder / "run.json").read_text())
    assert folder == stopped.path and info["status"] == "complete" and info["point"] == point.id
    assert [r["from_epoch"] for r in info["resumes"]] == [1]
    strip = [line.rsplit(",", 1)[0] for line in (folder / "metrics.csv").read_text().splitlines()]
    assert strip == [line.rsplit(",", 1)[0] for line in (straight / "metrics.csv").read_text().splitlines()]
    assert sorted(p.name for p in sweep_dir.iterdir()) == [point.folder]  # no incoming or previous folder left
