"""Finding runs (`digitlab runs`, `--where` on runs and compare) and the record that reproduces a run: run.json's
sweep, point, git_dirty and versions, the command line as a shell takes it back, git.diff for a dirty tree,
`digitlab reproduce`, and a stop rule's run that resumes to exactly the uninterrupted one."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import cli, digitlab, tiny

from digitlab.config import validate
from digitlab.run.callbacks import StopAfter
from digitlab.run.lifecycle import resume, start
from digitlab.runs.where import parse
from digitlab.system import environment
from digitlab.system.threads import LIMIT_VARIABLES

# The tiny config for three epochs, with dropout and a cosine schedule: a resumed run must restore both exactly.
TINY = tiny({"optimizer.schedule": "cosine"}, model=[{"linear": 16}, "relu", {"dropout": 0.2}, {"linear": 2}],
            loss="cross_entropy", epochs=3)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs/: a pruned sweep of four learning rates (one trains to the end), then two lone runs: Adam on 3 vs 8,
    and SGD on 1 vs 7."""
    root = tmp_path_factory.mktemp("find")
    (root / "base.yaml").write_text(yaml.safe_dump(TINY))
    (root / "s.yaml").write_text(yaml.safe_dump({
        "name": "s", "base": "base.yaml", "grid": {"optimizer.lr": [0.1, 0.03, 0.01, 0.003]},
        "prune": {"method": "asha", "min_epochs": 1, "reduction_factor": 4}}))
    assert cli("sweep", root / "s.yaml", "--runs-dir", root / "runs").exit_code == 0
    adam = validate({**TINY, "name": "adam", "optimizer": {"name": "adam", "lr": 0.003}})
    next_second()
    start(adam, runs_dir=root / "runs", quiet=True, progress=False)
    other = validate({**TINY, "name": "seven", "data": {**TINY["data"], "digits": [1, 7]}})
    next_second()
    start(other, runs_dir=root / "runs", quiet=True, progress=False)
    return root / "runs"


def next_second():
    """Wait into the next second: run.json's `started` is to the second, and the listing is tested newest first
    (on a quick machine a run can start in the second the sweep's last point did)."""
    time.sleep(1.01 - time.time() % 1)


