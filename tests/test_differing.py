"""`compare` and `runs` show every config value that differs: the schema is walked (every top-level option, the
data's, the loss's, every optimizer's and schedule's, early stopping's, augmentation's, the layers'), each option
changed in a copy of a config, and the two rows must differ in a column that the tables show. No training: the rows
are made from the resolved configs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from conftest import cli, tiny, train

from digitlab.config import layer_specs, validate
from digitlab.data import DataOptions
from digitlab.data.augment import Augment, Elastic
from digitlab.errors import ConfigError
from digitlab.learner import EarlyStopping
from digitlab.nn import LAYERS, LOSSES, OPTIMIZERS, SCHEDULES
from digitlab.options import Boolean, Choice, CountOrAll, Integer, Nested, Number, Numbers, Text, defaults
from digitlab.runs.collect import Run
from digitlab.runs.columns import describe, differing

BASE = {"name": "base", "seed": 0, "data": {"digits": [3, 8], "validation": 0.1, "limit": 300,
                                             "augment": {"shift": 1, "rotate": 5, "scale": 0.1,
                                                         "elastic": {"alpha": 8, "sigma": 3}}},
        "model": [{"conv2d": {"filters": 2, "kernel": 3}}, "relu", {"maxpool2d": 2}, "flatten",
                  {"linear": {"units": 8, "init": "he"}}, {"batchnorm": {"momentum": 0.9}}, {"leaky_relu": 0.01},
                  {"dropout": 0.2}, {"linear": 2}],
        "loss": {"name": "cross_entropy", "label_smoothing": 0.1},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "schedule": {"name": "step", "warmup": 1}},
        "epochs": 3, "batch_size": 50, "early_stopping": {"monitor": "val_loss", "patience": 2},
        "train_eval": 100, "test_every_epoch": True, "outputs": "light"}
SKIP = {"name": "the run's name is its own column", "data.path": "a data folder of its own",
        "model.8.linear.units": "the output layer's units are the digits'"}
CANDIDATES = [True, False, 0, 1, 2, 3, 5, 0.5, 0.25, 0.05, 0.95, 7, 100, "all", None, [0.8, 0.99], [4, 9], "x"]


def candidates(rule):
    if isinstance(rule, Choice):
        return rule.choices
    if isinstance(rule, Nested):
        return [None, {}, False]
    if isinstance(rule, (Number, Integer, Boolean, CountOrAll, Numbers, Text)):
        return CANDIDATES
    return CANDIDATES


def row(cfg: dict) -> Run:
    return Run(Path("runs") / cfg["name"], "complete", cfg, {}, [], info={"sweep": None, "point": None})


def shown_difference(base: dict, raw: dict) -> list[str]:
    a, b = row(base), row(validate(raw, "changed.yaml"))
    describe([a, b])
    return differing([a, b])


def same(a: dict, b: dict) -> bool:
    """The same experiment, however its layers are written ({stride: 1} or the default)."""
    def layers(cfg):
        return [(name, {**defaults(LAYERS[name]), **opts}) for name, opts in layer_specs(cfg)]
    return layers(a) == layers(b) and {k: v for k, v in a.items() if k != "model"} == \
        {k: v for k, v in b.items() if k != "model"}


def options_in_the_schema() -> list[tuple[str, object, object]]:
    """(dotted key, where to set it, rule) for every option a config of BASE's shape can hold."""
    out = [(k, None, r) for k, r in validate.__globals__["Experiment"].options.items() if r is not None]
    out += [(f"data.{k}", None, r) for k, r in DataOptions.options.items()]
    out += [(f"data.augment.{k}", None, r) for k, r in Augment.options.items()]
    out += [(f"data.augment.elastic.{k}", None, r) for k, r in Elastic.options.items()]
    out += [(f"loss.{k}", None, r) for k, r in LOSSES["cross_entropy"].options.items()]
    out += [(f"early_stopping.{k}", None, r) for k, r in EarlyStopping.options.items()]
    for name, cls in OPTIMIZERS.items():
        out += [(f"optimizer.{k}", name, r) for k, r in cls.options.items()]
    for name, cls in SCHEDULES.items():
        out += [(f"optimizer.schedule.{k}", name, r) for k, r in cls.options.items()]
    for i, item in enumerate(BASE["model"]):
        name = item if isinstance(item, str) else next(iter(item))
        out += [(f"model.{i}.{name}.{k}", None, r) for k, r in LAYERS[name].options.items()]
    return out


