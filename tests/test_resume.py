"""Runs that survive: SIGKILL at known points then --resume equals a run that never stopped; SIGINT/SIGTERM
stop cleanly with exit 130/143; a diverging run stops with status `diverged`; failed writes end with one line
and leave the last checkpoint valid."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from digitlab import checkpoint
from digitlab.cli import main
from digitlab.config import load_config
from digitlab.errors import StorageError
from digitlab.learner import Callback
from digitlab.run import start as train
from digitlab.runs import RunFolder

CONFIG = {
    "name": "tiny", "seed": 3,
    "data": {"digits": [3, 8], "validation": 0.1, "limit": 1500},
    "model": [{"linear": 32}, "relu", {"dropout": 0.2}, {"linear": 1}, "sigmoid"],
    "loss": "bce",
    "optimizer": {"name": "adam", "lr": 0.003, "schedule": "cosine"},
    "epochs": 5, "batch_size": 50,
}

# A child process that trains and SIGKILLs itself at a chosen point: after an epoch is fully recorded, in the
# middle of an epoch, or after a metrics row was written but before that epoch's checkpoint.
KILLER = r"""
import os, signal, sys
from digitlab.config import load_config
from digitlab.run import start as train
from digitlab.run.callbacks import RunWriter
from digitlab.learner import Callback
config, run_dir, where, epoch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
die = lambda: os.kill(os.getpid(), signal.SIGKILL)

class Kill(Callback):
    def on_epoch_end(self, e, logs):
        if where == "after-epoch" and e == epoch:
            die()
    def on_batch_end(self, batch, logs):
        if where == "mid-epoch" and self.learner.epoch == epoch and batch == 7:
            die()

if where == "before-checkpoint":
    save = RunWriter.save_checkpoint
    def patched(self, e):
        if e == epoch:
            die()
        save(self, e)
    RunWriter.save_checkpoint = patched
train(load_config(config), run_dir=run_dir, quiet=True, callbacks=[Kill()])
"""


def metrics_without_seconds(run: Path) -> list[str]:
    return [line.rsplit(",", 1)[0] for line in (run / "metrics.csv").read_text().splitlines()]


def weights(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "model.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files if k != "__architecture__"}


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The same config trained without interruption."""
    folder = tmp_path_factory.mktemp("straight")
    cfg_path = folder / "tiny.yaml"
    import yaml
    cfg_path.write_text(yaml.safe_dump(CONFIG))
    return train(load_config(cfg_path), run_dir=folder / "run", quiet=True).path, cfg_path


@pytest.mark.parametrize("where,epoch", [("after-epoch", 2), ("mid-epoch", 3), ("before-checkpoint", 2),
                                         ("mid-epoch", 1)])
def test_sigkill_then_resume_equals_an_uninterrupted_run(straight_run, tmp_path, where, epoch):
    straight, cfg_path = straight_run
    run = tmp_path / "run"
    child = subprocess.run([sys.executable, "-c", KILLER, str(cfg_path), str(run), where, str(epoch)],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "running"  # what a killed process leaves behind...
    from digitlab.runs import RunFolder
    assert RunFolder(run).status() == "crashed"  # ...is read as crashed: no process holds its lock

    result = CliRunner().invoke(main, ["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(run)
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    assert metrics_without_seconds(run) == metrics_without_seconds(straight)
    a, b = weights(run), weights(straight)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_resume_refuses_a_complete_run_and_a_changed_config(straight_run, tmp_path):
    straight, _ = straight_run
    result = CliRunner().invoke(main, ["train", "--resume", str(straight)])
    assert result.exit_code == 2 and "complete already" in result.output


def write_tiny(tmp_path, **changes) -> Path:
    import yaml
    cfg = {**CONFIG, **changes}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


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
    assert checkpoint.load(run / checkpoint.NAME).epoch == done == info["epoch"]


def test_diverging_run_stops_with_status_and_hint(tmp_path):
    cfg = write_tiny(tmp_path, optimizer={"name": "sgd", "lr": 50.0, "momentum": 0.9}, loss="mse",
                     model=[{"linear": 32}, "relu", {"linear": 1}])
    result = CliRunner().invoke(main, ["train", str(cfg), "--runs-dir", str(tmp_path / "runs")])
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
        if Path(dst).name == checkpoint.NAME:
            saved.append(dst)
            if len(saved) == 3:  # epoch 0 and epoch 1 are written; epoch 2's write finds the disk full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    cfg = write_tiny(tmp_path)
    result = CliRunner().invoke(main, ["train", str(cfg), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 1
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("error: ") and checkpoint.NAME in message and "No space left" in message
    run = next((tmp_path / "runs").iterdir())
    assert checkpoint.load(run / checkpoint.NAME).epoch == 1
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
        train(load_config(write_tiny(tmp_path)), run_dir=tmp_path / "run", quiet=True, callbacks=[remover])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_a_storage_error(tmp_path):
    class MakeReadOnly(Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                os.chmod(tmp_path / "run", 0o555)

    try:
        with pytest.raises(StorageError, match="Permission denied"):
            train(load_config(write_tiny(tmp_path)), run_dir=tmp_path / "run", quiet=True, callbacks=[MakeReadOnly()])
        assert checkpoint.load(tmp_path / "run" / checkpoint.NAME).epoch == 1
    finally:
        os.chmod(tmp_path / "run", 0o755)


def test_a_live_run_cannot_be_resumed_twice(tmp_path):
    from digitlab.runs import RunFolder

    class TryResume(Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                self.result = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "run")])

    probe = TryResume()
    train(load_config(write_tiny(tmp_path)), run_dir=tmp_path / "run", quiet=True, callbacks=[probe])
    assert probe.result.exit_code == 2 and "another process" in probe.result.output
    assert RunFolder(tmp_path / "run").status() == "complete"
