"""`digitlab train` and `digitlab evaluate` end to end, on small slices of the real MNIST (data.limit, 2 epochs,
tiny layers): the run folder and every file in it, what the console shows (sizes, warnings), scoring the test set
once, one-line errors with exit code 2, determinism per seed, and exclusive run folders."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import cli, digitlab, tiny, train

from digitlab.config import load_config
from digitlab.run.folder import METRICS_COLUMNS, RunFolder
from digitlab.run.view import evaluate_run

HEADER = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,test_loss,test_accuracy,lr,seconds"

# The course network, shrunk: 784-16-2-1 with dropout, 3 vs 8, a validation split and a schedule.
SMALL_3V8 = {
    "name": "tiny3v8",
    "seed": 0,
    "data": {"digits": [3, 8], "validation": 0.1, "limit": 500},
    "model": [{"linear": 16}, "relu", {"dropout": 0.1}, {"linear": 2}, {"linear": 1}, "sigmoid"],
    "loss": "bce",
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "schedule": "cosine"},
    "epochs": 2,
    "batch_size": 50,
}
# Three digits, cross-entropy on logits, Adam, no validation and no 2-unit layer.
SMALL_3WAY = {
    "name": "tiny179",
    "data": {"digits": [1, 7, 9], "limit": 400},
    "model": [{"linear": 8}, "relu", {"linear": 3}],
    "loss": "cross_entropy",
    "optimizer": {"name": "adam", "lr": 0.01},
    "epochs": 2,
    "batch_size": 32,
}
TEST_SIZES = {"tiny3v8": 1984, "tiny179": 1135 + 1028 + 1009}


def config_file(folder: Path, cfg: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The 3-vs-8 config trained with seeds 0, 0 and 1, and the 3-digit config once. The second and third runs draw
    no figures (outputs: light): they are compared by their numbers, which figures must not change."""
    base = tmp_path_factory.mktemp("cli")
    config = config_file(base / "configs", SMALL_3V8)
    out = {}
    out["a"], out["a_result"] = train(config, base / "runs")
    out["b"], _ = train(config, base / "runs", "--set", "outputs=light")
    out["c"], _ = train(config, base / "runs", "--seed", "1", "--set", "outputs=light")
    out["plain"], out["plain_result"] = train(config_file(base / "configs", SMALL_3WAY), base / "runs")
    out["runs_dir"] = base / "runs"
    return out


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


# -- the run folder ------------------------------------------------------------------------------------------------
def test_last_stdout_line_is_a_new_run_folder(runs):
    run = runs["a"]
    assert run.is_dir() and run.parent == runs["runs_dir"]
    assert run.name.startswith("tiny3v8-")
    assert len({runs["a"], runs["b"], runs["c"], runs["plain"]}) == 4


