"""Any path may be impossible to create or write: a runs folder under a regular file, a folder the user may not
write (tested as the unprivileged user `nobody`, since root ignores permissions), and a full disk (a small tmpfs
in a private mount namespace). Each is one line naming the path and the reason, in the command's own words, with
exit code 2 when the path was the user's argument and 1 when the machine failed a run that was going well. And a
relative data.path is saved absolute, so that the run evaluates from anywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import cli, tiny, train

from digitlab.run import layout

REPO = Path(__file__).resolve().parents[1]
DIGITLAB = Path(sys.executable).with_name("digitlab")
# The tiny config without its validation split and 2-unit layer, on 200 images, plain SGD: the full disk's size
# below is measured for the files it writes.
TINY = tiny({"data.limit": 200, "data.validation": 0.0}, model=[{"linear": 8}, "relu", {"linear": 1}, "sigmoid"],
            optimizer={"name": "sgd", "lr": 0.1})


def one_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


@pytest.fixture
def shared(tmp_path_factory):
    """A folder that every user may enter and write (pytest's own temporary folders are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="digitlab-paths-", dir="/tmp"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def config(shared) -> Path:
    path = shared / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    path.chmod(0o644)
    return path


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def nobody_env(shared: Path) -> dict[str, str]:
    """The environment for running digitlab as the user nobody from `shared`, with a home and cache of its own;
    skips the test unless this is root with setpriv and nobody can import digitlab with this Python. A clone in a
    private folder (a home of mode 0700, mktemp -d) keeps its venv and package from nobody: the probe runs
    `import digitlab` as nobody, from `shared`, with that environment, just as the command will be run."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a command as the unprivileged user nobody")
    home = shared / "home"
    home.mkdir(exist_ok=True)
    home.chmod(0o777)
    env = {**os.environ, "HOME": str(home), "DIGITLAB_CACHE": str(home / "cache")}
    probe = subprocess.run([*NOBODY, sys.executable, "-c", "import digitlab"], capture_output=True, text=True,
                           env=env, cwd=shared, timeout=120)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit code {probe.returncode}"])[-1]
        pytest.skip(f"the user nobody cannot import digitlab from {sys.executable} (is the venv or the package in "
                    f"a folder only its owner may enter?): {reason}")
    return env


def as_nobody(shared: Path, *args) -> subprocess.CompletedProcess:
    """digitlab ARGS as the user nobody (setpriv), with a cache and home of its own."""
    env = nobody_env(shared)
    return subprocess.run([*NOBODY, str(DIGITLAB), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=shared, timeout=300)


# -- a path under a regular file -----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "sweep"])
def test_runs_dir_under_a_regular_file(tmp_path, command):
    (tmp_path / "file").write_text("not a folder")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    target = config
    if command == "sweep":
        target = tmp_path / "s.yaml"
        target.write_text(yaml.safe_dump({"base": "tiny.yaml", "grid": {"optimizer.lr": [0.1]},
                                          "select": "test_accuracy"}))
    result = cli(command, target, "--runs-dir", tmp_path / "file" / "runs")
    assert result.exit_code == 2, result.output
    message = one_line(result.output)
    assert str(tmp_path / "file") in message and "Not a directory" in message and "--runs-dir" in message


def test_compare_plot_under_a_regular_file_is_the_users_path(tiny_run, tmp_path):
    (tmp_path / "file").write_text("x")
    result = cli("compare", tiny_run, "--plot", tmp_path / "file" / "p.png")
    assert result.exit_code == 2
    message = one_line(result.output)
    assert "cannot write the plot (--plot)" in message and "checkpoint" not in message


# -- permissions, as nobody ----------------------------------------------------------------------------------------
def test_train_and_sweep_into_a_runs_dir_nobody_may_write(shared, config):
    locked = shared / "locked"
    locked.mkdir(mode=0o755)  # root's, not writable by nobody
    result = as_nobody(shared, "train", config, "--runs-dir", locked)
    assert result.returncode == 2, result.stderr
    message = one_line(result.stderr)
    assert str(locked) in message and "Permission denied" in message and "--runs-dir" in message
    sweep = shared / "s.yaml"
    sweep.write_text(yaml.safe_dump({"base": "tiny.yaml", "grid": {"optimizer.lr": [0.1]}, "select": "test_accuracy"}))
    sweep.chmod(0o644)
    result = as_nobody(shared, "sweep", sweep, "--runs-dir", locked)
    assert result.returncode == 2 and "Permission denied" in one_line(result.stderr)
    assert list(locked.iterdir()) == []


def test_compare_plot_and_bench_json_into_a_folder_nobody_may_write(shared, tiny_run):
    run = Path(shutil.copytree(tiny_run, shared / "runs" / tiny_run.name))
    subprocess.run(["chmod", "-R", "a+rX", str(shared / "runs")], check=True)
    locked = shared / "locked"
    locked.mkdir(mode=0o755)
    result = as_nobody(shared, "compare", run, "--plot", locked / "p.png")
    assert result.returncode == 2 and "tiny" in result.stdout  # the table is printed; the plot is refused
    assert "cannot write the plot (--plot)" in one_line(result.stderr)
    result = as_nobody(shared, "bench", "--task", "3v8", "--epochs", "1", "--limit", "100", "--no-peers",
                       "--json", locked / "b.json")
    assert result.returncode == 2 and "--json" in one_line(result.stderr) and "Permission denied" in result.stderr
    assert "s/epoch" not in result.stderr  # refused before any timing


def test_a_run_folder_made_read_only_mid_run_fails_with_one_line(shared, config):
    """nobody trains; after epoch 1 its run folder becomes read-only (root takes it over): the run stops with one
    line naming the file, exit code 1, and its last checkpoint is intact."""
    runs = shared / "runs"
    runs.mkdir()
    runs.chmod(0o777)
    slow = shared / "slow.yaml"
    slow.write_text(yaml.safe_dump({**TINY, "epochs": 200, "data": {"digits": [3, 8], "limit": 3000}}))
    slow.chmod(0o644)
    env = nobody_env(shared)
    proc = subprocess.Popen([*NOBODY, str(DIGITLAB), "train", str(slow), "--runs-dir", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=shared)
    import time
    deadline = time.time() + 120
    metrics = []
    while time.time() < deadline and proc.poll() is None:
        metrics = list(runs.glob("*/metrics.csv"))
        if metrics and len(metrics[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    if not metrics:  # it ended, or never finished an epoch: say how, rather than fail on an empty list
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"nobody's run wrote no epoch (exit code {proc.returncode}): {err.strip()[-500:]}")
    run = metrics[0].parent
    # the folder first: from then on nobody can create, rename or remove a file in it; then what is inside, where
    # a temporary file may vanish between chown's listing and its chown (so "No such file" is no failure)
    subprocess.run(["chown", "root:root", str(run)], check=True)
    run.chmod(0o755)
    subprocess.run(["chown", "-R", "root:root", str(run)], capture_output=True)
    assert run.stat().st_uid == 0
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    message = one_line(err)
    assert str(run) in message and "Permission denied" in message and "checkpoint is intact" in message
    from digitlab.run import checkpoint
    assert checkpoint.load(run / layout.CHECKPOINT).epoch >= 1


# -- a full disk ---------------------------------------------------------------------------------------------------
def in_small_tmpfs(folder: Path, size: str, command: str) -> subprocess.CompletedProcess:
    """A shell command with a tmpfs of `size` mounted on `folder`, in a mount namespace of its own."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to mount a small tmpfs")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=16k none {folder}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.strip()}")
    return subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size={size} none {folder} && {command}"],
                          capture_output=True, text=True, timeout=300)