def listed(*args) -> list[dict]:
    result = cli("runs", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_runs_lists_every_run_newest_first(runs):
    result = cli("runs", runs)
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.strip().splitlines()
    header = header.split()  # the config values that tell the runs apart come after the status
    assert header[:2] == ["name", "status"] and {"digits", "optimizer", "lr"} <= set(header[2:-6])
    assert header[-6:] == ["started", "epochs_done", "test_acc", "best_val", "sweep", "folder"]
    assert len(lines) == 6 and lines[0].startswith("seven-") and lines[1].startswith("adam-")
    rows = listed(runs)
    assert [r["started"] for r in rows] == sorted((r["started"] for r in rows), reverse=True)
    assert sorted(r["status"] for r in rows) == ["complete"] * 3 + ["pruned"] * 3
    sweep_rows = [r for r in rows if r["sweep"] == "s"]  # sweep and point come from run.json
    assert len(sweep_rows) == 4 and all(r["folder"].endswith("-" + r["point"]) for r in sweep_rows)
    assert all(r["sweep"] is None and r["point"] is None for r in rows if r not in sweep_rows)


@pytest.mark.parametrize("args, names", [
    (["--where", "status!=complete"], {"lr=0.03", "lr=0.01", "lr=0.003"}),
    (["--status", "pruned"], {"lr=0.03", "lr=0.01", "lr=0.003"}),
    (["--where", "optimizer=adam"], {"adam"}),
    (["--where", "digits=[1,7]"], {"seven"}),
    (["--where", "digits=38", "--where", "lr<=0.01", "--where", "epochs_done>=1"], {"adam", "lr=0.01", "lr=0.003"}),
    (["--where", "sweep=s", "--where", "epochs_done=3"], {"lr=0.1"}),  # the point promoted to the end
    (["--where", "lr=1e-1", "--where", "test_acc>0.5"], {"lr=0.1", "seven"}),
])
def test_where_filters_on_compare_columns(runs, args, names):
    rows = listed(runs, *args)
    assert {r["name"].rsplit("-", 1 if r["sweep"] else 2)[0] for r in rows} == names


def test_compare_takes_the_same_where(runs):
    result = cli("compare", runs, "--where", "optimizer=sgd", "--where", "status=complete", "--format", "json")
    assert result.exit_code == 0, result.output
    assert sorted(r["status"] for r in json.loads(result.stdout)) == ["complete", "complete"]
    none = cli("compare", runs, "--where", "lr>5")
    assert none.exit_code == 2 and "nothing to compare: no run meets --where lr>5" in none.output


@pytest.mark.parametrize("expression, message", [
    ("tst_acc>0.9", "unknown column 'tst_acc'; did you mean 'test_acc'?"),
    ("lr", "expected COLUMN OP VALUE"),
    ("lr<fast", "lr is a number; expected a number after <"),
    ("digits=[3,18]", "expected digits such as [3,8] or 38"),
    ("seed=", "no value after ="),
])
def test_a_bad_expression_is_one_line_naming_it_and_the_columns(runs, expression, message):
    for command in ("runs", "compare"):
        result = cli(command, runs, "--where", expression)
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert result.output.startswith(f"error: --where {expression!r}: {message}")
        assert "(the columns are: name, status, digits, arch," in result.output


def test_where_semantics():
    row = {"lr": 0.001, "dropout": "0.25/0.5", "digits": "38", "started": "2026-11-21T05:26:51Z", "test_acc": None}
    assert parse("lr=1e-3").matches(row) and parse("lr<0.01").matches(row) and not parse("lr>0.01").matches(row)
    assert parse("dropout<=0.5").matches(row) and not parse("dropout=0.25").matches(row)
    assert parse("digits=[3, 8]").matches(row) and not parse("digits=[8,3]").matches(row)
    assert parse("started>2026-11-21").matches(row) and parse("started<2026-11-22").matches(row)
    assert parse("started>2026").matches(row) and not parse("started<2026").matches(row)  # text, not 2026.0
    assert parse("name=1e-3").value == "1e-3"
    assert parse("test_acc!=0.9").matches(row) and not parse("test_acc<0.9").matches(row)
    assert parse("test_accuracy>0").column == "test_acc"


def test_a_damaged_run_is_listed_as_damaged(runs, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(next(runs.glob("adam-*")), copy)
    (copy / "metrics.csv").write_text("epoch,train_loss\n1,2,3\n")
    result = cli("runs", tmp_path)
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert " damaged " in result.stdout and "warning: " in result.stderr and "metrics.csv" in result.stderr


def test_runs_in_an_empty_folder_and_a_missing_one(tmp_path):
    assert cli("runs", tmp_path).exit_code == 0
    missing = cli("runs", tmp_path / "nope")
    assert missing.exit_code == 2 and missing.output == f"error: {tmp_path / 'nope'}: no such folder\n"


# -- the record -------------------------------------------------------------------------------------------------------
def test_run_json_records_the_sweep_point_git_state_and_versions(runs):
    lone = json.loads((next(runs.glob("adam-*")) / "run.json").read_text())
    assert lone["sweep"] is None and lone["point"] is None
    assert lone["git_dirty"] in (True, False, None)
    assert {"numpy", "click", "pyyaml", "matplotlib", "tqdm", "mnist"} <= set(lone["versions"])
    assert lone["versions"]["numpy"] == np.__version__


def test_a_dirty_tree_leaves_its_changes_in_git_diff_capped(tmp_path, monkeypatch):
    import digitlab.run.files as files
    import digitlab.run.lifecycle as lifecycle
    dirty = {**environment.environment(), "git_dirty": True}
    monkeypatch.setattr(lifecycle, "environment", lambda: dirty)
    monkeypatch.setattr(files, "uncommitted_changes", lambda: "diff --git a/x b/x\n+change\n" * 100)
    run = start(validate({**TINY, "epochs": 1}), run_dir=tmp_path / "whole", quiet=True, progress=False)
    assert (run / "git.diff").read_text() == "diff --git a/x b/x\n+change\n" * 100
    assert json.loads((run / "run.json").read_text())["git_diff"] == {"file": "git.diff", "bytes": 2700,
                                                                      "capped": False}
    from digitlab.run.console import Console
    from digitlab.run.folder import RunFolder
    capped = RunFolder.create_at(tmp_path / "capped")
    console = Console(quiet=True)
    console.attach(capped)
    monkeypatch.setattr(files, "DIFF_LIMIT", 1000)
    files.save_git_diff(capped, dirty, console)
    text = (capped / "git.diff").read_text()
    assert len(text) < 1100 and text.endswith("# digitlab: capped at 1,000 bytes; the changes were 2,700 bytes\n")
    assert json.loads((capped / "run.json").read_text())["git_diff"]["capped"] is True
    assert "git.diff: the uncommitted changes are 2.6 KB" in (capped / "log.txt").read_text()
    clean = RunFolder.create_at(tmp_path / "clean")
    files.save_git_diff(clean, {**dirty, "git_dirty": False}, console)
    assert not (clean / "git.diff").exists()


def test_a_command_line_with_bytes_that_are_not_utf8_is_recorded_as_bash_would_take_it_back(monkeypatch):
    """Python keeps such bytes as surrogates, which no UTF-8 file can hold: report.html was not written."""
    monkeypatch.setattr("sys.argv", ["/usr/bin/digitlab", "train", "x.yaml", "--name", "ab\udcffc d'é"])
    line = environment.command_line()
    assert line == "digitlab train x.yaml --name $'ab\\xffc d\\x27\\xc3\\xa9'"
    line.encode("utf-8")
    echoed = subprocess.run(["bash", "-c", f"printf %s {line.split(' ', 4)[4]}"], capture_output=True).stdout
    assert echoed == b"ab\xffc d'\xc3\xa9"


@pytest.mark.slow  # two trainings and a resume
def test_a_stopped_run_resumes_to_exactly_the_uninterrupted_one(tmp_path):
    cfg = validate(TINY)
    straight = start(cfg, run_dir=tmp_path / "straight", quiet=True, progress=False)
    paused = start(cfg, run_dir=tmp_path / "paused", quiet=True, progress=False, stop=StopAfter(1, "rung 1"))
    info = json.loads((paused / "run.json").read_text())
    assert info["status"] == "pruned" and info["pruned"] == "rung 1" and info["epoch"] == 1
    assert not (paused / "model.npz").exists() and (paused / "checkpoint.npz").is_file()
    resume(paused.path, quiet=True, progress=False)
    assert json.loads((paused / "run.json").read_text())["status"] == "complete"
    strip = [line.rsplit(",", 1)[0] for line in (paused / "metrics.csv").read_text().splitlines()]
    assert strip == [line.rsplit(",", 1)[0] for line in (straight / "metrics.csv").read_text().splitlines()]
    with np.load(paused / "model.npz") as a, np.load(straight / "model.npz") as b:
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.slow  # three trainings, each in a fresh process
def test_reproduce_matches_and_names_a_changed_blas_thread_count(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "epochs": 2}))
    trained = digitlab("train", config, "--threads", "1", "--runs-dir", tmp_path / "runs", "--quiet")
    assert trained.returncode == 0, trained.stderr
    run = Path(trained.stdout.strip())
    same = digitlab("reproduce", run, "--runs-dir", tmp_path / "again")
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.splitlines()[-1] == "metrics match (2 epochs, seconds aside)"
    copy = Path(same.stdout.splitlines()[0].rsplit(": ", 1)[1])
    assert json.loads((copy / "run.json").read_text())["reproduces"] == str(run)
    other = digitlab("reproduce", run, "--runs-dir", tmp_path / "again", "--threads", "2")
    assert "blas_threads 1 -> 2" in other.stdout.splitlines()[-1], other.stdout + other.stderr


