"""digitlab compare: runs side by side (the differing config columns and the metrics), sorting, the four
formats, seed groups and their aligned tables, a CNN's architecture, the overlay plot, statuses of unfinished runs,
and warnings for folders that are not runs.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import statistics
from pathlib import Path

import pytest
import yaml
from conftest import cli, tiny

from digitlab.config import load_config, validate
from digitlab.run.folder import RunFolder
from digitlab.run.lifecycle import start as train
from digitlab.runs.collect import collect
from digitlab.runs.columns import architecture, legend_labels
from digitlab.runs.table import table
from digitlab.sweep import load_sweep, run_sweep

REPO = Path(__file__).resolve().parent.parent
# The tiny config with a 784-16-2 network on cross-entropy (the logistic regression beside it differs in loss too).
TINY = tiny(model=[{"linear": 16}, "relu", {"linear": 2}], loss="cross_entropy")
CNN = tiny(name="cnn", loss="cross_entropy", epochs=1,
           model=[{"conv2d": {"filters": 4, "kernel": 3}}, "relu", {"maxpool2d": 2}, "flatten", {"linear": 2}])
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A sweep of two learning rates x two seeds (4 runs), and a logistic regression and a CNN trained on their own
    into one folder."""
    root = tmp_path_factory.mktemp("compare")
    (root / "base.yaml").write_text(yaml.safe_dump(TINY))
    (root / "lr.yaml").write_text(yaml.safe_dump({"name": "lr", "base": "base.yaml",
                                                  "grid": {"optimizer.lr": [0.1, 0.05]}, "seeds": [0, 1]}))
    run_sweep(load_sweep(root / "lr.yaml"), root / "runs", echo=lambda line: None)
    logreg = validate({**TINY, "name": "logreg", "model": [{"linear": 1}, "sigmoid"], "loss": "bce"})
    alone = train(logreg, runs_dir=root / "single", quiet=True, progress=False).path
    train(validate(CNN), runs_dir=root / "single", quiet=True, progress=False)
    return root / "runs" / "lr", alone


def invoke(*args):
    return cli("compare", *args)


def parse_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_a_sweep_folder_shows_its_points_with_the_differing_columns_and_writes_the_plot(runs):
    sweep_dir, _ = runs
    (sweep_dir / "compare.png").unlink(missing_ok=True)
    result = invoke(sweep_dir)
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.strip().splitlines()
    assert header.split() == ["name", "status", "lr", "seed", "epochs_done", "train_acc", "test_acc", "best_val",
                              "seconds"]
    assert len(rows) == 4 and all(" complete " in row for row in rows)
    assert (sweep_dir / "compare.png").read_bytes()[:8] == PNG
    assert result.stderr.strip() == f"plot: {sweep_dir / 'compare.png'}"


def test_all_columns_and_the_architecture_in_short(runs):
    sweep_dir, alone = runs
    rows = parse_csv(invoke(sweep_dir, alone, "--all-columns", "--format", "csv").stdout)
    assert list(rows[0])[:5] == ["name", "status", "digits", "arch", "params"]
    assert [r["arch"] for r in rows] == ["784-16-2"] * 4 + ["784-1"]
    assert [r["params"] for r in rows] == ["12594"] * 4 + ["785"]
    assert {r["digits"] for r in rows} == {"38"} and {r["optimizer"] for r in rows} == {"sgd"}
    assert rows[-1]["dropout"] == "none" and rows[-1]["epochs_done"] == "2"
    # Without --all-columns only what differs: the loss and architecture do, the digits do not.
    differing = parse_csv(invoke(sweep_dir, alone, "--format", "csv").stdout)
    assert {"arch", "params", "loss", "lr", "seed"} <= set(differing[0]) and "digits" not in differing[0]


def test_architecture_of_the_course_network():
    assert architecture(load_config(REPO / "configs" / "3v8.yaml")) == ("784-100-100-2-1", 88805)


def test_formats_carry_the_same_numbers(runs):
    sweep_dir, _ = runs
    as_json = json.loads(invoke(sweep_dir, "--format", "json").stdout)
    as_csv = parse_csv(invoke(sweep_dir, "--format", "csv").stdout)
    markdown = invoke(sweep_dir, "--format", "markdown").stdout.splitlines()
    assert len(as_json) == len(as_csv) == 4 and len(markdown) == 6
    assert markdown[0].startswith("| name | status | lr | seed |") and markdown[1].startswith("| --- |")
    for row, line in zip(as_json, as_csv):
        summary = json.loads((Path(row["path"]) / "summary.json").read_text())
        assert row["test_acc"] == summary["test_accuracy"] == float(line["test_acc"])
        assert row["train_acc"] == summary["train_accuracy"] and row["best_val"] == summary["best_val_accuracy"]
        assert row["epochs_done"] == 2 and row["status"] == "complete"


def test_sort_puts_the_best_accuracy_first_and_other_columns_ascending(runs):
    sweep_dir, alone = runs
    by_test = [r["test_acc"] for r in json.loads(invoke(sweep_dir, alone, "--sort", "test_acc",
                                                        "--format", "json").stdout)]
    assert by_test == sorted(by_test, reverse=True)
    by_lr = [r["lr"] for r in json.loads(invoke(sweep_dir, "--sort", "lr", "--format", "json").stdout)]
    assert by_lr == sorted(by_lr)
    alias = [r["test_acc"] for r in json.loads(invoke(sweep_dir, "--sort", "test_accuracy", "--format", "json").stdout)]
    assert alias == sorted(alias, reverse=True)  # summary.json's name works too
    bad = invoke(sweep_dir, "--sort", "accuracy")
    assert bad.exit_code == 2 and bad.output.startswith("error: --sort accuracy: unknown column")


