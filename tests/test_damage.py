"""Any file of a run folder may be damaged or foreign: truncated, garbled, tampered with, edited by hand, or copied
in from another run. Every command that reads run folders (compare, evaluate, train --resume, sweep, report, predict)
either works, lists the run as `damaged` with the file and the reason, or refuses with one line; never a traceback,
never a silently wrong result."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import OTHER, cli, one_line_error, tiny, train, write_yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digitlab.run import layout

FILES = ["config.yaml", "run.json", "metrics.csv", "summary.json", "model.npz", "checkpoint.npz", "splits.npz",
         "layer_health.csv", "embedding_epochs.npz"]


def assert_clean(result, codes=(0, 1, 2)):
    """Exit 0, 1 or 2; at most one `error:` line; never a traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in codes, result.output
    assert "Traceback" not in result.output
    assert sum(line.startswith("error:") for line in result.output.splitlines()) <= 1, result.output
    return result


@pytest.fixture
def finished(tiny_run, other_run, digit_png):
    """The session's tiny run (tests damage copies of it), another network's run of the same data (to copy files
    from), and an image to predict."""
    return {"tiny": tiny_run, "other": other_run, "image": digit_png}


# -- tampered weights, checkpoints and configs ----------------------------------------------------------------------
def test_the_undamaged_run_evaluates_to_its_summary(tiny_run):
    result = cli("evaluate", tiny_run)
    assert result.exit_code == 0, result.output
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert f"test_accuracy {summary['test_accuracy']:.6f}" in result.output


