"""`digitlab train --resume RUN --epochs N`: a complete run trained on to N epochs equals the run trained to N in one
go where the schedule does not depend on the total, follows the N-epoch schedule from where it stood otherwise
(checked against hand-computed lrs), records the extension in run.json's history, keeps its folder whole (agreement,
records, reproduce), and refuses with one line what cannot go on."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
from conftest import cli, one_line_error, tiny, train

from digitlab.config import load_config
from digitlab.nn import SCHEDULES
from digitlab.run import layout
from digitlab.run.agreement import check_agreement
from digitlab.run.callbacks import StopAfter
from digitlab.run.extend import TOTAL_DEPENDENT, extend
from digitlab.run.folder import RunFolder
from digitlab.run.lifecycle import resume
from digitlab.run.records import read_embedding, read_health
from digitlab.run.reproduce import reproduce_run
from digitlab.system.threads import LIMIT_VARIABLES

# Early stopping that does not stop: its counters and best weights must carry over the extension too.
STEP = tiny({"optimizer.schedule": {"name": "step", "step_size": 1, "gamma": 0.5}}, outputs="light",
            early_stopping={"monitor": "val_loss", "patience": 50})
COSINE = tiny({"optimizer.schedule": "cosine"}, outputs="light")
BATCHES = 6  # 270 training images (300, a tenth held out) in batches of 50


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """STEP trained to 2 epochs then extended to 4 on the command line, and trained to 4 in one go."""
    root = tmp_path_factory.mktemp("extend")
    short, _ = train(STEP, root / "runs", "--quiet")
    result = cli("train", "--resume", short, "--epochs", 4)
    assert result.exit_code == 0, result.output
    straight, _ = train({**STEP, "epochs": 4}, root / "straight", "--quiet")
    return short, straight, result


def test_an_extended_run_equals_the_run_trained_to_the_new_epochs_in_one_go(runs, same_run):
    extended, straight, result = runs
    assert "extending" in result.output and "from 2 to 4 epochs" in result.output
    same_run(extended, straight)
    assert load_config(extended / layout.CONFIG)["epochs"] == 4
    cfg = load_config(extended / layout.CONFIG)
    assert read_health(RunFolder(extended), cfg) == read_health(RunFolder(straight), cfg)
    assert read_embedding(RunFolder(extended), cfg)["epochs"].tolist() == [0, 1, 2, 3, 4]


def test_the_extension_is_in_run_json_history_and_the_folder_agrees_with_itself(runs):
    extended, _, _ = runs
    run = RunFolder(extended)
    info = run.info()
    assert info["status"] == "complete" and info["epoch"] == 4
    (entry,) = info["history"]
    assert entry["action"] == "extend" and entry["epochs_before"] == 2 and entry["epochs_after"] == 4
    assert entry["asked"] == "--epochs 4" and entry["command"] and entry["at"] and "numpy" in entry
    check_agreement(run, load_config(extended / layout.CONFIG), info, run.read_metrics())  # not damaged
    listed = cli("runs", extended.parent, "--format", "json")
    assert listed.exit_code == 0 and json.loads(listed.stdout)[0]["status"] == "complete"


def test_a_cosine_schedule_runs_over_the_new_total_from_where_the_run_stood(tmp_path):
    """Epochs 1-2 keep the 2-epoch cosine's lrs; epochs 3-4 take the 4-epoch cosine's. metrics.csv records the
    lr of each epoch's last batch, at fractional epoch (epoch - 1) + 5/6. A reproduction replays the history."""
    run, _ = train(COSINE, tmp_path / "runs", "--quiet")
    result = cli("train", "--resume", run, "--epochs", 4)
    assert result.exit_code == 0 and "cosine schedule runs over 4 epochs from epoch 3 on" in result.output

    def cosine(t, total):
        return 0.1 * 0.5 * (1 + math.cos(math.pi * t / total))
    expected = [cosine(e - 1 + (BATCHES - 1) / BATCHES, 2 if e <= 2 else 4) for e in (1, 2, 3, 4)]
    lrs = [row["lr"] for row in RunFolder(run).read_metrics()]
    assert lrs == pytest.approx([round(x, 6) for x in expected], abs=1e-6)
    copy = reproduce_run(run, tmp_path / "copies")
    assert copy.match, copy.lines()
    assert [h["epochs_after"] for h in RunFolder(copy.copy).info()["history"]] == [4]
    assert set(TOTAL_DEPENDENT) <= set(SCHEDULES)


def test_an_extension_stopped_part_way_resumes_to_the_same_run(runs, tmp_path, same_run):
    _, straight, _ = runs
    run, _ = train(STEP, tmp_path / "runs", "--quiet")
    extend(run, 4, quiet=True, progress=False, stop=StopAfter(3))
    folder = RunFolder(run)
    info = folder.info()
    assert info["status"] == "pruned" and info["epoch"] == 3
    check_agreement(folder, load_config(run / layout.CONFIG), info, folder.read_metrics())
    assert cli("evaluate", run).exit_code == 0  # the model of epoch 2 is still the run's
    resume(run, quiet=True, progress=False)
    same_run(run, straight)


class Interrupt(StopAfter):
    """A stop rule that interrupts training after `epoch`, as Ctrl-C there would."""

    def check(self, rows):
        if len(rows) >= self.epoch:
            raise KeyboardInterrupt
        return None