def test_group_seeds_gives_mean_and_standard_deviation(runs):
    sweep_dir, _ = runs
    single = json.loads(invoke(sweep_dir, "--format", "json").stdout)
    grouped = json.loads(invoke(sweep_dir, "--group-seeds", "--format", "json").stdout)
    assert len(grouped) == 2 and [g["runs"] for g in grouped] == [2, 2]
    for group in grouped:
        members = [r for r in single if r["lr"] == group["lr"]]
        assert sorted(group["seed"].split(",")) == ["0", "1"]
        assert group["test_acc"] == pytest.approx(statistics.fmean(r["test_acc"] for r in members))
        assert group["test_acc_std"] == pytest.approx(statistics.stdev(r["test_acc"] for r in members))
    table = invoke(sweep_dir, "--group-seeds").stdout
    assert " ± " in table and "_std" not in table


def test_plot_overlays_every_run_with_a_legend_of_differing_values(runs, tmp_path):
    sweep_dir, alone = runs
    target = tmp_path / "plots" / "both.png"
    target.parent.mkdir()
    result = invoke(sweep_dir, alone, "--plot", target)
    assert result.exit_code == 0 and target.read_bytes()[:8] == PNG
    found, _ = collect([sweep_dir, alone])
    table(found)
    labels = legend_labels(found)
    assert len(set(labels)) == 5 and all("lr=" in label and "seed=" in label for label in labels)
    assert "arch=784-1 " in labels[-1]
    assert not (tmp_path / "compare.png").exists()  # a plot lands in a sweep folder only when one is compared


def test_unfinished_runs_are_listed_with_their_status(runs, tmp_path):
    sweep_dir, alone = runs
    copies = {}
    for status in ("failed", "running", "crashed"):
        copies[status] = tmp_path / status
        shutil.copytree(alone, copies[status])
        (copies[status] / "summary.json").unlink()
        RunFolder(copies[status]).update_status(status="failed" if status == "failed" else "running")
    with RunFolder(copies["running"]).lock():  # a live process trains it; nobody holds the crashed one's lock
        rows = parse_csv(invoke(*copies.values(), "--format", "csv").stdout)
    assert [r["status"] for r in rows] == ["failed", "running", "crashed"]
    assert all(r["epochs_done"] == "2" and r["test_acc"] for r in rows)  # from metrics.csv's last row


def test_folders_that_are_not_runs_are_warned_about_and_skipped(runs, tmp_path):
    sweep_dir, alone = runs
    empty = tmp_path / "empty"
    empty.mkdir()
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    result = invoke(empty, text, tmp_path / "missing", alone)
    assert result.exit_code == 0
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 3 and all(w.startswith("warning: ") and w.endswith("skipped") for w in warnings)
    assert "no run folders in it" in warnings[0] and "not a folder" in warnings[1] and "no such folder" in warnings[2]
    assert len(result.stdout.strip().splitlines()) == 2
    # The files a shell glob finds next to a sweep's runs are not worth a warning.
    globbed = invoke(*sorted(sweep_dir.iterdir()))
    assert globbed.exit_code == 0 and "warning" not in globbed.stderr
    assert len(globbed.stdout.strip().splitlines()) == 5


def test_nothing_valid_is_exit_2(tmp_path):
    result = invoke(tmp_path, tmp_path / "missing")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1].startswith("error: nothing to compare")


def test_architecture_counts_weighted_layers_only():
    """Batch norm has parameters but no width of its own: it must not repeat the layer before it."""
    from digitlab.config import validate

    cfg = validate({"model": [{"linear": 100}, "batchnorm", "relu", {"linear": 10}]}, "a.yaml")
    assert architecture(cfg) == ("784-100-10", 784 * 100 + 100 + 2 * 100 + 100 * 10 + 10)
    cnn = validate({"model": [{"conv2d": 8}, "batchnorm", "relu", "flatten", {"linear": 10}]}, "b.yaml")
    assert architecture(cnn)[0] == "1x28x28-c8k3-10"  # a conv net reads as one, not as a wide MLP


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_group_seeds_tables_are_aligned(runs, fmt):
    sweep_dir, _ = runs
    result = invoke(*sorted(p for p in sweep_dir.iterdir() if (p / "run.json").is_file()), "--group-seeds",
                    "--format", fmt)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    if fmt == "markdown":
        widths = {line.count(" | ") for line in lines}
        assert len(widths) == 1, lines
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        row = [c.strip() for c in lines[2].strip("|").split("|")]
    else:
        header, row = lines[0].split(), lines[1].split()
    assert "test_acc" in header and "±" in " ".join(row)
    cell = dict(zip(header, row)) if fmt == "markdown" else None
    if cell is not None:
        assert "±" in cell["test_acc"] and cell["runs"] == "2"


def test_compare_takes_a_folder_of_runs(runs):
    _, alone = runs
    result = invoke(alone.parent, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = parse_csv(result.stdout)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"complete"}


def test_a_cnns_arch_column_reads_as_a_cnn(runs):
    _, alone = runs
    result = invoke(alone.parent, "--format", "json")
    arch = {r["name"].split("-")[0]: r["arch"] for r in json.loads(result.stdout)}
    assert arch["cnn"] == "1x28x28-c4k3-mp2-2" and arch["logreg"] == "784-1"
