"""Runs that survive: SIGKILL at known points then --resume equals a run that never stopped; SIGINT/SIGTERM
stop cleanly with exit 130/143; a diverging run stops with status `diverged`; failed writes end with one line
and leave the last checkpoint valid."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, digitlab, write_yaml

from digitlab.config import load_config
from digitlab.errors import StorageError
from digitlab.learner import Callback
from digitlab.run import checkpoint, layout
from digitlab.run.folder import RunFolder
from digitlab.run.lifecycle import start as train

# Light outputs (no figures, no report.html): what is tested here is what a resume restores and records.
CONFIG = {
    "name": "tiny", "seed": 3,
    "data": {"digits": [3, 8], "validation": 0.1, "limit": 1500},
    "model": [{"linear": 32}, "relu", {"dropout": 0.2}, {"linear": 1}, "sigmoid"],
    "loss": "bce",
    "optimizer": {"name": "adam", "lr": 0.003, "schedule": "cosine"},
    "epochs": 5, "batch_size": 50, "outputs": "light",
}


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The same config trained without interruption."""
    cfg_path = write_yaml(tmp_path_factory.mktemp("straight") / "tiny.yaml", CONFIG)
    return train(load_config(cfg_path), run_dir=cfg_path.parent / "run", quiet=True).path, cfg_path


@pytest.fixture(scope="module")
def killed_after_epoch_2(straight_run, tmp_path_factory, kill_run):
    """The config SIGKILLed once epoch 2 was fully recorded; tests resume copies of it."""
    _, cfg_path = straight_run
    run = tmp_path_factory.mktemp("killed") / "run"
    child = kill_run(cfg_path, run, "after-epoch", 2)
    assert child.returncode == -signal.SIGKILL, child.stderr
    return run


@pytest.mark.slow
@pytest.mark.parametrize("where,epoch", [("after-epoch", 2), ("mid-epoch", 3), ("before-checkpoint", 2),
                                         ("mid-epoch", 1)])
def test_sigkill_then_resume_equals_an_uninterrupted_run(straight_run, killed_after_epoch_2, tmp_path, kill_run,
                                                         same_run, where, epoch):
    straight, cfg_path = straight_run
    run = tmp_path / "run"
    if (where, epoch) == ("after-epoch", 2):
        shutil.copytree(killed_after_epoch_2, run)
    else:
        child = kill_run(cfg_path, run, where, epoch)
        assert child.returncode == -signal.SIGKILL, child.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "running"  # what a killed process leaves behind...
    from digitlab.run.folder import RunFolder
    assert RunFolder(run).status() == "crashed"  # ...is read as crashed: no process holds its lock

    result = cli("train", "--resume", run)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(run)
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    same_run(run, straight)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["epoch,garbage\n1,2\n", "", "\x00\xff"])
def test_a_resume_rewrites_a_damaged_metrics_csv_from_the_checkpoint_and_says_so(straight_run, killed_after_epoch_2,
                                                                                 copy_run, same_run, damage):
    straight, _ = straight_run
    run = copy_run(killed_after_epoch_2)
    (run / "metrics.csv").write_bytes(damage.encode("latin-1"))
    result = cli("train", "--resume", run)
    assert result.exit_code == 0, result.output
    warned = f"warning: {run / 'metrics.csv'}: damaged ("
    assert (warned in result.output) == bool(damage), result.output  # an empty file is read as no epochs yet
    assert "rewritten from the checkpoint's copy" in result.output or not damage
    same_run(run, straight)


def test_resume_refuses_a_complete_run(tiny_run):
    result = cli("train", "--resume", tiny_run)
    assert result.exit_code == 2 and "complete already" in result.output