def test_reproduce_says_how_metrics_differ_and_what_changed(runs, copy_run, tmp_path, monkeypatch):
    run = copy_run(next(runs.glob("adam-*")))
    lines = (run / "metrics.csv").read_text().splitlines()
    cells = lines[2].split(",")
    cells[1] = "9.999999"  # as if the original's epoch 2 had ended with another train loss
    (run / "metrics.csv").write_text("\n".join(lines[:2] + [",".join(cells)] + lines[3:]) + "\n")
    info = json.loads((run / "run.json").read_text())
    info.update(blas_threads="7", versions={**info["versions"], "numpy": "0.0.1"})
    (run / "run.json").write_text(json.dumps(info))
    for name in LIMIT_VARIABLES:  # restored after the test: reproduce --threads sets them in this process
        monkeypatch.setenv(name, "1")
    result = cli("reproduce", run, "--runs-dir", tmp_path / "again", "--threads", "3")
    assert result.exit_code == 1, result.output
    last = result.output.splitlines()[-1]
    assert last.startswith("metrics differ: 1 of 3 epochs, first at epoch 2: train_loss ")
    assert "9.999999 in the original" in last and "blas_threads 7 -> 3" in last
    assert f"numpy 0.0.1 -> {np.__version__}" in last


def test_reproduce_a_pruned_point_trains_as_far_as_it_got(runs, tmp_path):
    pruned = next(p for p in runs.glob("s/*") if '"pruned"' in (p / "run.json").read_text())
    result = cli("reproduce", pruned, "--runs-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("metrics match (1 epoch,")
    bad = cli("reproduce", tmp_path / "nope")
    assert bad.exit_code == 2 and bad.output.startswith("error: ")


def test_reproduce_refuses_a_run_whose_files_disagree_before_training(runs, tmp_path):
    """Before, an emptied metrics.csv was found out only after training the whole run again ('0 in the original')."""
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(next(runs.glob("adam-*")), copy)
    (copy / "metrics.csv").write_text("")
    result = cli("reproduce", copy, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and result.output.startswith(f"error: {copy / 'metrics.csv'}: damaged (holds 0 epoch")
    assert not (tmp_path / "runs").exists()


def test_runs_and_compare_do_not_load_the_training_and_plotting_code(runs):
    """Listing runs stays quick: reading run folders (agreement checks included) needs no matplotlib."""
    code = ("import sys\nfrom digitlab.cli import main\n"
            "for args in (['runs', sys.argv[1]], ['compare', sys.argv[1]]):\n"
            "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
            "print('matplotlib' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, str(runs)], capture_output=True, text=True)
    assert result.stderr.strip().splitlines()[-1] == "False", result.stderr
