"""Settings mean what they say: what the resolved config, the summary, the columns and the messages report is what
trains. A layer given without options records its defaults; a loss refuses a last layer it cannot be right with;
--set says what a replaced mapping dropped; a model fitted in one pass claims no optimizer; a dry run warns as the
run does; the wrong kind of file, an option's mistake and a value's type are said in words; counts and sizes read
as English."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from digitlab.cli import main
from digitlab.config import apply_override, check_kind, config_hash, dump, identity, layer_specs, load_config, validate
from digitlab.config.schema import check_layer, default_optimizer, written_defaults
from digitlab.errors import ConfigError
from digitlab.nn import LAYERS, LOSSES, build_model
from digitlab.nn.summary import format_summary
from digitlab.options import defaults, plural, reference, required, size_text
from digitlab.runs.columns import config_values

DOCS = Path(__file__).parents[1] / "docs" / "configs.md"
TINY = {"name": "tiny", "seed": 0, "data": {"dataset": "digits8x8", "digits": [3, 8]},
        "model": [{"linear": 8}, "relu", "dropout", {"linear": 1}, "sigmoid"], "loss": "bce",
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0005, "schedule": "cosine"},
        "epochs": 1, "batch_size": 50}


def write(folder: Path, cfg, name: str = "tiny.yaml") -> Path:
    path = folder / name
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False))
    return path


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def fail(key, message):
    raise ConfigError("x.yaml", key, message)


def with_defaults_only() -> list[str]:
    """Every layer (by its first config name) whose options all have defaults: it can be written bare."""
    names = {}
    for name, cls in LAYERS.items():
        if cls.options and not required(cls):
            names.setdefault(cls, name)
    return list(names.values())


# -- 1. a layer given without options records, shows and reports its defaults -------------------------------------
@pytest.mark.parametrize("name", with_defaults_only())
@pytest.mark.parametrize("written", ["bare", "null", "empty"])
def test_a_layer_without_options_keeps_the_defaults_it_trains_with(name, written):
    item = {"bare": name, "null": {name: None}, "empty": {name: {}}}[written]
    _, opts, kept = check_layer(item, "model.0", fail)
    cls = LAYERS[name]
    expected = {k: v for k, v in defaults(cls).items() if v is not None}
    assert kept == {name: expected} and expected  # {dropout: {p: 0.5}}
    assert check_layer(kept, "model.0", fail)[2] == kept  # written back, it reads the same
    layer = cls(**check_layer(kept, "model.0", fail)[1])
    for option, value in expected.items():
        assert getattr(layer, option) == value


def test_bare_dropout_in_config_yaml_summary_and_columns(tmp_path):
    for item in ("dropout", {"dropout": None}):
        raw = {**TINY, "model": [{"linear": 8}, "relu", item, {"linear": 1}, "sigmoid"]}
        cfg = validate(copy.deepcopy(raw), "x.yaml")
        assert cfg["model"][2] == {"dropout": {"p": 0.5}}
        assert "p: 0.5" in dump(cfg) and validate(yaml.safe_load(dump(cfg)), "config.yaml") == cfg
        assert config_values(cfg, {})["dropout"] == "0.5"
    old = {**TINY, "model": [{"linear": 8}, "relu", "dropout", {"linear": 1}, "sigmoid"]}  # config.yaml, bare
    assert config_values(old, {})["dropout"] == "0.5"
    assert config_values({**TINY, "model": [{"linear": 1}, "sigmoid"]}, {})["dropout"] == "none"
    result = cli("train", write(tmp_path, TINY), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "2 dropout (Dropout(p=0.5))" in result.stdout


def test_a_layer_written_out_with_its_defaults_keeps_the_hash_of_the_bare_layer():
    """A run folder's files carry the config hash: a config.yaml that says `- dropout` must hash the same once it
    is read as {dropout: {p: 0.5}}."""
    cfg = validate(copy.deepcopy(TINY), "x.yaml")
    assert identity(cfg)["model"] == [{"linear": 8}, "relu", "dropout", {"linear": 1}, "sigmoid"]
    explicit = validate({**TINY, "model": [{"linear": 8}, "relu", {"dropout": 0.5}, {"linear": 1}, "sigmoid"]}, "x")
    assert explicit["model"][2] == {"dropout": 0.5} and identity(explicit)["model"][2] == {"dropout": 0.5}
    batchnorm = validate({**TINY, "model": [{"linear": 8}, "batchnorm", "relu", {"linear": 1}, "sigmoid"]}, "x")
    assert batchnorm["model"][1] == {"batchnorm": {"momentum": 0.1, "eps": 1e-5, "lr_scale": 1.0}}
    assert identity(batchnorm)["model"][1] == "batchnorm"


def test_the_docs_state_every_layer_option_with_its_default_and_range():
    docs = DOCS.read_text(encoding="utf-8")
    for name, cls in LAYERS.items():
        assert f"`{name}`" in docs, name
        for option, default, accepts in reference(cls):
            assert f"| {option} | {default} | {accepts} |" in docs, (name, option)


def test_the_summary_shows_every_option_of_every_layer():
    specs = [("conv2d", {"filters": 2}), ("batchnorm", {}), ("leaky_relu", {}), ("maxpool2d", {}),
             ("dropout", {}), ("flatten", {}), ("linear", {"units": 3}), ("softmax", {})]
    model = build_model(specs, (1, 8, 8))
    text = format_summary(model)
    assert "Dropout(p=0.5)" in text and "BatchNorm(momentum=0.1, eps=1e-05, lr_scale=1)" in text
    assert "LeakyReLU(slope=0.01)" in text and "MaxPool2d(size=2)" in text
    assert "Conv2d(filters=2, kernel=3, stride=1, padding=valid, init=he, bias=True, lr_scale=1)" in text
    for layer in model.layers:
        for option, default, _ in reference(type(layer)):
            if default != "null":
                assert f"{option}=" in repr(layer) and repr(layer) in text, (layer, option)


# -- 2. a loss refuses a last layer it cannot be right with --------------------------------------------------------
def pair(loss: str, tail: list, units: int) -> dict:
    return {**TINY, "loss": loss, "model": [{"linear": units}, *tail]}


PAIRS = [  # (loss, layers after the linear layer, its units, refused layer index or None)
    ("cross_entropy", ["softmax"], 2, None),
    ("cross_entropy", [], 2, None),
    ("cross_entropy", ["leaky_relu"], 2, None),
    ("cross_entropy", ["softmax", "dropout"], 2, 1),
    ("cross_entropy", ["softmax", "softmax"], 2, 1),
    ("cross_entropy", ["sigmoid"], 2, 1),
    ("cross_entropy", ["relu"], 2, 1),
    ("cross_entropy", ["tanh", "dropout"], 2, 1),
    ("bce", ["sigmoid"], 1, None),
    ("bce", ["leaky_relu", "sigmoid"], 1, None),
    ("bce", ["relu", "sigmoid"], 1, 1),
    ("bce", ["sigmoid", "sigmoid"], 1, 1),
    ("bce", ["tanh", "sigmoid"], 1, 1),
    ("bce", ["softmax", "sigmoid"], 2, 1),
    ("bce", [], 1, 0),
    ("mse", ["softmax"], 2, None),
    ("mse", ["sigmoid"], 1, None),
    ("mse", ["relu"], 2, None),
    ("mse", ["tanh"], 2, None),
    ("mse", [], 2, None),
    ("mse", ["softmax"], 1, 1),  # a softmax over one output is always 1
]


@pytest.mark.parametrize("loss, tail, units, refused", PAIRS)
def test_loss_and_last_layer_pairs(loss, tail, units, refused):
    raw = pair(loss, tail, units)
    if refused is None:
        validate(raw, "x.yaml")
        return
    with pytest.raises(ConfigError) as error:
        validate(raw, "x.yaml")
    assert error.value.key == f"model.{refused}", str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("activation", [n for n, c in LAYERS.items() if (c.elementwise and not c.keeps_range) or
                                        n == "softmax"])
def test_every_loss_against_every_activation_follows_what_the_loss_takes(loss, activation):
    """Derived from the declarations: a loss on logits refuses an activation that bounds its outputs; mse takes any
    (with two outputs, so that softmax is not over one)."""
    cls, fused = LOSSES[loss], LOSSES[loss].fuses
    tail = [activation] + (["sigmoid"] if cls.needs_fused else [])
    raw = pair(loss, tail, 2 if loss != "bce" or activation == "softmax" else 1)
    bounded = LAYERS[activation].gives is not None
    fused_away = fused is LAYERS[activation] and not cls.needs_fused  # a final softmax with cross_entropy
    if cls.takes_logits and bounded and not fused_away:
        with pytest.raises(ConfigError, match=r"takes logits") as error:
            validate(raw, "x.yaml")
        assert error.value.key == "model.1"
    else:
        validate(raw, "x.yaml")


def test_a_refused_pair_is_one_line_naming_the_file_and_the_layer(tmp_path):
    path = write(tmp_path, pair("cross_entropy", ["softmax", "dropout"], 2))
    result = cli("train", path, "--dry-run")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"error: {path}: model.1: cross_entropy takes logits")
    assert "softmax of a softmax" in result.output
    result = cli("train", write(tmp_path, pair("bce", ["relu", "sigmoid"], 1)), "--dry-run")
    assert result.exit_code == 2 and "'relu' before the final sigmoid gives only values >= 0" in result.output


# -- 3. --set that replaces a mapping by one value says what it dropped ---------------------------------------------
def test_replacing_the_optimizer_by_a_name_says_what_was_dropped():
    raw, said = copy.deepcopy(TINY), []
    apply_override(raw, "optimizer=adam", said.append)
    assert raw["optimizer"] == "adam" and len(said) == 1
    for dropped in ("optimizer.name=sgd", "optimizer.lr=0.1", "optimizer.momentum=0.9",
                    "optimizer.weight_decay=0.0005", "optimizer.schedule=cosine"):
        assert dropped in said[0], said
    assert said[0].startswith("--set optimizer=adam replaces the whole mapping at optimizer")
    assert validate(raw, "x.yaml")["optimizer"]["lr"] == 0.001


@pytest.mark.parametrize("assignment", ["optimizer.lr=0.5", "optimizer={name: adam}", "epochs=3",
                                        "model.2.dropout=0.3", "model.0.linear=16"])
def test_overrides_that_drop_nothing_say_nothing(assignment):
    said = []
    apply_override(copy.deepcopy(TINY), assignment, said.append)
    assert said == []


def test_a_layer_given_one_value_keeps_its_other_options():
    raw = {**TINY, "model": [{"linear": {"units": 8, "init": "he"}}, "relu", {"dropout": {"p": 0.1}}, {"linear": 1},
                             "sigmoid"]}
    said = []
    apply_override(raw, "model.0.linear=16", said.append)
    apply_override(raw, "model.2.dropout=0.3", said.append)
    cfg = validate(raw, "x.yaml")
    assert cfg["model"][0] == {"linear": {"units": 16, "init": "he"}} and cfg["model"][2] == {"dropout": 0.3}
    assert said == []
    apply_override(raw, "model.0.linear=null", said.append)  # null: every default, and init he is dropped
    assert said and "model.0.linear.init=he" in said[0]


def test_the_cli_warns_on_stderr_and_trains_what_it_says(tmp_path):
    result = cli("train", write(tmp_path, TINY), "--set", "optimizer=adam", "--dry-run")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "optimizer.lr=0.1" in warnings[0] and "--set optimizer=adam" in warnings[0]
    assert "adam lr 0.001" in result.stdout


# -- 4. a model fitted in one pass claims no optimizer and no batch size -------------------------------------------
AVERAGE = {"name": "avg", "data": {"dataset": "digits8x8", "test": 0.2}, "model": "average_image"}


def test_class_means_record_no_optimizer_and_no_batch_size():
    for model in ("average_image", "nearest_mean", [{"flatten": None}, {"class_means": 10}]):
        cfg = validate({**AVERAGE, "model": model}, "x.yaml")
        assert cfg["optimizer"] is None and cfg["batch_size"] is None and cfg["loss"] == "cross_entropy"
        assert validate(yaml.safe_load(dump(cfg)), "config.yaml") == cfg
        values = config_values(cfg, {})
        assert all(values[c] is None for c in ("optimizer", "lr", "momentum", "weight_decay", "schedule",
                                               "batch_size"))
    recorded = {**validate(AVERAGE, "x.yaml"), "optimizer": default_optimizer(), "batch_size": 32}
    assert config_values(recorded, {})["optimizer"] is None  # a config.yaml recording the unused defaults
    assert config_hash(validate(copy.deepcopy(recorded), "config.yaml")) == config_hash(recorded)


def test_an_optimizer_given_to_class_means_is_a_warning(tmp_path):
    said = []
    cfg = load_config(write(tmp_path, {**AVERAGE, "optimizer": "adam", "batch_size": 10}), warn=said.append)
    assert cfg["optimizer"] is None and len(said) == 1 and "optimizer and batch_size unused" in said[0]


def test_runs_where_optimizer_does_not_list_class_means(tmp_path):
    runs = tmp_path / "runs"
    assert cli("train", write(tmp_path, AVERAGE, "avg.yaml"), "--runs-dir", runs, "--quiet").exit_code == 0
    assert cli("train", write(tmp_path, TINY), "--runs-dir", runs, "--quiet").exit_code == 0
    listed = cli("runs", runs, "--where", "optimizer=sgd")
    assert listed.exit_code == 0, listed.output
    assert "tiny" in listed.stdout and "avg" not in listed.stdout
    config = yaml.safe_load(next(runs.glob("avg-*/config.yaml")).read_text())
    assert config["optimizer"] is None and config["batch_size"] is None


# -- 6. a dry run gives every warning the run gives ----------------------------------------------------------------
def warnings_of(result) -> list[str]:
    """The warnings a command gave, but the one about the size of the code tree's uncommitted changes (git.diff),
    which is about the checkout, not the config, and which a dry run, writing no git.diff, does not give."""
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")
            and not line.startswith("warning: git.diff")]


def test_the_dry_run_warns_as_the_run_does(tmp_path):
    raw = {**TINY, "model": [{"linear": {"units": 8, "init": "zeros"}}, "relu", {"linear": 1}, "sigmoid"],
           "batch_size": 5000}  # every ReLU dead at the start; a batch larger than the training set
    path = write(tmp_path, raw)
    dry = cli("train", path, "--set", "optimizer=sgd", "--dry-run")
    real = cli("train", path, "--set", "optimizer=sgd", "--runs-dir", tmp_path / "runs", "--quiet")
    assert dry.exit_code == 0 and real.exit_code == 0, (dry.output, real.output)
    said = warnings_of(dry)
    assert len(said) == 3, said
    assert any("batch_size 5000 is larger than the" in w for w in said)
    assert any("at the start: layer 1 relu: 100% of its units are dead" in w for w in said)
    assert any("--set optimizer=sgd replaces the whole mapping" in w for w in said)
    assert sorted(said) == sorted(warnings_of(real))
    assert len(list((tmp_path / "runs").iterdir())) == 1  # the dry run wrote nothing


# -- 7. the wrong kind of file, the option that made a mistake, types in words --------------------------------------
def test_a_sweep_file_given_to_train_says_which_command_it_is_for(tmp_path):
    sweep = write(tmp_path, {"name": "s", "base": "tiny.yaml", "grid": {"optimizer.lr": [0.1, 0.01]}}, "s.yaml")
    for args in ((), ("--dry-run",), ("--set", "epochs=2")):
        result = cli("train", sweep, *args)
        assert result.exit_code == 2 and result.output == f"error: {sweep}: this is a sweep file; use digitlab " \
                                                          f"sweep {sweep}\n", result.output


def test_a_train_config_for_the_sweep_command_says_which_command_it_is_for():
    with pytest.raises(ConfigError, match=r"^c.yaml: this is a train config; use digitlab train c.yaml$"):
        check_kind(TINY, "c.yaml", "sweep")
    check_kind({"base": "x.yaml", "grid": {}}, "s.yaml", "sweep")
    check_kind(TINY, "c.yaml", "train")
    check_kind({"name": "odd", "epochs": 1, "base": "x"}, "c.yaml", "train")  # neither clearly: the keys speak


def test_a_mistake_is_blamed_on_the_option_that_made_it(tmp_path):
    path = write(tmp_path, TINY)
    result = cli("train", path, "--name", "", "--dry-run")
    assert result.exit_code == 2 and result.output.startswith(f"error: {path} (--name): name: "), result.output
    result = cli("train", path, "--set", "name=", "--dry-run")
    assert result.output.startswith(f"error: {path} (--set): name: "), result.output
    result = cli("train", path, "--set", "name=", "--name", "", "--dry-run")  # --name comes last: it counts
    assert result.output.startswith(f"error: {path} (--name): name: "), result.output
    result = cli("train", path, "--set", "seed=x", "--seed", "3", "--dry-run")  # --seed makes it right
    assert result.exit_code == 0, result.output


PYTHON_TYPES = re.compile(r"\b(str|bool|NoneType|int|float|dict|tuple)\b|(?<!a )\blist\b")
BAD_VALUES = [("epochs", "ten"), ("epochs", True), ("epochs", None), ("optimizer.lr", [1]), ("seed", "x"),
              ("optimizer.nesterov", "yes"), ("optimizer.betas", 0.9), ("loss", 5), ("model", 5),
              ("early_stopping", 3), ("train_eval", "some"), ("data.digits", "38"), ("data.augment", [2, 10]),
              ("optimizer.schedule", 3), ("model.0", {"linear": {"units": {"a": 1}}}), ("model.0", [1]),
              ("data", "mnist"), ("optimizer", 5), ("name", "  "), ("model.1", {"relu": True})]


@pytest.mark.parametrize("key, value", BAD_VALUES, ids=[f"{k}={v!r}" for k, v in BAD_VALUES])
def test_messages_say_types_in_words(key, value):
    raw = copy.deepcopy(TINY)
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    with pytest.raises(ConfigError) as error:
        validate(raw, "x.yaml")
    assert not PYTHON_TYPES.search(error.value.message), str(error.value)


# -- 8. counts and sizes read as English ---------------------------------------------------------------------------
def test_plurals_and_sizes():
    assert plural(1, "epoch") == "1 epoch" and plural(3, "epoch") == "3 epochs"
    assert plural(1, "batch", "batches") == "1 batch" and plural(12560, "parameter") == "12,560 parameters"
    assert size_text(4_799_488) == "4.6 MB" and size_text(6246) == "6.1 KB" and size_text(512) == "512 bytes"
    assert size_text(1) == "1 byte" and size_text(22.5 * 2**30) == "22.5 GB" and size_text(222 * 2**20) == "222 MB"


def test_the_dry_run_counts_in_words(tmp_path):
    raw = {**TINY, "model": [{"linear": 1500}, "relu", {"linear": 1}, "sigmoid"], "batch_size": 1000}
    result = cli("train", write(tmp_path, raw), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "training: 1 epoch of 1 batch of 1000" in result.stdout
    total = 64 * 1500 + 1500 + 1500 + 1
    assert f"Total params: {total:,} ({size_text(4 * total)} as float32)" in result.stdout
    assert "KB as float32" not in result.stdout or total * 4 < 2**20
    assert re.search(r"memory: about [\d.,]+ (KB|MB|GB) of the [\d.,]+ (MB|GB|TB) this process may allocate",
                     result.stdout)
    too_few = cli("train", write(tmp_path, {**TINY, "loss": "cross_entropy"}), "--dry-run")
    assert "the last layer gives 1 output, but" in too_few.output


def test_layer_specs_of_a_resolved_config_build_what_was_recorded():
    cfg = validate(copy.deepcopy(TINY), "x.yaml")
    assert layer_specs(cfg)[2] == ("dropout", {"p": 0.5})
    assert written_defaults(LAYERS["maxpool2d"]) == {"size": 2}  # a null default (the stride) is not written
    assert json.loads(json.dumps(identity(cfg)))  # plain data


def test_class_means_with_the_default_optimizer_recorded_reads_without_a_warning(tmp_path):
    """An optimizer and batch size at their defaults, as a run folder's config.yaml may record them: nobody asked."""
    recorded = {**AVERAGE, "optimizer": default_optimizer(), "batch_size": 32}
    said = []
    cfg = load_config(write(tmp_path, recorded, "config.yaml"), warn=said.append)
    assert cfg["optimizer"] is None and said == []