def write_tiny(tmp_path, **changes) -> Path:
    return write_yaml(tmp_path / "tiny.yaml", {**CONFIG, **changes})


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_and_resume_finishes(tmp_path, sig, code):
    cfg = write_tiny(tmp_path, epochs=400, data={"digits": [3, 8], "limit": 3000})
    proc = subprocess.Popen([sys.executable, "-m", "digitlab", "train", str(cfg), "--runs-dir", str(tmp_path / "runs")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until at least one epoch is recorded
        rows = list((tmp_path / "runs").glob("*/metrics.csv"))
        if rows and len(rows[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    run = Path(out.strip().splitlines()[-1])
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted" and info["signal"] == sig
    assert f"digitlab train --resume {run}" in out
    assert "Traceback" not in err
    done = len((run / "metrics.csv").read_text().splitlines()) - 1
    assert checkpoint.load(run / layout.CHECKPOINT).epoch == done == info["epoch"]


def test_diverging_run_stops_with_status_and_hint(tmp_path):
    cfg = write_tiny(tmp_path, optimizer={"name": "sgd", "lr": 50.0, "momentum": 0.9}, loss="mse",
                     model=[{"linear": 32}, "relu", {"linear": 1}])
    result = cli("train", cfg, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 1
    run = Path(result.output.strip().splitlines()[-1])
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "diverged"
    assert set(info["diverged"]) == {"epoch", "batch", "loss"}
    assert "lower optimizer.lr" in result.output
    # the diverged epoch is not recorded as complete: exactly the epochs before it have rows
    rows = RunFolder(run).read_metrics()
    assert len(rows) == info["diverged"]["epoch"] - 1
    assert all(np.isfinite(r["train_loss"]) for r in rows)


def test_disk_full_ends_with_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    real_replace = os.replace
    saved = []

    def replace(src, dst):
        if Path(dst).name == layout.CHECKPOINT:
            saved.append(dst)
            if len(saved) == 3:  # epoch 0 and epoch 1 are written; epoch 2's write finds the disk full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    cfg = write_tiny(tmp_path)
    result = cli("train", cfg, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 1
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("error: ") and layout.CHECKPOINT in message and "No space left" in message
    run = next((tmp_path / "runs").iterdir())
    assert checkpoint.load(run / layout.CHECKPOINT).epoch == 1
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    assert not list(run.glob(".*.tmp")), "no temporary file is left behind"


def test_folder_removed_under_a_run_is_a_storage_error(tmp_path):
    import shutil

    class RemoveFolder(Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 2:
                shutil.rmtree(self.run_path)

    remover = RemoveFolder()
    remover.run_path = tmp_path / "run"
    with pytest.raises(StorageError, match="folder was removed"):
        train(load_config(write_tiny(tmp_path, epochs=3)), run_dir=tmp_path / "run", quiet=True, callbacks=[remover])


def test_a_live_run_cannot_be_resumed_twice(tmp_path):
    from digitlab.run.folder import RunFolder

    class TryResume(Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                self.result = cli("train", "--resume", tmp_path / "run")

    probe = TryResume()
    train(load_config(write_tiny(tmp_path, epochs=2)), run_dir=tmp_path / "run", quiet=True, callbacks=[probe])
    assert probe.result.exit_code == 2 and "another process" in probe.result.output
    assert RunFolder(tmp_path / "run").status() == "complete"


THREADED = {**CONFIG, "model": [{"linear": 300}, "relu", {"linear": 1}, "sigmoid"], "batch_size": 200,
            "epochs": 4, "data": {"digits": [3, 8], "validation": 0.1, "limit": 3000}}


@pytest.fixture(scope="module")
def threaded(tmp_path_factory):
    """THREADED trained without a stop with --threads 1, in a process of its own."""
    folder = tmp_path_factory.mktemp("threaded")
    cfg = write_yaml(folder / "threaded.yaml", THREADED)
    one = digitlab("train", cfg, "--threads", "1", "--runs-dir", folder / "runs", "--quiet")
    assert one.returncode == 0, one.stderr
    return cfg, Path(one.stdout.strip())


@pytest.mark.slow
@pytest.mark.parametrize("where,epoch", [("after-epoch", 1), ("mid-epoch", 2), ("before-checkpoint", 3)])
def test_a_bare_resume_continues_with_the_threads_the_run_started_with(threaded, tmp_path, kill_run, same_run,
                                                                       where, epoch):
    """Started with one BLAS thread and killed, a run resumed with a bare `--resume RUN` (from a shell that sets
    no thread variables) ends exactly as the uninterrupted one-thread run."""
    from digitlab.system.threads import LIMIT_VARIABLES, limits
    cfg, straight = threaded
    run = tmp_path / "run"
    env = {**{k: v for k, v in os.environ.items() if k not in LIMIT_VARIABLES}, **limits(1)}
    child = kill_run(cfg, run, where, epoch, env=env, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr
    started = json.loads((run / "run.json").read_text())
    assert started["blas_threads"] == "1"
    resumed = digitlab("train", "--resume", run)
    assert resumed.returncode == 0, resumed.stderr
    assert "warning" not in resumed.stderr
    same_run(run, straight)
    info = json.loads((run / "run.json").read_text())
    assert info["command"] == started["command"] and info["blas_threads"] == "1"
    assert [r["blas_threads"] for r in info["resumes"]] == ["1"]
    assert info["resumes"][0]["command"].endswith(f"--resume {run}")


@pytest.mark.slow
def test_a_different_thread_count_on_resume_is_allowed_with_a_warning(threaded, tmp_path, kill_run):
    cfg, _ = threaded
    run = tmp_path / "run"
    from digitlab.system.threads import limits
    env = {**os.environ, **limits(1)}
    child = kill_run(cfg, run, "after-epoch", 2, env=env, timeout=300)
    assert child.returncode == -signal.SIGKILL
    resumed = digitlab("train", "--resume", run, "--threads", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "warning: --threads 2: the run started with 1 BLAS thread;" in resumed.stderr
    assert json.loads((run / "run.json").read_text())["resumes"][0]["blas_threads"] == "2"


@pytest.mark.slow
def test_an_interrupted_then_resumed_run_keeps_its_story_in_run_json(tmp_path, monkeypatch):
    """run.json keeps the command that started the run, lists each resume (when, how, from which epoch), and
    drops the fields of a finished state (ended, signal) as soon as the run is running again."""
    # 30 epochs of 3000 images: still training when SIGINT comes after epoch 1, and quick to finish on resume
    cfg = write_tiny(tmp_path, epochs=30, data={"digits": [3, 8], "limit": 3000})
    proc = subprocess.Popen([sys.executable, "-m", "digitlab", "train", str(cfg), "--runs-dir", str(tmp_path / "runs"),
                             "--seed", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        rows = list((tmp_path / "runs").glob("*/metrics.csv"))
        if rows and len(rows[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    run = Path(out.strip().splitlines()[-1])
    stopped = json.loads((run / "run.json").read_text())
    assert stopped["status"] == "interrupted" and {"ended", "signal"} <= set(stopped)
    import digitlab.run.lifecycle as lifecycle
    original, seen = lifecycle._learner, []

    def learner_that_looks(*args, **kwargs):  # run.json as the resumed training starts
        seen.append(json.loads((run / "run.json").read_text()))
        return original(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "_learner", learner_that_looks)
    lifecycle.resume(run, quiet=True, progress=False)
    assert seen[0]["status"] == "running" and not {"ended", "signal", "error"} & set(seen[0])
    info = json.loads((run / "run.json").read_text())
    assert info["command"] == stopped["command"] and "--seed 3" in info["command"]
    assert info["resumes"][0]["from_epoch"] == stopped["epoch"]
    assert info["status"] == "complete" and "signal" not in info
