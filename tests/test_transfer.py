"""`init_from: RUN`: a network starts from another run's weights. The hidden layers are copied when kinds and
shapes match position by position; an output layer that differs (3 vs 8 -> ten digits) starts as the seed drew it,
said in one line; hidden layers that differ, a run without a model, a damaged run or images of another shape are
refused with one line naming the config file and init_from; run.json records the source and its config hash."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import cli, one_line_error, tiny, train, write_yaml

from digitlab.config import config_hash, load_config, validate
from digitlab.run import layout
from digitlab.run.folder import RunFolder
from digitlab.run.setup import prepare
from digitlab.run.transfer import init_weights

# Ten digits on the tiny run's hidden layers (784-8-2), with a 10-unit head and cross-entropy.
TEN = tiny(name="ten", data={"validation": 0.1, "limit": 300}, loss="cross_entropy", outputs="light",
           model=[{"linear": 8}, "relu", {"linear": 2}, {"linear": 10}], epochs=1)


def weights(run):
    with np.load(run / layout.MODEL, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files if k != "__architecture__"}


def test_hidden_layers_are_copied_and_a_new_output_layer_starts_as_the_seed_drew_it(tiny_run):
    cfg = validate({**TEN, "init_from": str(tiny_run)})
    setup = prepare(cfg)
    transfer = init_weights(setup)
    source, drawn = weights(tiny_run), prepare(validate(TEN)).model.state_dict()
    state = setup.model.state_dict()
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        np.testing.assert_array_equal(state[name], source[name])
    for name in ("3.weight", "3.bias"):
        np.testing.assert_array_equal(state[name], drawn[name])
    assert transfer.line.startswith(f"init_from {tiny_run}: copied model.0-model.2 (linear, relu, linear); the "
                                    f"output layer model.3 starts fresh")
    source_cfg = load_config(tiny_run / layout.CONFIG)
    assert transfer.record == {"run": str(tiny_run), "config_hash": config_hash(source_cfg), "copied": [0, 1, 2],
                               "fresh": [3]}
    assert config_hash(validate(TEN)) == config_hash(validate({**TEN, "init_from": None}))  # old hashes hold


def test_a_fine_tuned_run_copies_every_layer_and_records_its_source(tiny_run, tmp_path):
    run, result = train(tiny(init_from=str(tiny_run), epochs=1, outputs="light", name="tuned"), tmp_path / "runs")
    assert f"init_from {tiny_run}: copied model.0-model.3 (linear, relu, linear, linear)" in result.output
    assert "fresh" not in result.output
    info = RunFolder(run).info()
    assert info["init_from"]["run"] == str(tiny_run) and info["init_from"]["fresh"] == []
    assert load_config(run / layout.CONFIG)["init_from"] == str(tiny_run)
    # starting from trained weights: better after one epoch than the source's first epoch from scratch
    first = RunFolder(tiny_run).read_metrics()[0]["val_loss"]
    assert RunFolder(run).read_metrics()[0]["val_loss"] < first


@pytest.mark.parametrize("change,said", [
    ({"model": [{"linear": 12}, "relu", {"linear": 2}, {"linear": 10}]},
     "hidden layer model.0 is linear (weight 784x8, bias 8) there and linear (weight 784x12, bias 12) here"),
    ({"model": [{"linear": 8}, "tanh", {"linear": 2}, {"linear": 10}]}, "hidden layer model.1 is relu there and tanh"),
    ({"data": {"dataset": "digits8x8", "test": 0.2}}, "its network takes images of shape (784,), this one (64,)"),
    ({"model": "nearest_mean", "optimizer": None, "batch_size": None}, "fitted in one pass"),
])
def test_what_does_not_fit_is_refused_with_one_line(tiny_run, tmp_path, change, said):
    config = write_yaml(tmp_path / "ten.yaml", {**TEN, **change, "init_from": str(tiny_run)})
    line = one_line_error(cli("train", config, "--runs-dir", tmp_path / "runs"))
    assert line.startswith(f"error: {config}: init_from: ") and said in line, line
    assert not (tmp_path / "runs").exists()  # nothing written


def test_a_source_not_complete_damaged_or_fitted_in_one_pass_is_refused(tiny_run, average_image_run, tmp_path):
    info = json.loads((tiny_run / layout.RUN_JSON).read_text())
    sources = []
    for name, status, model in (("unfinished", "interrupted", False), ("stopped", "interrupted", True),
                                ("crashed", "running", True), ("lost", "complete", False)):
        source = shutil.copytree(tiny_run, tmp_path / name)  # "stopped": an extension interrupted, its model kept
        if not model:
            (source / layout.MODEL).unlink()
        (source / layout.RUN_JSON).write_text(json.dumps({**info, "status": status}))
        sources.append(source)
    damaged = shutil.copytree(tiny_run, tmp_path / "damaged")
    (damaged / layout.CONFIG).write_text((damaged / layout.CONFIG).read_text().replace("lr: 0.1", "lr: 0.2"))
    expected = ["is interrupted; init_from needs a run that completed"] * 2 + \
        ["is crashed;", "its model.npz is missing: the run is damaged"]
    for source, said in (*zip(sources, expected), (damaged, "damaged"), (tmp_path / "nowhere", "no such folder"),
                         (average_image_run, "fitted in one pass (class means), it has no layers to start from")):
        config = write_yaml(tmp_path / "ten.yaml", {**TEN, "init_from": str(source)})
        line = one_line_error(cli("train", config, "--dry-run"))
        assert line.startswith(f"error: {config}: init_from: ") and said in line, line
        assert "shape" not in line and "layer model." not in line


def test_a_reproduction_says_when_the_source_run_changed_since(tmp_path):
    from digitlab.run.extend import extend
    from digitlab.run.reproduce import reproduce_run
    source, _ = train(tiny(epochs=1, outputs="light", name="source"), tmp_path / "sources", "--quiet")
    tuned, _ = train(tiny(epochs=1, outputs="light", name="tuned", init_from=str(source)), tmp_path / "runs", "--quiet")
    same = reproduce_run(tuned, tmp_path / "copies")
    assert same.match and not same.environment
    extend(source, 2, quiet=True, progress=False)
    changed = reproduce_run(tuned, tmp_path / "copies")
    assert not changed.match and any(line.startswith(f"init_from's run {source} changed since")
                                     for line in changed.environment), changed.environment
    shutil.rmtree(source)
    line = one_line_error(cli("reproduce", tuned, "--runs-dir", tmp_path / "copies"))
    assert line.startswith(f"error: {tuned / layout.CONFIG}: init_from: {source}"), line


def test_a_source_reads_back_without_the_memory_check(tiny_run, monkeypatch):
    """The memory check belongs to training this config, not to reading the source run back: a machine with less
    memory free now still starts from the source's weights (the target's own config is checked when validated)."""
    import digitlab.config as config
    import digitlab.config.memory as memory
    cfg = validate({**TEN, "init_from": str(tiny_run)})
    monkeypatch.setattr(memory, "available_memory", lambda: memory.Limit(1 << 10, "MemAvailable"))
    monkeypatch.setattr(config, "_RUN_CONFIGS", {})  # nothing read before this test may answer for it
    assert init_weights(prepare(cfg)).record["copied"] == [0, 1, 2]
