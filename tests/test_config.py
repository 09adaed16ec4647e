"""Config files and their validation: each mistake is one ConfigError line `<file>: <key path>: <what was
expected>`, raised before anything trains; hostile, huge or binary files and configs too big for the machine are
refused with one line; numbers read the same way for every key; `--set KEY=VALUE` overrides reach any key, including
inside the layer list; and a property test that no config makes the loader raise anything but a one-line
ConfigError."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import cli, one_line_error, tiny
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digitlab.config import apply_override, dump, load_config, validate
from digitlab.config.schema import Experiment
from digitlab.errors import ConfigError, DataError, UserError

BASE = {
    "name": "t",
    "seed": 0,
    "data": {"digits": [3, 8], "validation": 0.1},
    "model": [{"linear": 4}, "relu", {"dropout": 0.1}, {"linear": 1}, "sigmoid"],
    "loss": "bce",
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "epochs": 2,
    "batch_size": 50,
}


def changed(path: str, value):
    """BASE with the value at a dotted path replaced (or added); value DELETE removes the key."""
    cfg = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = cfg
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return cfg


BAD = [
    # (config, key path, expectation)
    (changed("data.validaton", 0.2), "data.validaton", "unknown key; did you mean 'validation'?"),
    (changed("epoch", 3), "epoch", "unknown key; did you mean 'epochs'?"),
    (changed("optimizer.nesterv", True), "optimizer.nesterv", "unknown key; did you mean 'nesterov'?"),
    (changed("epochs", "ten"), "epochs", "expected a whole number in [1, 100000], got text 'ten'"),
    (changed("epochs", 2.5), "epochs", "expected a whole number"),
    (changed("optimizer.lr", "fast"), "optimizer.lr", "expected a number > 0, got text 'fast'"),
    (changed("optimizer.momentum", [0.9]), "optimizer.momentum", "expected a number in [0, 1), got a list"),
    (changed("optimizer.nesterov", "yes please"), "optimizer.nesterov", "expected true or false"),
    (changed("optimizer.lr", 0), "optimizer.lr", "expected a number > 0, got 0"),
    (changed("optimizer.lr", -1), "optimizer.lr", "expected a number > 0, got -1"),
    (changed("model.2.dropout", 1.0), "model.2.dropout", "expected a number in [0, 1), got 1.0"),
    (changed("model.2.dropout", -0.1), "model.2.dropout", "expected a number in [0, 1), got -0.1"),
    (changed("model.2", {"dropout": {"p": 1.5}}), "model.2.dropout.p", "expected a number in [0, 1)"),
    (changed("epochs", 0), "epochs", "expected a whole number in [1, 100000], got 0"),
    (changed("batch_size", 0), "batch_size", "expected a whole number in [1, 1000000], got 0"),
    (changed("data.validation", 1.0), "data.validation", "expected a number in [0, 1), got 1.0"),
    (changed("data.digits", [3, 10]), "data.digits.1", "expected a whole number in [0, 9], got 10"),
    (changed("data.digits", [-1, 3]), "data.digits.0", "expected a whole number in [0, 9], got -1"),
    (changed("data.digits", [3]), "data.digits", "expected at least two distinct digits 0-9, got [3]"),
    (changed("data.digits", [3, 3]), "data.digits", "expected at least two distinct digits 0-9, got [3, 3]"),
    (changed("data.digits", "38"), "data.digits", "expected a list of at least two distinct digits"),
    (changed("loss", "cross_entropy"), "model",
     "the last layer gives 1 output, but cross_entropy over digits [3, 8] needs 2 (one per digit)"),
    (changed("model.3", {"linear": 3}), "model",
     "the last layer gives 3 outputs, but bce over digits [3, 8] needs 1"),
    ({**changed("loss", "mse"), "data": {"digits": [1, 7, 9]}}, "model",
     "the last layer gives 1 output, but mse over digits [1, 7, 9] needs 3 (one per digit)"),
    ({**BASE, "model": [{"linear": 4}, "relu", {"linear": 1}]}, "model.2",
     "bce needs the model to end with 'sigmoid'"),
    (changed("model.1", "relux"), "model.1", "unknown layer 'relux'; did you mean 'relu'?"),
    (changed("model.1", {"relu": 3}), "model.1.relu", "'relu' takes no options"),
    (changed("model.0", {"linear": {"init": "he"}}), "model.0.linear", "needs 'units'"),
    (changed("model.0", {"linear": {"units": 4, "init": "lecun"}}), "model.0.linear.init", "expected one of he"),
    (changed("model.0", {"linear": 0}), "model.0.linear", "expected a whole number >= 1, got 0"),
    (changed("model", []), "model", "expected a list of layers"),
    (changed("loss", "crossentropy"), "loss", "did you mean 'cross_entropy'?"),
    (changed("optimizer", {"name": "adan"}), "optimizer.name", "did you mean 'adam'?"),
    (changed("optimizer", {"name": "adam", "momentum": 0.9}), "optimizer.momentum", "unknown key"),
    (changed("optimizer", {"name": "adam", "betas": [0.9]}), "optimizer.betas", "expected two numbers in [0, 1)"),
    (changed("optimizer.schedule", "cosin"), "optimizer.schedule.name", "did you mean 'cosine'?"),
    (changed("seed", -1), "seed", "expected a whole number"),
]


@pytest.mark.parametrize("cfg, key, expected", BAD, ids=[f"{i}-{case[1]}" for i, case in enumerate(BAD)])
def test_bad_config_is_one_line_with_file_key_and_expectation(cfg, key, expected, write_config):
    path = write_config(cfg)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: "), message
    assert expected in message, message
    assert error.value.key == key
    assert isinstance(error.value, UserError) and error.value.exit_code == 2


def test_yaml_syntax_error(write_config):
    path = write_config("name: t\ndata: {digits: [3, 8]\nepochs: 2\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: invalid YAML: line "), message


def test_a_character_yaml_refuses_is_one_clean_line_with_its_line_and_column(write_config):
    path = write_config("name: t\nepochs: 2\nx: a\x00b\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == (f"{path}: invalid YAML: line 3, column 5: unacceptable character #x0000: special "
                                f"characters are not allowed")


@pytest.mark.parametrize("text, shown", [("- linear: 4\n- relu\n", "a list"), ("just words\n", "text 'just words'"),
                                         ("", "nothing")])
def test_top_level_must_be_a_mapping(text, shown, write_config):
    path = write_config(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: expected a mapping of settings at the top level, got {shown}"), message


def test_yaml_aliases_are_refused(write_config):
    path = write_config("a: &x [1, 2]\nname: *x\n")
    with pytest.raises(ConfigError, match="aliases"):
        load_config(path)


@pytest.mark.parametrize("text, shown", [
    ("name: t\nepochs: 1\nepochs: 5\n", "line 3, column 1: duplicate key 'epochs' (first on line 2)"),
    ("name: t\ndata: {limit: 300, limit: 400}\n", "line 2, column 20: duplicate key 'limit' (first on line 2)"),
    ("name: t\nmodel:\n- linear: {units: 4,\n    units: 8}\n", "line 4, column 5: duplicate key 'units' (first on "
                                                              "line 3)"),
])
def test_a_key_written_twice_is_refused_where_yaml_would_keep_the_last(text, shown, write_config):
    path = write_config(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: invalid YAML: {shown}"


def test_a_sweep_grid_key_written_twice_is_refused(tmp_path):
    from digitlab.sweep import load_sweep
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nbase: {epochs: 1}\ngrid:\n  optimizer.lr: [0.1]\n  optimizer.lr: [0.2]\n")
    with pytest.raises(ConfigError, match="line 5, column 3: duplicate key 'optimizer.lr' \\(first on line 4\\)"):
        load_sweep(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


# -- defaults and round trip -----------------------------------------------------------------------------------------
def test_defaults_are_filled_in():
    cfg = validate({"model": [{"linear": 10}]}, "configs/mine.yaml")
    assert cfg["name"] == "mine" and cfg["seed"] == 0
    assert cfg["data"]["digits"] == list(range(10)) and cfg["data"]["validation"] == 0.0
    assert cfg["data"]["limit"] is None and cfg["data"]["path"] is None
    assert cfg["loss"] == "cross_entropy"
    assert cfg["optimizer"] == {"name": "sgd", "lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0,
                                "decay_all": True}
    assert cfg["epochs"] == 10 and cfg["batch_size"] == 32
    adam = validate({"model": [{"linear": 10}], "optimizer": "adam"}, "x.yaml")["optimizer"]
    assert adam == {"name": "adam", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0,
                    "decay_all": True}


def test_values_are_normalised():
    cfg = validate({**BASE, "optimizer": {"name": "sgd", "lr": "1e-3"}, "model": [{"dense": {"units": 1}}, "sigmoid"],
                    "name": "a/b c"}, "x.yaml")
    assert cfg["optimizer"]["lr"] == 0.001  # PyYAML reads 1e-3 as a string
    assert cfg["model"] == [{"dense": 1}, "sigmoid"]
    assert cfg["name"] == "a-b-c"  # one plain folder name


def test_resolved_config_round_trips_through_yaml():
    cfg = validate(copy.deepcopy(BASE), "x.yaml")
    assert validate(yaml.safe_load(dump(cfg)), "config.yaml") == cfg


def test_shipped_configs_are_valid():
    for name, digits in [("3v8", [3, 8]), ("3v8-logreg", [3, 8]), ("mnist10-mlp", list(range(10)))]:
        cfg = load_config(Path(__file__).parents[1] / "configs" / f"{name}.yaml")
        assert cfg["name"] == name and cfg["data"]["digits"] == digits


# -- --set overrides -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("assignment, check", [
    ("optimizer.lr=0.01", lambda c: c["optimizer"]["lr"] == 0.01),
    ("model.2.dropout=0.3", lambda c: c["model"][2] == {"dropout": 0.3}),
    ("model.0.linear.units=5", lambda c: c["model"][0] == {"linear": 5}),
    ("model.0.linear=7", lambda c: c["model"][0] == {"linear": 7}),
    ("model.-2.linear=1", lambda c: c["model"][3] == {"linear": 1}),
    ("data.digits=[1,7]", lambda c: c["data"]["digits"] == [1, 7]),
    ("data.limit=300", lambda c: c["data"]["limit"] == 300),
    ("optimizer.nesterov=true", lambda c: c["optimizer"]["nesterov"] is True),
    ("optimizer.schedule={name: step, step_size: 2}",
     lambda c: c["optimizer"]["schedule"] == {"name": "step", "step_size": 2, "gamma": 0.1, "warmup": 0}),
    ("seed=7", lambda c: c["seed"] == 7),
    ("name=other", lambda c: c["name"] == "other"),
])
def test_override(assignment, check, write_config):
    path = write_config(BASE)
    cfg = load_config(path, (assignment,))
    assert check(cfg), cfg
    assert yaml.safe_load(path.read_text()) == BASE  # the file is untouched


def test_several_overrides_apply_in_order(write_config):
    cfg = load_config(write_config(BASE), ("optimizer.lr=0.5", "model.2.dropout=0.3", "optimizer.lr=0.05"))
    assert cfg["optimizer"]["lr"] == 0.05 and cfg["model"][2] == {"dropout": 0.3}


@pytest.mark.parametrize("assignment, key, expected", [
    ("optimizer.lr0.01", "optimizer.lr0.01", "expected KEY=VALUE"),
    ("=3", "=3", "expected KEY=VALUE"),
    ("model.9.dropout=0.3", "model.9", "expected a position from 0 to 4"),
    ("model.x.dropout=0.3", "model.x", "expected a position from 0 to 4"),
    ("epochs.max=3", "epochs", "is 2, which has no keys"),
])
def test_bad_override(assignment, key, expected, write_config):
    with pytest.raises(ConfigError) as error:
        load_config(write_config(BASE), (assignment,))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"--set: {key}: ") and expected in message, message


def test_override_that_makes_the_config_invalid_names_the_file_and_set(write_config):
    path = write_config(BASE)
    with pytest.raises(ConfigError) as error:
        load_config(path, ("optimizer.lr=-1",))
    assert str(error.value) == f"{path} (--set): optimizer.lr: expected a number > 0, got -1"
    with pytest.raises(ConfigError) as error:
        load_config(path, ("data.validaton=0.2",))
    assert "data.validaton: unknown key; did you mean 'validation'?" in str(error.value)
    with pytest.raises(ConfigError) as error:
        load_config(path, ("optimizer.lr=[oops",))
    assert "invalid YAML" in str(error.value) and "\n" not in str(error.value)


def test_apply_override_reaches_into_a_bare_layer_name():
    cfg = {"model": ["relu", {"linear": 3}]}
    apply_override(cfg, "model.1.linear.init=he")
    assert cfg["model"][1] == {"linear": {"units": 3, "init": "he"}}
    apply_override(cfg, "model.0.relu=null")
    assert cfg["model"][0] == {"relu": None}


def test_an_option_of_a_loss_that_takes_none_says_so(write_config):
    path = write_config({**BASE, "loss": {"name": "bce", "label_smoothing": 0.1}})
    with pytest.raises(ConfigError, match=r"loss.label_smoothing: unknown key; no options are accepted here$"):
        load_config(path)


def test_a_merge_key_is_not_taken_for_a_duplicate(write_config):
    path = write_config("name: t\ndata: {digits: [3, 8]}\nmodel: [{linear: 1}, sigmoid]\nloss: bce\n"
                        "optimizer:\n  <<: {name: sgd}\n  lr: 0.1\n")
    assert load_config(path)["optimizer"]["name"] == "sgd"


# -- options of the 8x8 digits, per-layer learning rates and early stopping -------------------------------------------
def test_data_test_is_for_datasets_without_a_test_split():
    with pytest.raises(ConfigError, match="data.test: expected a number in \\(0, 1\\), got 1.5"):
        validate({"data": {"dataset": "digits8x8", "test": 1.5}, "model": "average_image"}, "x.yaml")
    with pytest.raises(ConfigError, match="mnist has an official test split"):
        validate({"data": {"test": 0.2}, "model": "average_image"}, "x.yaml")
    assert validate({"data": {"dataset": "digits8x8"}, "model": "average_image"}, "x.yaml")["data"]["test"] == 0.2


@pytest.mark.parametrize("raw, key, words", [
    ({"data": {"dataset": "digit8x8"}}, "data.dataset", "did you mean 'digits8x8'?"),
    ({"data": {"dataset": "digits8x8", "digits": [3, 12]}}, "data.digits.1", "in [0, 9], got 12"),
    ({"data": {"dataset": "digits8x8"}, "model": [{"linear": {"units": 10, "lr_scale": 0}}]},
     "model.0.linear.lr_scale", "expected a number > 0, got 0"),
    ({"data": {"dataset": "digits8x8"}, "early_stopping": True}, "early_stopping.monitor", "needs a validation split"),
    ({"data": {"dataset": "digits8x8"}, "model": [{"conv2d": {"filters": 4, "kernel": 9}}, "flatten",
                                                  {"linear": 10}]}, "model.0", "does not fit its 8x8 input"),
    ({"data": {"dataset": "digits8x8"}, "model": "average_image", "epochs": 5}, "epochs", "epochs must be 1"),
])
def test_bad_dataset_lr_scale_and_early_stopping_options_are_one_line(raw, key, words):
    raw = {"model": [{"linear": 10}], **raw}
    with pytest.raises(ConfigError) as error:
        validate(raw, "x.yaml")
    assert error.value.key == key and words in str(error.value) and "\n" not in str(error.value), str(error.value)


# -- numbers ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, text, value", [("epochs", "1e2", 100), ("epochs", "100.0", 100),
                                              ("batch_size", "6.4e1", 64), ("optimizer.lr", "1e-3", 0.001),
                                              ("data.limit", "2e3", 2000), ("seed", "1E1", 10)])
def test_numbers_read_the_same_way_for_every_key(write_config, key, text, value):
    cfg = load_config(write_config(tiny()), (f"{key}={text}",))
    node = cfg
    for part in key.split("."):
        node = node[part]
    assert node == value and type(node) is type(value)


@pytest.mark.parametrize("key, text, words", [("epochs", "2.5", "whole number"), ("epochs", "1e-1", "whole number"),
                                              ("batch_size", "true", "got true"), ("optimizer.lr", "nan", "number")])
def test_what_is_not_a_number_of_the_right_kind_is_refused(write_config, key, text, words):
    with pytest.raises(ConfigError, match=words):
        load_config(write_config(tiny()), (f"{key}={text}",))


# -- hostile files and configs too big for the machine ---------------------------------------------------------------
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
    message = one_line_error(cli("train", path, "--runs-dir", tmp_path / "runs"))
    assert str(path) in message and expected in message
    assert not (tmp_path / "runs").exists(), "nothing is written for a bad config"


def test_huge_and_binary_files_are_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "# padding\n" * 200_000)
    assert "at most" in one_line_error(cli("train", big))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 10)
    assert str(binary) in one_line_error(cli("train", binary))
    assert "file not found" in one_line_error(cli("train", tmp_path / "missing.yaml"))


def test_too_big_for_memory_is_refused_before_allocation(write_config):
    cfg = write_config(tiny(model=[{"linear": 10**6}, "relu", {"linear": 10**6}, {"linear": 1}, "sigmoid"]))
    message = one_line_error(cli("train", cfg))
    assert "model" in message and "TB" in message and "parameters" in message


# -- property test: any config validates or fails with one line ------------------------------------------------------
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
    raw = tiny()
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
