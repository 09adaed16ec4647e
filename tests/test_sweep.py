"""digitlab sweep: a 2x2 grid that finishes, runs nothing the second time, survives SIGKILL, shares its points
with a concurrent invocation, and gives the same metrics locally, in worker processes and on a Dask cluster.

Every sweep trains a tiny network (784-16-2) on 3 vs 8 for one epoch on a few hundred images, so that the file
runs in well under a minute on two cores.
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

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from digitlab.cli import main
from digitlab.run.folder import RunFolder
from digitlab.sweep import load_sweep, run_sweep
from digitlab.sweep.state import lock_path
from digitlab.system.locks import FileLock, held_elsewhere

REPO = Path(__file__).resolve().parent.parent
QUICK = REPO / "configs" / "sweeps" / "quick.yaml"
TINY = {"name": "tiny", "seed": 0, "data": {"digits": [3, 8], "validation": 0.1, "limit": 300},
        "model": [{"linear": 16}, "relu", {"linear": 2}], "loss": "cross_entropy",
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "epochs": 1, "batch_size": 50}
PROGRESS = re.compile(r"^\[\d+/\d+\] ([0-9a-f]{8}) .*?: (\w+)", re.M)


def write_sweep(folder: Path, grid: dict, name: str = "s", base: dict | None = None, **extra) -> Path:
    (folder / "base.yaml").write_text(yaml.safe_dump(base or TINY, sort_keys=False))
    spec = {"name": name, "base": "base.yaml", "grid": grid, **extra}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def digitlab(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digitlab", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kwargs)


def statuses(sweep_dir: Path) -> dict[str, str]:
    return {p.name: RunFolder(p).status() for p in sweep_dir.iterdir() if (p / "run.json").is_file()}


def trained(output: str) -> list[str]:
    """The point ids a sweep's output says it ran (not those it skipped)."""
    return [m.group(1) for m in PROGRESS.finditer(output) if "skipped" not in m.group(0)]


def numeric_metrics(run_dir: Path) -> np.ndarray:
    rows = RunFolder(run_dir).read_metrics()
    return np.array([[r[c] for c in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                     "test_loss", "test_accuracy")] for r in rows], dtype=float)


@pytest.fixture(scope="module")
def quick_local(tmp_path_factory):
    """configs/sweeps/quick.yaml run once in this process, one point after the other."""
    runs = tmp_path_factory.mktemp("quick-local")
    result = CliRunner().invoke(main, ["sweep", str(QUICK), "--runs-dir", str(runs)])
    return runs / "quick", result