def test_a_full_disk_ends_the_run_with_one_line_and_status_failed(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny(outputs="full")))
    disk = tmp_path / "disk"
    disk.mkdir()
    # 124 kB: config, run.json, splits, layer health and the first checkpoints fit; the figures at the end do not.
    # GIT_DIR points nowhere, so the run keeps no git.diff and the test does not depend on the tree's changes.
    result = in_small_tmpfs(disk, "124k", f"GIT_DIR={tmp_path}/no-git {DIGITLAB} train {config} --runs-dir "
                                          f"{disk}/runs; echo exit=$?; "
                                          f"cat {disk}/runs/*/run.json")
    assert "exit=1" in result.stdout, (result.stdout, result.stderr)
    message = one_line(result.stderr)
    assert "No space left on device" in message and str(disk) in message
    info = json.loads(result.stdout.split("exit=1", 1)[1])
    assert info["status"] == "failed"


def test_compare_plot_onto_a_full_disk(tiny_run, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    result = in_small_tmpfs(disk, "4k", f"{DIGITLAB} compare {tiny_run} --plot {disk}/p.png")
    assert result.returncode == 2, result.stderr
    assert "No space left on device" in one_line(result.stderr)


# -- a relative data.path --------------------------------------------------------------------------------------------
def test_relative_data_path_is_saved_absolute_and_evaluate_works_elsewhere(tmp_path, fake_idx_folder, monkeypatch):
    folder = fake_idx_folder(n_train=60, n_test=30)
    monkeypatch.chdir(folder.parent)
    run, _ = train(tiny(data={"digits": [3, 8], "path": folder.name}, epochs=1), tmp_path / "runs", "--quiet")
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["path"] == str(folder)
    monkeypatch.chdir(tmp_path / "runs")
    assert cli("evaluate", run).exit_code == 0
