"""The front door: hostile YAML, names that try to leave the runs folder, tampered weights and checkpoints,
configs too big for the machine, and a property test that no config makes the loader raise anything but a
one-line ConfigError."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digitlab.cli import main
from digitlab.config import apply_override, validate
from digitlab.config.schema import Experiment
from digitlab.errors import ConfigError, DataError
from digitlab.run import layout

TINY = {
    "name": "tiny", "seed": 0,
    "data": {"digits": [3, 8], "limit": 300},
    "model": [{"linear": 8}, "relu", {"linear": 2}, {"linear": 1}, "sigmoid"],
    "loss": "bce", "optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 1, "batch_size": 50,
}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, code=2) -> str:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("text,expected", [
    ("name: x\nmodel: !!python/object/apply:os.system ['echo pwned']\n", "invalid YAML"),
    ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b]\n",
     "aliases"),
    ("model: [linear: 10\n", "line"),
    ("- just\n- a list\n", "expected a mapping"),
    ("", "expected a mapping"),
])
def test_hostile_yaml_is_one_line_exit_2(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    message = one_line_error(invoke("train", path, "--runs-dir", tmp_path / "runs"))
    assert str(path) in message and expected in message
    assert not (tmp_path / "runs").exists(), "nothing is written for a bad config"


def test_huge_and_binary_files_are_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "# padding\n" * 200_000)
    assert "at most" in one_line_error(invoke("train", big))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 10)
    assert str(binary) in one_line_error(invoke("train", binary))
    assert "file not found" in one_line_error(invoke("train", tmp_path / "missing.yaml"))


@pytest.mark.parametrize("name", ["../../etc", "/tmp/x", "..", "a/../../b", "~root", "name with spaces\n"])
def test_run_names_cannot_leave_the_runs_folder(tmp_path, write_config, name):
    cfg = write_config({**TINY, "name": name})
    runs = tmp_path / "runs"
    result = invoke("train", cfg, "--runs-dir", runs, "--quiet")
    assert result.exit_code == 0, result.output
    run = Path(result.output.strip().splitlines()[-1]).resolve()
    assert run.parent == runs.resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml", "runs"]


def test_too_big_for_memory_is_refused_before_allocation(write_config):
    cfg = write_config({**TINY, "model": [{"linear": 10**6}, "relu", {"linear": 10**6}, {"linear": 1}, "sigmoid"]})
    message = one_line_error(invoke("train", cfg))
    assert "model" in message and "GiB" in message and "parameters" in message


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("done")
    cfg = folder / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    result = invoke("train", cfg, "--runs-dir", folder / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    return Path(result.output.strip().splitlines()[-1])


def copy_run(run: Path, dest: Path) -> Path:
    import shutil
    shutil.copytree(run, dest)
    (dest / ".lock").unlink(missing_ok=True)
    return dest


def test_truncated_model_is_a_clear_error(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    data = (run / "model.npz").read_bytes()
    (run / "model.npz").write_bytes(data[: len(data) // 2])
    assert "model.npz" in one_line_error(invoke("evaluate", run))


def test_model_with_pickled_objects_is_refused(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    with np.load(run / "model.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["0.weight"] = np.array([object()], dtype=object)
    np.savez(run / "model.npz", **arrays)
    assert "model.npz" in one_line_error(invoke("evaluate", run))


def test_model_that_does_not_match_its_architecture_is_refused(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    with np.load(run / "model.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["0.weight"] = np.zeros((784, 9), np.float32)
    np.savez(run / "model.npz", **arrays)
    assert "not match" in one_line_error(invoke("evaluate", run))


def test_evaluate_reproduces_the_summary(finished_run):
    result = invoke("evaluate", finished_run)
    assert result.exit_code == 0, result.output
    summary = json.loads((finished_run / "summary.json").read_text())
    assert f"test_accuracy {summary['test_accuracy']:.6f}" in result.output


def test_tampered_checkpoint_and_config_refuse_to_resume(finished_run, tmp_path):
    run = copy_run(finished_run, tmp_path / "run")
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    data = (run / layout.CHECKPOINT).read_bytes()
    (run / layout.CHECKPOINT).write_bytes(data[:100])
    assert "checkpoint" in one_line_error(invoke("train", "--resume", run))

    run2 = copy_run(finished_run, tmp_path / "run2")
    (run2 / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    (run2 / "config.yaml").write_text((run2 / "config.yaml").read_text().replace("lr: 0.1", "lr: 0.2"))
    assert "was written for another config" in one_line_error(invoke("train", "--resume", run2))
    assert "not a run folder" in one_line_error(invoke("train", "--resume", tmp_path))


def test_data_path_problems_name_the_file(write_config, fake_idx_folder, tmp_path):
    folder = fake_idx_folder(n_train=40, n_train_labels=30)
    message = one_line_error(invoke("train", write_config({**TINY, "data": {"digits": [3, 8], "path": str(folder)}})))
    assert "train-images-idx3-ubyte.gz" in message and "40" in message and "30" in message
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    message = one_line_error(invoke("train", write_config({**TINY, "data": {"digits": [3, 8], "path": str(folder)}})))
    assert "t10k-labels-idx1-ubyte.gz" in message and "not found" in message


# -- property test: any config validates or fails with one line ----------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=10)
keys = st.sampled_from(["name", "seed", "epochs", "batch_size", "loss", "data", "data.digits", "data.digits.0",
                        "data.validation", "data.limit", "data.path", "model", "model.0", "model.0.linear",
                        "model.1", "model.2", "model.3.linear", "optimizer", "optimizer.name", "optimizer.lr",
                        "optimizer.momentum", "optimizer.betas", "optimizer.schedule", "optimizer.schedule.name",
                        "bogus", "data.bogus"] + list(Experiment.options))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(st.tuples(keys, values), min_size=1, max_size=4))
def test_mutated_configs_validate_or_fail_with_one_line(mutations):
    raw = copy.deepcopy(TINY)
    try:
        for key, value in mutations:
            apply_override(raw, f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}")
        cfg = validate(raw, "fuzz.yaml")
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(("fuzz.yaml", "--set"))
        return
    except DataError as exc:  # a data.path that is not a folder of IDX files: the path's own one-line error
        assert "\n" not in str(exc) and "data.path" in str(exc)
        return
    assert isinstance(cfg, dict) and cfg["epochs"] >= 1 and len(set(cfg["data"]["digits"])) >= 2


@settings(max_examples=200, deadline=None)
@given(raw=values)
def test_any_yaml_document_validates_or_fails_with_one_line(raw):
    try:
        validate(raw, "fuzz.yaml")
    except ConfigError as exc:
        assert "\n" not in str(exc)


def test_relative_data_path_is_saved_absolute_and_evaluate_works_elsewhere(tmp_path, fake_idx_folder, monkeypatch):
    folder = fake_idx_folder(n_train=60, n_test=30)
    monkeypatch.chdir(folder.parent)
    cfg = tmp_path / "rel.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "data": {"digits": [3, 8], "path": folder.name}}))
    result = invoke("train", cfg, "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    run = Path(result.output.strip().splitlines()[-1])
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["path"] == str(folder)
    monkeypatch.chdir(tmp_path / "runs")
    assert invoke("evaluate", run).exit_code == 0


def test_images_of_another_size_train_and_mismatched_sizes_are_one_line(tmp_path, write_config, write_idx):
    """A dataset knows its image size: 32x32 IDX files train a dense or a conv model; train and test images of
    different sizes are one line, before any run folder exists."""
    folder = tmp_path / "small"
    folder.mkdir()
    rng = np.random.default_rng(0)
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (40, 32, 32)))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(40) % 10)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 32, 32)))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(20) % 10)
    dense = write_config({**TINY, "data": {"digits": [3, 8], "path": str(folder)}}, "dense.yaml")
    assert invoke("train", dense, "--runs-dir", tmp_path / "runs", "--quiet").exit_code == 0
    conv = write_config({**TINY, "data": {"digits": [3, 8], "path": str(folder)},
                         "model": [{"conv2d": 2}, "relu", {"maxpool2d": 2}, "flatten", {"linear": 1}, "sigmoid"]},
                        "conv.yaml")
    result = invoke("train", conv, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0 and "15x15" not in result.output, result.output
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28)))
    message = one_line_error(invoke("train", dense, "--runs-dir", tmp_path / "other"))
    assert "32x32" in message and "28x28" in message
    assert not (tmp_path / "other").exists()