# -- the quick sweep ---------------------------------------------------------------------------------------------
def test_quick_sweep_finishes_and_writes_the_sweep_files(quick_local):
    sweep_dir, result = quick_local
    assert result.exit_code == 0, result.output
    assert sorted(statuses(sweep_dir).values()) == ["complete"] * 4
    assert len(trained(result.output)) == 4
    assert "best by val_accuracy:" in result.output
    with open(sweep_dir / "points.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["complete"] * 4
    assert {r["point"] for r in rows} == {p.id for p in load_sweep(QUICK).points}
    assert all(0 < float(r["metric"]) <= 1 and (sweep_dir / r["run_folder"] / "model.npz").is_file() for r in rows)
    assert (sweep_dir / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    copy = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    assert Path(copy["base"]).is_absolute() and copy["grid"] == yaml.safe_load(QUICK.read_text())["grid"]


def test_points_draw_no_figures_and_train_what_digitlab_train_trains(quick_local, tmp_path):
    """A point ends with what its figures are drawn from (`outputs: light`), not the figures; its metrics and
    weights are those `digitlab train` gives its config; `digitlab report` draws every figure when asked."""
    sweep_dir, _ = quick_local
    point = sorted(p for p in sweep_dir.iterdir() if (p / "run.json").is_file())[0]
    assert not list(point.glob("*.png")) and not (point / "report.html").exists()
    assert {"summary.json", "metrics.csv", "model.npz", "splits.npz", "confusion.csv"} <= {p.name for p in
                                                                                            point.iterdir()}
    cfg = yaml.safe_load((point / "config.yaml").read_text())
    assert cfg["outputs"] == "light"
    (tmp_path / "point.yaml").write_text(yaml.safe_dump({**cfg, "outputs": "full"}))
    result = CliRunner().invoke(main, ["train", str(tmp_path / "point.yaml"), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    alone = Path(result.stdout.splitlines()[-1])
    np.testing.assert_array_equal(numeric_metrics(point), numeric_metrics(alone))
    assert {p.name for p in alone.glob("*.png")} >= {"curves.png", "confusion.png"}
    with np.load(point / "model.npz") as a, np.load(alone / "model.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in a.files if k != "__architecture__")
    report = CliRunner().invoke(main, ["report", str(point)])
    assert report.exit_code == 0, report.output
    assert {p.name for p in point.glob("*.png")} == {p.name for p in alone.glob("*.png")}
    assert (point / "report.html").is_file()


def test_running_again_runs_nothing_and_says_so(quick_local):
    sweep_dir, _ = quick_local
    before = {p: (p / "run.json").read_bytes() for p in sweep_dir.iterdir() if (p / "run.json").is_file()}
    result = CliRunner().invoke(main, ["sweep", str(QUICK), "--runs-dir", str(sweep_dir.parent)])
    assert result.exit_code == 0, result.output
    assert "nothing to run: every point is complete" in result.output
    assert "0 points run now" in result.output and trained(result.output) == []
    assert {p: (p / "run.json").read_bytes() for p in before} == before


def test_dry_run_marks_what_is_done_and_writes_nothing(quick_local, tmp_path):
    sweep_dir, _ = quick_local
    done = CliRunner().invoke(main, ["sweep", str(QUICK), "--runs-dir", str(sweep_dir.parent), "--dry-run"])
    assert done.exit_code == 0 and done.output.count(" done ") == 4 and "to run" not in done.output.split("\n", 2)[2]
    fresh = CliRunner().invoke(main, ["sweep", str(QUICK), "--runs-dir", str(tmp_path), "--dry-run"])
    assert fresh.exit_code == 0 and fresh.output.count(" to run ") == 4
    assert not (tmp_path / "quick").exists()


def test_points_are_named_by_a_hash_of_their_resolved_config(tmp_path):
    sweep = load_sweep(QUICK)
    assert len({p.id for p in sweep.points}) == 4
    assert [p.id for p in load_sweep(QUICK).points] == [p.id for p in sweep.points]
    assert all(p.folder.endswith("-" + p.id) and p.cfg["name"] == p.folder for p in sweep.points)
    # The same configs reached another way (the values written in the base) get the same ids.
    base = {**TINY, "epochs": 1}
    path = write_sweep(tmp_path, {"optimizer.lr": [0.1, 0.05]}, base=base)
    again = write_sweep(tmp_path, {"optimizer.lr": [0.05, 0.1]}, name="t", base=base)
    assert sorted(p.id for p in load_sweep(path).points) == sorted(p.id for p in load_sweep(again).points)


def test_random_samples_and_seeds_are_reproducible(tmp_path):
    path = write_sweep(tmp_path, {"batch_size": [50, 100]}, seeds=[0, 1],
                       random={"n": 3, "seed": 7, "params": {"optimizer.lr": {"loguniform": [1e-3, 1e-1]},
                                                             "optimizer.momentum": {"choice": [0.0, 0.9]}}})
    sweep = load_sweep(path)
    assert len(sweep.points) == 2 * 3 * 2
    assert [p.values for p in sweep.points] == [p.values for p in load_sweep(path).points]
    assert all(1e-3 <= p.cfg["optimizer"]["lr"] <= 1e-1 and p.cfg["seed"] in (0, 1) for p in sweep.points)
    assert {p.cfg["optimizer"]["momentum"] for p in sweep.points} <= {0.0, 0.9}


def test_tied_keys_take_one_value():
    sweep = load_sweep(REPO / "configs" / "sweeps" / "mnist10-dropout.yaml")
    assert len(sweep.points) == 8 and sweep.select == "val_accuracy"
    for p in sweep.points:
        assert p.cfg["model"][2]["dropout"] == p.cfg["model"][5]["dropout"] == p.values[
            "model.2.dropout,model.5.dropout"]


@pytest.mark.parametrize("spec, message", [
    ({"base": "base.yaml", "grid": {"optimizer.lr": [0.1]}, "selct": "val_accuracy"}, "selct: unknown key"),
    ({"base": "base.yaml", "grid": {"optimizer.lr": 0.1}}, "grid.optimizer.lr: expected a non-empty list"),
    ({"base": "base.yaml", "grid": {"optimizer.lr": [-1]}}, "optimizer.lr: expected a number > 0, got -1 "
                                                            "(in the point optimizer.lr=-1)"),
    ({"base": "base.yaml", "grid": {"optimizer.lr": [0.1]}, "select": "accuracy"}, "select: expected one of"),
    ({"base": "missing.yaml"}, "missing.yaml: file not found"),
    ({"base": "base.yaml", "random": {"n": 2, "params": {"optimizer.lr": {"gauss": [0, 1]}}}},
     "random.params.optimizer.lr: expected one of"),
    ({"base": "base.yaml", "random": {"n": 2, "seed": -1, "params": {"optimizer.lr": {"choice": [0.1, 0.2]}}}},
     "random.seed: expected a whole number >= 0, got -1"),
    ({"base": "base.yaml", "grid": {"name": ["a", "b"]}}, "grid.name: the sweep names each point after its values"),
    ({"base": "base.yaml", "grid": {"seed": [0, 1]}, "seeds": [2, 3]}, "grid.seed: seeds are given twice"),
])
def test_a_bad_sweep_file_is_one_line_and_exit_2(tmp_path, spec, message):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(TINY))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(main, ["sweep", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1 and message in result.output
    assert not (tmp_path / "runs").exists()


def test_select_by_validation_needs_a_validation_split(tmp_path):
    path = write_sweep(tmp_path, {"optimizer.lr": [0.1]}, base={**TINY, "data": {"digits": [3, 8]}})
    result = CliRunner().invoke(main, ["sweep", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "select: val_accuracy needs a validation split" in result.output


# -- failures, crashes, locks ------------------------------------------------------------------------------------
def test_a_failing_point_does_not_stop_the_sweep(tmp_path, fake_idx_folder):
    broken = fake_idx_folder(n_train=400, n_test=100)  # its headers are fine; its training images are cut short
    images = broken / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:2000])
    path = write_sweep(tmp_path, {"data.path": [None, str(broken)], "optimizer.lr": [0.1]},
                       select="test_accuracy")
    runs = tmp_path / "runs"
    first = CliRunner().invoke(main, ["sweep", str(path), "--runs-dir", str(runs)])
    assert first.exit_code == 1, first.output
    assert sorted(statuses(runs / "s").values()) == ["complete", "failed"]
    assert "best by test_accuracy:" in first.output and "1 point did not complete" in first.output
    again = CliRunner().invoke(main, ["sweep", str(path), "--runs-dir", str(runs)])
    assert again.exit_code == 1 and trained(again.output) == [] and "--retry-failed" in again.output
    retry = CliRunner().invoke(main, ["sweep", str(path), "--runs-dir", str(runs), "--retry-failed"])
    assert retry.exit_code == 1 and len(trained(retry.output)) == 1
    assert [p.name.rsplit(".", 1)[1] for p in (runs / "s" / "replaced").iterdir()] == ["failed-1"]


def test_a_crashed_point_without_checkpoint_is_moved_aside_and_run_again(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, {"optimizer.lr": [0.1, 0.05]}))
    runs = tmp_path / "runs"
    crashed = runs / "s" / sweep.points[0].folder
    folder = RunFolder.create_at(crashed)
    folder.write("config.yaml", "{}\n")
    folder.update_status(status="running")  # its process died without a trace: no lock held, no checkpoint
    (crashed / ".lock").touch()
    result = run_sweep(sweep, runs, echo=lambda line: None)
    assert [o.state for o in result.outcomes] == ["complete", "complete"]
    assert sorted(result.trained) == sorted(p.id for p in sweep.points)
    moved = runs / "s" / "replaced" / f"{crashed.name}.crashed-1"
    assert moved.is_dir() and (moved / "run.json").is_file()


def test_a_point_locked_by_another_process_is_skipped_and_reported(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, {"optimizer.lr": [0.1, 0.05]}))
    runs, lines = tmp_path / "runs", []
    other = FileLock(lock_path(runs / "s", sweep.points[1].id))
    assert other.acquire()
    try:
        assert FileLock(other.path).acquire() is False  # a second holder is refused at once
        assert held_elsewhere(other.path) == f"pid {os.getpid()} on {os.uname().nodename}"
        result = run_sweep(sweep, runs, echo=lines.append)
    finally:
        other.release()
    assert held_elsewhere(other.path) is None
    assert result.trained == [sweep.points[0].id]
    assert [o.state for o in result.outcomes] == ["complete", "running"] and not result.failed
    assert any("skipped: running elsewhere (pid" in line for line in lines)
    assert not (runs / "s" / sweep.points[1].folder).exists()


@pytest.mark.slow
def test_sigkill_part_way_then_running_again_completes_only_the_missing_points(tmp_path):
    # Two one-epoch points, then two of 15 epochs: SIGKILL lands once the first point is complete and a long one
    # has written an epoch, so the rerun meets a complete point, a killed one and one never started.
    path = write_sweep(tmp_path, {"epochs": [1, 15], "optimizer.lr": [0.1, 0.05]})
    runs = tmp_path / "runs"
    sweep_dir = runs / "s"
    process = subprocess.Popen([sys.executable, "-m", "digitlab", "sweep", str(path), "--runs-dir", str(runs)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def part_way() -> bool:
        folders = [p for p in sweep_dir.iterdir() if (p / "run.json").is_file()] if sweep_dir.is_dir() else []
        return "complete" in [RunFolder(p).status() for p in folders] and any(
            RunFolder(p).read_json("run.json")["status"] == "running" and RunFolder(p).read_metrics()
            for p in folders)

    try:
        deadline = time.time() + 120
        while not part_way():
            assert process.poll() is None and time.time() < deadline, "the sweep ended before it was part way"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    before = statuses(sweep_dir)
    done = {name: (sweep_dir / name / "run.json").read_bytes() for name, s in before.items() if s == "complete"}
    assert 1 <= len(done) < 4 and "crashed" in before.values(), before  # nobody holds the killed run's lock
    plan = CliRunner().invoke(main, ["sweep", str(path), "--runs-dir", str(runs), "--dry-run"])
    assert plan.output.count(" done ") == len(done) and "to run again (crashed)" in plan.output

    result = CliRunner().invoke(main, ["sweep", str(path), "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    assert sorted(statuses(sweep_dir).values()) == ["complete"] * 4
    assert {name: (sweep_dir / name / "run.json").read_bytes() for name in done} == done
    missing = {p.id for p in load_sweep(path).points if p.folder not in done}
    assert sorted(trained(result.output)) == sorted(missing)
    assert "resumed from its checkpoint" in result.output
    for name in [n for n, s in before.items() if s == "crashed"]:  # continued where the checkpoint stood
        assert json.loads((sweep_dir / name / "run.json").read_text())["resumes"]
        epochs = yaml.safe_load((sweep_dir / name / "config.yaml").read_text())["epochs"]
        assert [r["epoch"] for r in RunFolder(sweep_dir / name).read_metrics()] == list(range(1, epochs + 1))


def pool_workers(pid: int) -> list[int]:
    """The multiprocessing workers among a process's children (Linux /proc)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(errors="replace")]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_workers_stop_when_their_sweep_is_killed_and_their_points_continue_next_time(tmp_path):
    # long enough (tiny epochs take ~10 ms) that both points are still training when the sweep is killed
    path = write_sweep(tmp_path, {"optimizer.lr": [0.1, 0.05]}, base={**TINY, "epochs": 200})
    runs = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-m", "digitlab", "sweep", str(path), "--runs-dir", str(runs),
                                "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        while not list((runs / "s").glob("*/metrics.csv")):
            assert process.poll() is None and time.time() < deadline
            time.sleep(0.01)
        workers = pool_workers(process.pid)
        assert len(workers) == 2
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.time() + 20
        while any(alive(w) for w in workers):
            assert time.time() < deadline, "orphaned workers kept running"
            time.sleep(0.1)
    finally:
        process.kill()
        process.wait()
        for worker in workers:
            if alive(worker):
                os.kill(worker, signal.SIGKILL)
    before = statuses(runs / "s")
    assert before and "complete" not in before.values() and set(before.values()) <= {"interrupted", "crashed"}
    result = CliRunner().invoke(main, ["sweep", str(path), "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    assert sorted(statuses(runs / "s").values()) == ["complete"] * 2
    assert "resumed from its checkpoint" in result.output


@pytest.mark.slow
def test_two_invocations_at_once_run_every_point_exactly_once(tmp_path):
    path = write_sweep(tmp_path, {"optimizer.lr": [0.1, 0.05], "batch_size": [50, 100]},
                       base={**TINY, "epochs": 3})
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "digitlab", "sweep", str(path), "--runs-dir", str(runs)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    ran = trained(outputs[0]) + trained(outputs[1])
    assert sorted(ran) == sorted(p.id for p in load_sweep(path).points), outputs
    assert sorted(statuses(runs / "s").values()) == ["complete"] * 4
    assert not (runs / "s" / "replaced").exists()
    with open(runs / "s" / "points.csv", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["complete"] * 4


# -- executors ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_worker_processes_give_the_metrics_of_one_point_after_the_other(quick_local, tmp_path):
    """Two worker processes train what this process trains one point after the other (Dask is checked once, in
    test_prune_sweep.py, where it must also prune and resume the same points)."""
    sweep_dir, _ = quick_local
    pool = digitlab("sweep", QUICK, "--runs-dir", tmp_path / "pool", "--workers", "2")
    assert pool.returncode == 0, pool.stdout + pool.stderr
    other = tmp_path / "pool" / "quick"
    assert sorted(statuses(other).values()) == ["complete"] * 4
    for point in load_sweep(QUICK).points:
        np.testing.assert_allclose(numeric_metrics(other / point.folder), numeric_metrics(sweep_dir / point.folder),
                                   rtol=0, atol=1e-6)
    assert not [p for p in other.iterdir() if p.name.startswith(".incoming")]


def test_missing_dask_is_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    result = CliRunner().invoke(main, ["sweep", str(QUICK), "--runs-dir", str(tmp_path), "--executor", "dask"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert result.output.startswith("error: --executor dask needs Dask: pip install 'digitlab[dask]'")
    assert not (tmp_path / "quick").exists()


def test_address_needs_the_dask_executor(tmp_path):
    result = CliRunner().invoke(main, ["sweep", str(QUICK), "--address", "tcp://127.0.0.1:8786"])
    assert result.exit_code == 2 and "--address needs --executor dask" in result.output