def set_key(cfg: dict, key: str, value, kind) -> dict:
    cfg = copy.deepcopy(cfg)
    if key.startswith("optimizer.schedule."):
        cfg["optimizer"]["schedule"] = {"name": kind}
    elif key.startswith("optimizer."):
        cfg["optimizer"] = {"name": kind, "lr": 0.1}
    parts = key.split(".")
    node = cfg
    for part in parts[:-1]:
        if part.isdigit():
            node = node[int(part)]
            continue
        if node.get(part) is None:
            node[part] = {}
        elif not isinstance(node[part], (dict, list)):  # a layer's shorthand, {linear: 8}: its first option
            node[part] = {next(iter(LAYERS[part].options)): node[part]}
        node = node[part]
    node[parts[-1]] = value
    return cfg


@pytest.mark.parametrize("key,kind,rule", options_in_the_schema(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_option_changed_shows_as_a_differing_column(key, kind, rule):
    if key in SKIP:
        pytest.skip(SKIP[key])
    base_raw = set_key(BASE, key, None, kind) if kind else BASE
    if key == "data.test":  # MNIST has its own test split: a dataset without one
        base_raw = set_key(base_raw, "data.dataset", "digits8x8", None)
    if kind:  # the option's own optimizer or schedule, at its defaults, is what the change is made from
        node = base_raw["optimizer"] if not key.startswith("optimizer.schedule.") else base_raw["optimizer"]["schedule"]
        node.pop(key.rsplit(".", 1)[1], None)
    base = validate(base_raw, "base.yaml")
    tried = []
    for value in candidates(rule):
        try:
            changed = set_key(base_raw, key, value, kind)
            validated = validate(changed, "changed.yaml")
        except (ConfigError, KeyError, TypeError, AttributeError, IndexError):
            continue
        if same(validated, base):
            continue
        tried.append(value)
        columns = shown_difference(base, changed)
        assert set(columns) - {"params"}, f"{key}={value!r}: no column differs ({columns})"
        break
    assert tried, f"{key}: no other valid value found among the candidates"


def test_runs_and_compare_show_a_difference_the_named_columns_do_not(tmp_path):
    """Two real runs that differ only by label smoothing and train_eval: both commands show those columns."""
    plain = tiny(name="plain", loss="cross_entropy", model=[{"linear": 8}, "relu", {"linear": 2}], epochs=1,
                 outputs="light")
    smooth = {**plain, "name": "smooth", "loss": {"name": "cross_entropy", "label_smoothing": 0.1},
              "train_eval": 50}
    train(plain, tmp_path / "runs", "--quiet")
    train(smooth, tmp_path / "runs", "--quiet")
    for command in ("runs", "compare"):
        out = cli(command, tmp_path / "runs", "--format", "csv")
        assert out.exit_code == 0, out.output
        header = out.stdout.splitlines()[0].split(",")
        assert "loss.label_smoothing" in header and "train_eval" in header, (command, header)


@pytest.mark.parametrize("values", [[1, 1.0], [1, True], [0, False], [0.0, -0.0], [0.0, 0.0], [-0.0, -0.0],
                                    [float("nan"), float("nan")], [float("nan"), 1.0], ["1", 1], [None, "none"],
                                    [[3, 8], [3, 8]], [[3, 8], [3, 8.0]], [{"a": 1}, {"a": 1}], [2.5, 2.5, 2.5], [],
                                    [None, None], ["x", "x", "y"]])
def test_a_column_differs_exactly_when_its_values_write_different_json(values):
    """differing_rows tells values apart without writing each as JSON, and means what the JSON would."""
    import json

    from digitlab.runs.columns import differing_rows
    rows = [{"lr": value, "options": {"train_eval": value}} for value in values]
    expected = ["lr", "train_eval"] if len({json.dumps(v, sort_keys=True) for v in values}) > 1 else []
    assert differing_rows(rows) == expected