@pytest.mark.parametrize("which", ["a", "plain"])
def test_run_folder_holds_every_file(runs, which):
    run = runs[which]
    expected = {"config.yaml", "run.json", "metrics.csv", "summary.json", "confusion.csv", "confusion.png",
                "curves.png", "mistakes.png", "model.npz", "log.txt"}
    present = {p.name for p in run.iterdir()}
    assert expected <= present, expected - present
    assert ("embedding.png" in present) == (which == "a")  # only the model with a 2-unit layer
    assert not [name for name in present if name.endswith(".tmp")]  # no half-written files left behind
    for name in ("confusion.png", "curves.png", "mistakes.png") + (("embedding.png",) if which == "a" else ()):
        data = (run / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000, name


def test_run_json(runs):
    info = json.loads((runs["a"] / "run.json").read_text())
    assert info["status"] == "complete"
    assert info["seed"] == 0
    for key in ("started", "ended", "command", "python", "numpy", "digitlab", "host", "heartbeat"):
        assert info.get(key), key
    assert info["numpy"] == np.__version__
    assert json.loads((runs["c"] / "run.json").read_text())["seed"] == 1
    assert RunFolder(runs["a"]).status() == "complete"


def test_config_yaml_is_the_resolved_config(runs, tmp_path):
    saved = yaml.safe_load((runs["a"] / "config.yaml").read_text())
    assert saved["seed"] == 0 and saved["name"] == "tiny3v8"
    assert saved["optimizer"]["nesterov"] is False and saved["optimizer"]["weight_decay"] == 0.0  # defaults filled
    assert saved["data"]["path"] is None and saved["data"]["limit"] == 500
    assert saved == load_config(config_file(tmp_path, SMALL_3V8))
    assert yaml.safe_load((runs["c"] / "config.yaml").read_text())["seed"] == 1


def test_metrics_csv_with_validation(runs):
    text = (runs["a"] / "metrics.csv").read_text()
    assert text.splitlines()[0] == HEADER == ",".join(METRICS_COLUMNS)
    rows = read_csv(runs["a"] / "metrics.csv")[1:]
    assert [r[0] for r in rows] == ["1", "2"]
    for row in rows:
        assert len(row) == 9 and all(cell != "" for cell in row)
        values = [float(cell) for cell in row]
        assert all(0 <= values[i] <= 1 for i in (2, 4, 6)) and all(values[i] > 0 for i in (1, 3, 5, 7, 8))
    assert float(rows[-1][6]) > 0.8  # it learned: 3 vs 8 from 500 images
    lrs = [float(row[7]) for row in rows]  # the cosine schedule's lr at each epoch's last batch, falling from 0.1
    assert 0.1 > lrs[0] > lrs[1] > 0


def test_metrics_csv_without_validation_has_empty_val_columns(runs):
    lines = (runs["plain"] / "metrics.csv").read_text().splitlines()
    assert lines[0] == HEADER and len(lines) == 3
    for row in read_csv(runs["plain"] / "metrics.csv")[1:]:
        assert row[3] == "" and row[4] == ""
        assert row[1] and row[2] and row[5] and row[6] and row[8]
        assert float(row[7]) == 0.01  # Adam's constant lr


@pytest.mark.parametrize("which", ["a", "plain"])
def test_summary_json(runs, which):
    run = runs[which]
    summary = json.loads((run / "summary.json").read_text())
    for key in ("test_accuracy", "test_loss", "train_accuracy", "epochs", "seconds", "params", "dataset_sizes",
                "classes", "precision", "recall"):
        assert key in summary, key
    cfg = SMALL_3V8 if which == "a" else SMALL_3WAY
    classes = cfg["data"]["digits"]
    assert summary["classes"] == classes and summary["epochs"] == 2
    assert set(summary["precision"]) == set(summary["recall"]) == {str(c) for c in classes}
    rows = read_csv(run / "metrics.csv")[1:]
    assert summary["test_accuracy"] == pytest.approx(float(rows[-1][6]), abs=1e-6)
    assert summary["train_accuracy"] == pytest.approx(float(rows[-1][2]), abs=1e-6)
    assert summary["test_loss"] == pytest.approx(float(rows[-1][5]), abs=1e-6)
    if which == "a":
        assert summary["params"] == 784 * 16 + 16 + 16 * 2 + 2 + 2 * 1 + 1
        assert summary["dataset_sizes"] == {"train": 450, "val": 50, "test": 1984}  # limit before the split
        val_accuracy = [float(r[4]) for r in rows]
        assert summary["best_epoch"] == 1 + int(np.argmax(val_accuracy))
    else:
        assert summary["params"] == 784 * 8 + 8 + 8 * 3 + 3
        assert summary["dataset_sizes"] == {"train": 400, "val": 0, "test": TEST_SIZES["tiny179"]}
        assert "best_epoch" not in summary


@pytest.mark.parametrize("which", ["a", "plain"])
def test_confusion_csv(runs, which):
    run = runs[which]
    summary = json.loads((run / "summary.json").read_text())
    table = read_csv(run / "confusion.csv")
    classes = [str(c) for c in summary["classes"]]
    assert table[0] == ["true\\predicted"] + classes
    assert [row[0] for row in table[1:]] == classes
    counts = np.array([[int(v) for v in row[1:]] for row in table[1:]])
    assert counts.sum() == TEST_SIZES[summary["name"]] == summary["dataset_sizes"]["test"]
    assert np.trace(counts) / counts.sum() == pytest.approx(summary["test_accuracy"])
    for i, c in enumerate(classes):
        assert counts[i, i] / counts[i].sum() == pytest.approx(summary["recall"][c], abs=1e-6)
        assert counts[i, i] / counts[:, i].sum() == pytest.approx(summary["precision"][c], abs=1e-6)


def test_model_npz_loads_without_pickle(runs):
    with np.load(runs["a"] / "model.npz", allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    assert arrays["0.weight"].shape == (784, 16) and arrays["0.bias"].shape == (16,)
    assert arrays["3.weight"].shape == (16, 2) and arrays["4.weight"].shape == (2, 1)  # sigmoid: the loss's head
    assert all(a.dtype == np.float32 for name, a in arrays.items() if name[0].isdigit())
    meta = json.loads(str(arrays["__architecture__"]))
    assert meta["layers"][-1] == "sigmoid" and meta["classes"] == [3, 8]


def test_log_txt_is_what_the_console_showed(runs):
    shown = runs["a_result"].stdout.splitlines()
    log = (runs["a"] / "log.txt").read_text().splitlines()
    assert log == shown[:-1]  # all but the run folder's path, printed last
    assert sum(line.startswith("epoch ") for line in log) == 2
    assert any("val loss" in line for line in log) and log[-1].startswith("test accuracy")
    assert "450 train / 50 val / 1984 test images" in runs["a_result"].output  # the limit, then the split
    assert not any("val loss" in line for line in runs["plain_result"].stdout.splitlines())


def test_evaluate_reproduces_the_summary(runs):
    for which in ("a", "plain"):
        summary = json.loads((runs[which] / "summary.json").read_text())
        result = evaluate_run(runs[which])
        assert result["test_accuracy"] == summary["test_accuracy"]
        assert result["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-6)
    evaluated = cli("evaluate", runs["a"])
    assert evaluated.exit_code == 0, evaluated.output
    summary = json.loads((runs["a"] / "summary.json").read_text())
    assert f"test_accuracy {summary['test_accuracy']:.6f}" in evaluated.stdout


def test_a_batch_larger_than_the_training_set_is_a_warning(tmp_path):
    run, result = train(tiny(name="big", batch_size=5000, epochs=1, outputs="light"), tmp_path / "runs")
    assert "warning: batch_size 5000 is larger than the 270 training images" in result.stderr
    assert "warning: batch_size 5000" in (run / "log.txt").read_text()


def test_test_every_epoch_false_scores_the_test_set_once(tmp_path):
    """The teacher's option: the test set is scored once, at the end, so that no epoch is picked by its score."""
    run, result = train(tiny(name="teach", test_every_epoch=False, outputs="light"), tmp_path / "runs")
    rows = read_csv(run / "metrics.csv")
    column = rows[0].index("test_accuracy")
    assert [r[column] for r in rows[1:]] == ["", ""] and all(r[rows[0].index("val_accuracy")] for r in rows[1:])
    assert "test loss" not in result.output.split("test accuracy")[0]  # no test score before the end
    summary = json.loads((run / "summary.json").read_text())
    assert 0.5 < summary["test_accuracy"] <= 1
    table = cli("compare", run, "--format", "json")
    assert json.loads(table.stdout)[0]["test_acc"] == summary["test_accuracy"]


# -- determinism ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["a", "plain"])
def test_outputs_are_made_again_from_the_saved_folder(runs, which, tmp_path):
    """Every end-of-run output is a function of the folder: made again from a copy of it (config.yaml,
    metrics.csv, splits.npz, model.npz), the text outputs are byte-identical and the figures are there."""
    import shutil

    from digitlab.run.outputs import OUTPUTS, write_outputs
    from digitlab.run.view import RunView
    copy = tmp_path / "copy"
    shutil.copytree(runs[which], copy)
    made = {name: (copy / name) for name in OUTPUTS if (copy / name).exists()}
    for path in made.values():
        path.unlink()
    written = write_outputs(RunFolder.open(copy), RunView(RunFolder.open(copy)))
    assert set(written) == set(made)
    for name in ("summary.json", "confusion.csv"):
        assert (copy / name).read_bytes() == (runs[which] / name).read_bytes(), name
    for name in written:
        assert (copy / name).stat().st_size > 0


def without_seconds(path: Path) -> list[list[str]]:
    rows = read_csv(path)
    assert rows[0][-1] == "seconds"
    return [row[:-1] for row in rows]


def test_same_seed_gives_identical_metrics_and_weights(runs):
    a, b = runs["a"], runs["b"]
    assert without_seconds(a / "metrics.csv") == without_seconds(b / "metrics.csv")
    with np.load(a / "model.npz") as wa, np.load(b / "model.npz") as wb:
        for name in wa.files:
            np.testing.assert_array_equal(wa[name], wb[name])
    assert (a / "confusion.csv").read_bytes() == (b / "confusion.csv").read_bytes()


def test_different_seed_gives_different_metrics(runs):
    assert without_seconds(runs["a"] / "metrics.csv") != without_seconds(runs["c"] / "metrics.csv")


# -- errors --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    (["--set", "optimizer.lr=-1"], "optimizer.lr: expected a number > 0, got -1"),
    (["--set", "data.validaton=0.2"], "data.validaton: unknown key; did you mean 'validation'?"),
    (["--set", "model.2.dropout=1.5"], "model.2.dropout: expected a number in [0, 1)"),
    (["--set", "loss=cross_entropy"], "needs 2 (one per digit)"),
    (["--set", "data.digits=[3]"], "data.digits: expected at least two distinct digits"),
    (["--set", "optimizer.lr"], "--set: optimizer.lr: expected KEY=VALUE"),
    (["--set", "model.9.dropout=0.3"], "--set: model.9: expected a position from 0 to 5"),
    (["--set", "data.path=/nonexistent/mnist"], "/nonexistent/mnist: data.path is not a folder"),
])
def test_bad_config_exits_2_with_one_line(args, expected, tmp_path):
    config = config_file(tmp_path / "configs", SMALL_3V8)
    runs_dir = tmp_path / "runs"
    result = cli("train", config, "--runs-dir", runs_dir, *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert not runs_dir.exists() or not any(runs_dir.iterdir())  # refused before any run folder


def test_missing_config_and_missing_run(tmp_path):
    result = cli("train", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and result.stderr.strip() == f"error: {tmp_path / 'nope.yaml'}: file not found"
    result = cli("evaluate", tmp_path)
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1 and "not a run folder" in result.stderr


def test_bad_config_in_a_real_process(tmp_path):
    config = config_file(tmp_path, {**SMALL_3V8, "optimizer": {"name": "sgd", "lr": 0}})
    proc = digitlab("train", config, "--runs-dir", tmp_path / "r", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == f"error: {config}: optimizer.lr: expected a number > 0, got 0\n"
    assert "Traceback" not in proc.stdout + proc.stderr


# -- exclusive run folders -----------------------------------------------------------------------------------------
@pytest.mark.slow  # two trainings in processes of their own
def test_concurrent_runs_with_the_same_name_never_share_a_folder(tmp_path):
    config = config_file(tmp_path, {**SMALL_3WAY, "data": {"digits": [1, 7, 9], "limit": 100}, "epochs": 1})
    command = [sys.executable, "-m", "digitlab", "train", str(config), "--runs-dir", str(tmp_path / "runs"),
               "--name", "same", "--quiet"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    folders = [Path(out.strip()) for out, _ in outputs]
    assert all(len(out.splitlines()) == 1 for out, _ in outputs)  # --quiet: only the run folder
    assert folders[0] != folders[1] and all(f.name.startswith("same-") for f in folders)
    assert sorted(folders) == sorted((tmp_path / "runs").iterdir())
    for folder in folders:
        assert json.loads((folder / "run.json").read_text())["status"] == "complete"
        assert len((folder / "metrics.csv").read_text().splitlines()) == 2


def test_run_folder_create_is_exclusive_under_contention(tmp_path):
    made, barrier = [], threading.Barrier(8)

    def create():
        barrier.wait()
        made.append(RunFolder.create(tmp_path, "same").path)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == len(set(made)) == 8
    assert sorted(made) == sorted(tmp_path.iterdir())


# -- data.path -----------------------------------------------------------------------------------------------------
def test_train_and_evaluate_on_idx_files_in_data_path(tmp_path, fake_idx_folder):
    folder = fake_idx_folder(n_train=60, n_test=30)  # labels cycle 0..9: 12 train and 6 test images of 3 and 8
    config = config_file(tmp_path, {**SMALL_3V8, "data": {"digits": [3, 8], "path": str(folder)}, "epochs": 1,
                                   "batch_size": 5})
    run, _ = train(config, tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset_sizes"] == {"train": 12, "val": 0, "test": 6}
    assert evaluate_run(run)["test_accuracy"] == summary["test_accuracy"]
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes((folder / "t10k-images-idx3-ubyte.gz").read_bytes()[:100])
    result = cli("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert f"{folder / 't10k-images-idx3-ubyte.gz'}: cannot be read or decompressed" in result.stderr


def test_dry_run_prints_the_summary_splits_and_memory_and_writes_nothing(tmp_path):
    config = config_file(tmp_path, SMALL_3V8)
    result = cli("train", config, "--runs-dir", tmp_path / "runs", "--dry-run")
    assert result.exit_code == 0, result.output
    out = result.output
    assert 'Model: "tiny3v8"' in out and "Layer (type)" in out
    assert "0 linear (Linear(units=16, init=he, bias=True, lr_scale=1))" in out
    assert "(None, 16)" in out and "12,560" in out  # 784 * 16 + 16
    assert "Total params: 12,597" in out  # + 16 * 2 + 2 + 2 * 1 + 1
    assert "splits: 450 train / 50 val / 1984 test images" in out and "memory: about" in out
    assert not (tmp_path / "runs").exists()


def test_the_run_starts_with_the_model_summary_and_ends_with_chance_in_the_summary(runs):
    log = (runs["a"] / "log.txt").read_text()
    assert "Layer (type)" in log and "Total params: 12,597" in log
    chance = json.loads((runs["a"] / "summary.json").read_text())["chance"]
    assert chance == {"majority": 1010 / 1984, "uniform": 0.5}  # 1010 threes, 974 eights in the test set


def test_train_metrics_on_a_fixed_subset_said_in_the_summary(runs, tmp_path):
    config = config_file(tmp_path, {**SMALL_3V8, "name": "subset", "data": {"digits": [3, 8], "limit": 600},
                                   "train_eval": 100, "epochs": 1})
    run, result = train(config, tmp_path / "runs")
    assert "train metrics on a fixed 100 of the 600 training images" in result.output
    assert json.loads((run / "summary.json").read_text())["train_eval"] == {"images": 100, "of": 600}
    # by default, as many as the test split holds (1984 images): all of a 450-image training split
    assert "train metrics on" not in runs["a_result"].output
    assert json.loads((runs["a"] / "summary.json").read_text())["train_eval"] == {"images": 450, "of": 450}