def test_truncated_model_is_a_clear_error(tiny_run, copy_run):
    run = copy_run(tiny_run)
    data = (run / "model.npz").read_bytes()
    (run / "model.npz").write_bytes(data[: len(data) // 2])
    assert "model.npz" in one_line_error(cli("evaluate", run))


def test_model_with_pickled_objects_is_refused(tiny_run, copy_run):
    run = copy_run(tiny_run)
    with np.load(run / "model.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["0.weight"] = np.array([object()], dtype=object)
    np.savez(run / "model.npz", **arrays)
    assert "model.npz" in one_line_error(cli("evaluate", run))


def test_model_that_does_not_match_its_architecture_is_refused(tiny_run, copy_run):
    run = copy_run(tiny_run)
    with np.load(run / "model.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert arrays["0.weight"].shape == (784, 8)
    arrays["0.weight"] = np.zeros((784, 9), np.float32)
    np.savez(run / "model.npz", **arrays)
    assert "not match" in one_line_error(cli("evaluate", run))


def test_tampered_checkpoint_and_config_refuse_to_resume(tiny_run, copy_run, tmp_path):
    run = copy_run(tiny_run)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    data = (run / layout.CHECKPOINT).read_bytes()
    (run / layout.CHECKPOINT).write_bytes(data[:100])
    assert "checkpoint" in one_line_error(cli("train", "--resume", run))

    run2 = copy_run(tiny_run, "run2")
    (run2 / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    config = (run2 / "config.yaml").read_text()
    assert config.count("lr: 0.1,") == 1  # optimizer: {name: sgd, lr: 0.1, ...}
    (run2 / "config.yaml").write_text(config.replace("lr: 0.1,", "lr: 0.2,"))
    assert "was written for another config" in one_line_error(cli("train", "--resume", run2))
    assert "not a run folder" in one_line_error(cli("train", "--resume", tmp_path))


def test_a_model_of_the_8x8_digits_is_refused_for_mnist(tmp_path):
    run, _ = train({"name": "small", "data": {"dataset": "digits8x8"}, "model": [{"linear": 10}], "epochs": 1},
                   tmp_path / "runs", "--quiet")
    edited = yaml.safe_load((run / "config.yaml").read_text())
    edited["data"].update(dataset="mnist", test=None)
    (run / "config.yaml").write_text(yaml.safe_dump(edited))
    result = cli("evaluate", run)
    assert result.exit_code == 2 and "model.npz: damaged (belongs to another run" in result.output


# -- any damage, and files copied in from another run ----------------------------------------------------------------
def cells(text: str, drop: bool, row: int, col: int) -> str:
    """metrics.csv (or any CSV) with one cell dropped from, or added to, one row."""
    rows = list(csv.reader(io.StringIO(text)))
    line = rows[row % len(rows)]
    if drop and line:
        del line[col % len(line)]
    else:
        line.insert(col % (len(line) + 1), "3.5")
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def damage(run: Path, other: Path, name: str, kind: str, data) -> None:
    path = run / name
    raw = path.read_bytes()
    if kind == "truncate":
        path.write_bytes(raw[:data.draw(st.integers(0, max(len(raw) - 1, 0)))])
    elif kind == "flip":
        buf = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] ^= data.draw(st.integers(1, 255))
        path.write_bytes(bytes(buf))
    elif kind == "cells" and name.endswith(".csv"):
        path.write_text(cells(raw.decode(), data.draw(st.booleans()), data.draw(st.integers(0, 10)),
                              data.draw(st.integers(0, 10))))
    elif kind == "cells" and name.endswith((".json", ".yaml")):  # a line dropped, or one added
        lines = raw.decode().splitlines()
        at = data.draw(st.integers(0, len(lines)))
        if data.draw(st.booleans()) and lines:
            del lines[min(at, len(lines) - 1)]
        else:
            lines.insert(at, data.draw(st.sampled_from(["  extra: 1", "- 3", "}", "epochs: -1", '"x": [1,'])))
        path.write_text("\n".join(lines) + "\n")
    elif kind == "cells":  # a binary file: bytes cut out of the middle
        at = data.draw(st.integers(0, len(raw) - 1))
        path.write_bytes(raw[:at] + raw[at + data.draw(st.integers(1, 64)):])
    elif kind == "swap":
        shutil.copyfile(other / name, path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "delete":
        path.unlink()


@pytest.mark.slow  # 40 damaged copies, six commands each (report and a resume among them)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_reading_command_survives_any_damaged_file(finished, tmp_path_factory, data):
    name = data.draw(st.sampled_from(FILES), label="file")
    kind = data.draw(st.sampled_from(["truncate", "flip", "cells", "swap", "empty", "delete"]), label="damage")
    run = Path(shutil.copytree(finished["tiny"], tmp_path_factory.mktemp("case") / "run"))
    damage(run, finished["other"], name, kind, data)
    for args in (["compare", run], ["compare", run, "--format", "json"], ["evaluate", run],
                 ["report", run], ["predict", run, finished["image"]], ["train", "--resume", run, "--quiet"]):
        assert_clean(cli(*args))


@pytest.mark.parametrize("name", ["model.npz", "checkpoint.npz", "splits.npz", "summary.json", "layer_health.csv",
                                  "embedding_epochs.npz"])
def test_a_file_copied_from_another_run_is_refused_or_flagged(finished, copy_run, tmp_path, name):
    run = copy_run(finished["tiny"])
    shutil.copyfile(finished["other"] / name, run / name)
    if name in ("layer_health.csv", "embedding_epochs.npz"):  # read by report: a note, the rest shown
        result = assert_clean(cli("report", run), codes=(0,))
        assert f"{run / name}: damaged (" in (run / "report.html").read_text()
        return
    if name == "summary.json":
        result = assert_clean(cli("compare", run), codes=(0,))
        assert "damaged" in result.output and "belongs to run 'other'" in result.output
        return
    evaluate = assert_clean(cli("evaluate", run), codes=(0, 2))
    if name == "model.npz":
        assert evaluate.exit_code == 2 and "belongs to another run" in evaluate.output
    if name == "splits.npz":  # same dataset and digits, other rows: the run's own splits are not these
        assert evaluate.exit_code == 0 or "splits.npz" in evaluate.output
    (run / "run.json").write_text(json.dumps({**json.loads((run / "run.json").read_text()), "status": "interrupted"}))
    resume = assert_clean(cli("train", "--resume", run, "--quiet"), codes=(0, 2))
    if name == "checkpoint.npz":
        assert resume.exit_code == 2 and "checkpoint.npz" in resume.output


@pytest.mark.parametrize("change", ["short", "long"])
def test_compare_lists_a_run_with_a_bad_metrics_row_as_damaged(finished, copy_run, tmp_path, change):
    run = copy_run(finished["tiny"])
    lines = (run / "metrics.csv").read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] if change == "short" else lines[1] + ",9"
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    result = assert_clean(cli("compare", run, finished["other"]), codes=(0,))
    row = next(line for line in result.output.splitlines() if line.startswith("run "))
    assert " damaged " in row
    assert f"warning: {run / 'metrics.csv'}: damaged (line 2 has" in result.output
    rows = json.loads(cli("compare", run, "--format", "json").stdout)
    assert rows[0]["status"] == "damaged" and "metrics.csv" in rows[0]["damage"]


def test_evaluate_refuses_a_model_of_another_network(finished, copy_run, tmp_path):
    run = copy_run(finished["tiny"])
    shutil.copyfile(finished["other"] / "model.npz", run / "model.npz")
    result = assert_clean(cli("evaluate", run), codes=(2,))
    assert result.output.startswith(f"error: {run / 'model.npz'}: damaged (belongs to another run")


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """A sweep of two one-epoch points, run once for the module: a folder of s.yaml, base.yaml and runs/s/."""
    root = tmp_path_factory.mktemp("sweep")
    write_yaml(root / "base.yaml", tiny(epochs=1))
    write_yaml(root / "s.yaml", {"name": "s", "base": "base.yaml", "grid": {"optimizer.lr": [0.1, 0.05]}})
    assert cli("sweep", root / "s.yaml", "--runs-dir", root / "runs").exit_code == 0
    return root


@pytest.fixture
def finished_sweep(swept, tmp_path) -> tuple[Path, list[Path]]:
    """A copy of the finished sweep in tmp_path (runs in tmp_path/runs): (the sweep file, the point folders)."""
    shutil.copytree(swept, tmp_path, dirs_exist_ok=True)
    points = sorted(p for p in (tmp_path / "runs" / "s").iterdir() if (p / "run.json").is_file())
    assert len(points) == 2
    return tmp_path / "s.yaml", points


@pytest.mark.slow  # a sweep, run again twice
def test_a_sweep_goes_past_a_damaged_point_and_reports_it(finished_sweep, tmp_path):
    sweep, points = finished_sweep
    (points[0] / "metrics.csv").write_text("epoch,train_loss\n1,2,3,4\n")
    (points[1] / "summary.json").write_text("{not json")
    again = assert_clean(cli("sweep", sweep, "--runs-dir", tmp_path / "runs"), codes=(1,))
    assert again.output.count("damaged") >= 2 and "did not complete" in again.output
    assert "nothing to run" in again.output  # damaged points wait for --retry-failed, like failed ones
    with open(tmp_path / "runs" / "s" / "points.csv") as f:
        assert sorted(r["status"] for r in csv.DictReader(f)) == ["damaged", "damaged"]
    retry = assert_clean(cli("sweep", sweep, "--runs-dir", tmp_path / "runs", "--retry-failed"), codes=(0,))
    assert retry.output.count(": complete") == 2
    assert len(list((tmp_path / "runs" / "s" / "replaced").iterdir())) == 2


def test_a_damaged_config_or_run_json_is_one_line_for_evaluate_and_resume(finished, copy_run, tmp_path):
    run = copy_run(finished["tiny"])
    (run / "run.json").write_text("[1, 2]")
    for args in (["train", "--resume", run], ["compare", run]):
        result = assert_clean(cli(*args))
        assert "run.json: damaged (expected a JSON object, got list)" in result.output
    (run / "config.yaml").write_text("model: [{linear: -3}]\n")
    result = assert_clean(cli("evaluate", run), codes=(2,))
    assert "config.yaml: model.0.linear: expected a whole number >= 1, got -3" in result.output


@pytest.mark.parametrize("config", [b"\xff\xfe bad", b"model: [{linear: -3}]\n", b"epochs: [\n"])
def test_resume_of_a_stopped_run_with_a_damaged_config_is_one_line(finished, copy_run, tmp_path, config):
    run = copy_run(finished["tiny"])
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    (run / "config.yaml").write_bytes(config)
    result = assert_clean(cli("train", "--resume", run), codes=(2,))
    assert result.output.startswith(f"error: {run / 'config.yaml'}: "), result.output


def test_weights_that_are_not_finite_are_refused(finished, copy_run, tmp_path):
    run = copy_run(finished["tiny"])
    with np.load(run / "model.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["0.weight"][0, 0] = np.nan
    np.savez(run / "model.npz", **arrays)
    result = assert_clean(cli("evaluate", run), codes=(2,))
    assert "not finite" in result.output


def test_weights_too_large_for_a_trained_network_are_refused_not_scored_nan(finished, copy_run, tmp_path):
    run = copy_run(finished["tiny"])
    with np.load(run / "model.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["0.weight"][:] = 1e38  # finite, but every output overflows
    np.savez(run / "model.npz", **arrays)
    for command in (("evaluate", run), ("predict", run, finished["image"])):
        result = assert_clean(cli(*command), codes=(2,))
        assert result.output.startswith(f"error: {run / 'model.npz'}: damaged (its weights give outputs that are not "
                                        f"finite numbers"), (command, result.output)


@pytest.mark.parametrize("name", ["model.npz", "metrics.csv", "splits.npz", "layer_health.csv", "embedding_epochs.npz"])
def test_report_shows_what_it_can_and_names_the_damaged_file(finished, copy_run, tmp_path, name):
    run = copy_run(finished["tiny"])
    (run / name).write_bytes(b"damaged")
    result = assert_clean(cli("report", run), codes=(0,))
    assert result.output.strip() == str(run / "report.html")
    page = (run / "report.html").read_text()
    assert f"{run / name}: damaged" in page and "<b>notes</b>" in page
    assert page.count("<img") >= 1  # the rest is still shown


def test_predict_on_a_damaged_model_is_one_line(finished, copy_run, tmp_path):
    run = copy_run(finished["tiny"])
    (run / "model.npz").write_bytes(b"damaged")
    result = assert_clean(cli("predict", run, finished["image"]), codes=(2,))
    assert result.output.startswith(f"error: {run / 'model.npz'}: damaged")


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_splits_file_with_an_empty_split_is_damaged(finished, copy_run, tmp_path, split):
    """Before, evaluate scored an empty test split as nan (exit 0) and report ended in a traceback."""
    run = copy_run(finished["tiny"])
    with np.load(run / "splits.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays[split] = arrays[split][:0]
    np.savez(run / "splits.npz", **arrays)
    result = assert_clean(cli("evaluate", run), codes=(2,))
    assert result.output.startswith(f"error: {run / 'splits.npz'}: damaged ({split} split: holds no image)")
    report = assert_clean(cli("report", run), codes=(0,))
    assert f"{run / 'splits.npz'}: damaged" in (run / "report.html").read_text(), report.output


def test_an_empty_validation_split_in_an_older_run_is_no_damage(finished, copy_run, tmp_path):
    """digitlab wrote such splits.npz files before it refused empty validation splits; they still evaluate."""
    run = copy_run(finished["tiny"])
    with np.load(run / "splits.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["val"] = arrays["val"][:0]
    np.savez(run / "splits.npz", **arrays)
    result = assert_clean(cli("evaluate", run), codes=(0,))
    assert result.output.startswith("test_accuracy ")


def test_a_run_killed_between_its_checkpoint_and_run_json_resumes_to_complete(finished, copy_run, tmp_path):
    """SIGKILL after the last epoch's checkpoint but before run.json counts that epoch: the resume trains no epoch,
    and the run must still end complete, not damaged for a metrics.csv one row longer than run.json's count."""
    run = copy_run(finished["tiny"])
    info = json.loads((run / "run.json").read_text())
    info.update(status="running", epoch=1)
    info.pop("ended", None)
    (run / "run.json").write_text(json.dumps(info))
    (run / "model.npz").unlink()
    (run / "summary.json").unlink()
    assert_clean(cli("train", "--resume", run), codes=(0,))
    assert json.loads((run / "run.json").read_text())["epoch"] == 2
    listed = assert_clean(cli("runs", run.parent), codes=(0,))
    assert "damaged" not in listed.output and " complete " in listed.output, listed.output


@pytest.mark.parametrize("name", ["model.npz", "checkpoint.npz", "splits.npz", "embedding_epochs.npz"])
def test_an_npz_that_is_no_zip_is_named_so_without_suggesting_to_unpickle_it(finished, copy_run, tmp_path, name):
    """np.load takes any file that is neither .npy nor zip for a pickle, and its error suggests allow_pickle=True:
    advice to run code from a file that came from who knows where."""
    run = copy_run(finished["tiny"])
    (run / name).write_bytes(bytes(range(256)) * 4)
    command = ("train", "--resume", run) if name == "checkpoint.npz" else ("report", run) \
        if name == "embedding_epochs.npz" else ("evaluate", run)
    if name == "checkpoint.npz":
        info = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    result = assert_clean(cli(*command))
    shown = result.output + ((run / "report.html").read_text() if command[0] == "report" else "")
    assert "not an .npz archive (it does not start as a zip file does)" in shown, shown[-2000:]
    assert "pickle" not in shown


@pytest.mark.parametrize("name", ["run.json", "summary.json"])
def test_json_nested_too_deeply_is_damaged_not_a_recursion_error(finished, copy_run, tmp_path, name):
    run = copy_run(finished["tiny"])
    (run / name).write_text('{"status": "complete", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    readers = [("compare", run), ("runs", run.parent)] + ([("train", "--resume", run)] if name == "run.json" else [])
    for command in readers + [("report", run), ("evaluate", run)]:
        result = assert_clean(cli(*command))
        if command in readers:
            assert f"{name}: damaged (nested too deeply for a file digitlab writes)" in result.output, command


def _cut_config(run: Path) -> None:
    """config.yaml cut short where it still parses and validates: the optimizer, epochs and batch size fall to
    their defaults."""
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text[:text.index("\noptimizer:") + 1])


def _accuracy(run: Path, value: str) -> None:
    rows = list(csv.reader(io.StringIO((run / "metrics.csv").read_text())))
    rows[1][rows[0].index("train_accuracy")] = value
    (run / "metrics.csv").write_text("".join(",".join(row) + "\n" for row in rows))


@pytest.mark.parametrize("damage, file, words", [
    (_cut_config, "config.yaml", "is not the config model.npz was trained from"),
    (lambda run: shutil.copyfile(run.parent / "other.yaml", run / "config.yaml"), "config.yaml",
     "is not the config model.npz was trained from"),
    (lambda run: (run / "metrics.csv").write_text(""), "metrics.csv", "holds 0 epochs; run.json says the run did 2"),
    (lambda run: (run / "metrics.csv").write_text((run / "metrics.csv").read_text().splitlines()[0] + "\n"),
     "metrics.csv", "holds 0 epochs; run.json says the run did 2"),
    (lambda run: _accuracy(run, "2.5"), "metrics.csv", "line 2: train_accuracy is 2.5, not an accuracy between 0 "
                                                      "and 1"),
    (lambda run: _accuracy(run, "-inf"), "metrics.csv", "line 2: train_accuracy is -inf, not an accuracy"),
    (lambda run: (run / "summary.json").write_text(json.dumps(
        {**json.loads((run / "summary.json").read_text()), "test_accuracy": 1e308})), "summary.json",
     "test_accuracy is 1e+308, not an accuracy between 0 and 1"),
    (lambda run: (run / "summary.json").write_text(json.dumps(
        {**json.loads((run / "summary.json").read_text()), "seconds": -5})), "summary.json",
     "seconds is -5, not a number of seconds"),
])
def test_files_that_parse_but_disagree_with_the_run_make_it_damaged(finished, copy_run, tmp_path, damage, file,
                                                                    words):
    """A config.yaml cut short or copied in still parses; an emptied metrics.csv or an accuracy of 2.5 is still
    CSV: compare and runs listed such a run as `complete` with the wrong values."""
    run = copy_run(finished["tiny"])
    (tmp_path / "other.yaml").write_text(yaml.safe_dump({**OTHER, "name": "tiny"}))  # another run of that name
    damage(run)
    for command in (("compare", run), ("runs", tmp_path)):
        result = assert_clean(cli(*command), codes=(0,))
        assert f"warning: {run / file}: damaged ({words}" in result.output, (command, result.output)
        assert " damaged " in next(line for line in result.output.splitlines() if "run" in line and "damaged" in line)


@pytest.mark.slow  # a sweep, run again
def test_a_sweep_point_whose_config_was_cut_short_is_damaged_not_best(finished_sweep, tmp_path):
    sweep, points = finished_sweep
    _cut_config(points[0])
    again = assert_clean(cli("sweep", sweep, "--runs-dir", tmp_path / "runs"), codes=(1,))
    with open(tmp_path / "runs" / "s" / "points.csv") as f:
        assert sorted(r["status"] for r in csv.DictReader(f)) == ["complete", "damaged"], again.output