def test_a_mistyped_target_of_an_interrupted_extension_is_taken_back(runs, tmp_path, same_run):
    _, straight, _ = runs
    run, _ = train(STEP, tmp_path / "runs", "--quiet")
    extend(run, 9, quiet=True, progress=False, stop=Interrupt(3))  # meant 4
    assert RunFolder(run).info()["status"] == "interrupted"
    assert "give at least 3" in one_line_error(cli("train", "--resume", run, "--epochs", 2))
    result = cli("train", "--resume", run, "--epochs", 4)
    assert result.exit_code == 0, result.output
    assert "interrupted after epoch 3; its target goes from 9 to 4 epochs" in result.output
    same_run(run, straight)  # a step schedule: the run trained to 4 in one go
    folder = RunFolder(run)
    info = folder.info()
    assert info["status"] == "complete" and info["epoch"] == 4
    assert [(h["epochs_before"], h["epochs_after"], h["from_epoch"]) for h in info["history"]] == [(2, 9, 2),
                                                                                                  (9, 4, 3)]
    check_agreement(folder, load_config(run / layout.CONFIG), info, folder.read_metrics())
    assert reproduce_run(run, tmp_path / "repro").match  # 2, then 9 stopped after 3, then 4


def test_what_cannot_be_extended_is_refused_with_one_line(runs, tmp_path):
    extended, _, _ = runs
    assert "has trained 4 epochs already" in one_line_error(cli("train", "--resume", extended, "--epochs", 3))

    info = json.loads((extended / layout.RUN_JSON).read_text())
    for status, said in (("interrupted", "interrupted"), ("running", "crashed")):  # no process holds its lock
        copy = shutil.copytree(extended, tmp_path / status)
        (copy / layout.RUN_JSON).write_text(json.dumps({**info, "status": status}))
        line = one_line_error(cli("train", "--resume", copy, "--epochs", 3))
        assert f"is {said} after epoch 4 of 4" in line and "give at least 4" in line

    point = shutil.copytree(extended, tmp_path / "point")
    (point / layout.RUN_JSON).write_text(json.dumps({**info, "sweep": "quick", "point": "0123abcd",
                                                     "blas_threads": "7"}))
    saved = {k: os.environ.get(k) for k in LIMIT_VARIABLES}
    try:  # refused before any word on --threads, which differ from the run's 7
        result = cli("train", "--resume", point, "--epochs", 6, "--threads", 1)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert "a point of sweep quick" in one_line_error(result) and "warning" not in result.output

    damaged = shutil.copytree(extended, tmp_path / "damaged")
    (damaged / layout.CONFIG).write_text((damaged / layout.CONFIG).read_text().replace("lr: 0.1", "lr: 0.2"))
    assert "damaged" in one_line_error(cli("train", "--resume", damaged, "--epochs", 6))

    stopping = tiny({"early_stopping": {"monitor": "val_accuracy", "patience": 1, "min_delta": 1.0}},
                    epochs=3, outputs="light", name="stops")
    stopped, _ = train(stopping, tmp_path / "runs", "--quiet")
    assert "early stopping ended it after epoch 2 of 3" in one_line_error(
        cli("train", "--resume", stopped, "--epochs", 6))


def test_epochs_with_a_config_is_the_configs_epochs(tmp_path):
    from conftest import write_yaml
    config = write_yaml(tmp_path / "tiny.yaml", STEP)
    result = cli("train", config, "--epochs", 7, "--dry-run")
    assert result.exit_code == 0 and "7 epochs of" in result.output


def test_the_curves_show_the_learning_rate_when_it_changes():
    """The loss panel gets a grey learning-rate axis when the lr changed (a schedule, an extension), none when it
    was constant or not recorded."""
    import matplotlib.pyplot as plt

    from digitlab.figures.run import curves
    rows = [{"epoch": e, "train_loss": 1 / e, "train_accuracy": 0.5 + e / 10, "lr": lr}
            for e, lr in ((1, 0.1), (2, 0.01), (3, 0.001))]
    figure = curves(rows)
    lr_axes = [ax for ax in figure.axes if ax.get_ylabel().startswith("learning rate")]
    assert len(lr_axes) == 1 and lr_axes[0].get_yscale() == "log"
    assert lr_axes[0].lines[0].get_ydata().tolist() == [0.1, 0.01, 0.001]
    assert "learning rate" in [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    for constant in (0.1, None):
        flat = curves([{**row, "lr": constant} for row in rows])
        assert len(flat.axes) == 3
        plt.close(flat)
    plt.close(figure)


def test_a_write_that_fails_while_the_files_are_marked_leaves_the_run_as_it_was(runs, tmp_path, monkeypatch):
    from digitlab.errors import StorageError
    extended, _, _ = runs
    run = shutil.copytree(extended, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    write = RunFolder.write

    def failing(self, name, data):
        if name == layout.CONFIG:
            raise StorageError(self.path / name, "No space left on device")
        return write(self, name, data)
    monkeypatch.setattr(RunFolder, "write", failing)
    with pytest.raises(StorageError):
        extend(run, 6, quiet=True, progress=False)
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if k != layout.LOCK} == {k: v for k, v in before.items()
                                                                     if k != layout.LOCK}
    extend(run, 5, quiet=True, progress=False)  # and it can be extended afterwards
    assert RunFolder(run).info()["epoch"] == 5
