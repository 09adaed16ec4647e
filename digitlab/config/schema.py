"""The config schema: the top-level keys and their defaults, and `validate`, which turns a parsed config into
the resolved one (every default filled in, every value checked) or raises one ConfigError naming the file, the
key path and what was expected.

What each layer, optimizer, schedule, dataset option and augmentation accepts is declared once, on its class
(`options`, with the constructor's defaults; see digitlab.options); this module only walks the config and asks
them. The resolved config is a plain dict: what `config.yaml` in a run folder holds, and what a sweep hashes to
identify a point.
"""

from __future__ import annotations

import copy
import os
import re
import unicodedata
from pathlib import Path
from typing import Any

from digitlab.config.memory import check_memory
from digitlab.data import DataOptions, check_data, open_source
from digitlab.errors import ConfigError, DataError
from digitlab.learner import EarlyStopping
from digitlab.nn import LAYERS, LOSSES, MODELS, OPTIMIZERS, SCHEDULES, ShapeError, build_layers
from digitlab.nn.model import plan
from digitlab.options import (
    Boolean,
    Choice,
    CountOrAll,
    Integer,
    Invalid,
    Nested,
    Rule,
    Text,
    check_keys,
    did_you_mean,
    resolve,
    show,
)


class Experiment:
    """The top level of a config. `name` names the run folder (default: the config file's stem); one `seed`
    drives the splits, the initial weights, the shuffles and dropout; `model` is the list of layers, or the name
    of a model fitted in one pass (average_image, nearest_mean); `early_stopping` stops when a metric stops
    improving (see learner.EarlyStopping); `test_every_epoch: false` scores the test set once, at the end,
    instead of after every epoch (so that nobody is tempted to pick a model by its test score)."""

    options = {"name": Text(), "seed": Integer(0, 2**32 - 1), "data": None, "model": None,
               "loss": None, "optimizer": None, "epochs": Integer(1, 100_000),
               "batch_size": Integer(1, 1_000_000), "early_stopping": Nested(EarlyStopping),
               "train_eval": CountOrAll(), "test_every_epoch": Boolean()}

    def __init__(self, name: str | None = None, seed: int = 0, data: dict | None = None, model: list | None = None,
                 loss: str = "cross_entropy", optimizer: dict | str = "sgd", epochs: int = 10, batch_size: int = 32,
                 early_stopping: dict | None = None, train_eval: int | str | None = None,
                 test_every_epoch: bool = True):
        pass  # the options are the point: see validate


# Keys added after digitlab 0.1, with the value that behaves as 0.1 did: a config that holds them at these values
# identifies the same experiment as one written before they existed (see identity()).
LATER_DEFAULTS: dict[tuple[str, ...], Any] = {("data", "dataset"): "mnist", ("data", "test"): None,
                                              ("test_every_epoch",): True, ("early_stopping",): None,
                                              ("optimizer", "decay_all"): True, ("train_eval",): None}


def validate(raw: Any, source: str = "config") -> dict:
    """A fully resolved config from a parsed one: defaults filled in, every value checked."""
    def fail(key: str, message: str):
        raise ConfigError(source, key, message)

    if not isinstance(raw, dict):
        fail("", f"expected a mapping of settings at the top level, got {show(raw)}")
    try:
        check_keys(raw, Experiment.options)
    except Invalid as exc:
        fail(exc.key, exc.message)
    cfg: dict = {"name": None, "seed": 0, "data": None, "model": None, "loss": "cross_entropy",
                 "optimizer": None, "epochs": 10, "batch_size": 32, "early_stopping": None, "train_eval": None,
                 "test_every_epoch": True}
    cfg.update(copy.deepcopy(raw))

    name = cfg["name"] if cfg["name"] is not None else Path(source).stem
    cfg["name"] = safe_name(_checked(Text(), name, "name", fail))
    for key in ("seed", "epochs", "batch_size", "early_stopping", "train_eval", "test_every_epoch"):
        cfg[key] = _checked(Experiment.options[key], cfg[key], key, fail)
    cfg["loss"] = _check_loss(cfg["loss"], fail)
    cfg["data"] = _check_data(cfg["data"], fail)
    cfg["optimizer"] = _check_optimizer(cfg["optimizer"], fail)
    model = cfg["model"]
    if isinstance(model, str):
        if model not in MODELS:
            fail("model", f"expected a list of layers or one of {', '.join(MODELS)}, got {show(model)}"
                          f"{did_you_mean(model, MODELS)}")
        specs = MODELS[model](len(cfg["data"]["digits"]))
    elif not isinstance(model, list) or not model:
        fail("model", f"expected a list of layers, e.g. [{{linear: 100}}, relu, {{linear: 10}}], or one of "
                      f"{', '.join(MODELS)}, got {show(model)}")
    else:
        checked = [check_layer(item, f"model.{i}", fail) for i, item in enumerate(model)]
        cfg["model"] = [kept for _, _, kept in checked]
        specs = [(n, o) for n, o, _ in checked]
    _check_closed_form(cfg, raw, specs, fail)
    _check_shapes(cfg, specs, source, fail)
    stopping = cfg["early_stopping"]
    if stopping and stopping["monitor"].startswith("val_") and not cfg["data"]["validation"]:
        fail("early_stopping.monitor", f"{stopping['monitor']} needs a validation split: set data.validation, "
                                       f"or monitor train_loss")
    return cfg


def _check_closed_form(cfg: dict, raw: dict, specs: list[tuple[str, dict]], fail) -> None:
    """A model fitted in one pass (class means) is its fitted layer after layers without parameters; it scores
    each class (cross_entropy) and takes one epoch."""
    fitted = [i for i, (name, _) in enumerate(specs) if LAYERS[name].closed_form]
    if not fitted:
        return
    what = cfg["model"] if isinstance(cfg["model"], str) else "class_means"
    head = LOSSES[loss_name(cfg)].fuses
    last = len(specs) - (2 if head is not None and LAYERS[specs[-1][0]] is head else 1)  # before a final softmax
    if fitted != [last]:
        fail("model", f"{what} is fitted in one pass: it must be the last layer, after layers without weights")
    if loss_name(cfg) != "cross_entropy":
        fail("loss", f"{what} scores each class: use cross_entropy (softmax over the scores), got {loss_name(cfg)}")
    if "epochs" not in raw:
        cfg["epochs"] = 1
    if cfg["epochs"] != 1:
        fail("epochs", f"{what} is fitted in one pass over the training data: epochs must be 1, got {cfg['epochs']}")


def _checked(rule: Rule, value, key: str, fail):
    try:
        return rule.check(value)
    except Invalid as exc:
        fail(f"{key}.{exc.key}" if exc.key else key, exc.message)


def _resolved(cls, given, key: str, fail, fill_defaults: bool = True) -> dict:
    try:
        return resolve(cls, given, fill_defaults)
    except Invalid as exc:
        fail(f"{key}.{exc.key}" if exc.key else key, exc.message)


def _mapping(value, key: str, allowed, fail) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(key, f"expected a mapping with keys {', '.join(allowed)}, got {show(value)}")
    return value


def validate_data(raw, source: str) -> dict:
    """A resolved data section on its own (what `digitlab data` looks at)."""
    def fail(key: str, message: str):
        raise ConfigError(source, key, message)
    return _check_data(raw, fail)


def _check_data(raw, fail) -> dict:
    data = _resolved(DataOptions, _mapping(raw, "data", DataOptions.options, fail), "data", fail)
    if data["path"] is not None:  # kept absolute, so the run's config.yaml works from any folder
        data["path"] = os.path.abspath(os.path.expanduser(data["path"]))
    try:
        return check_data(data)
    except Invalid as exc:
        fail(f"data.{exc.key}", exc.message)
    except DataError as exc:  # the dataset's files themselves: their own one-line error
        raise exc from None


def loss_name(cfg: dict) -> str:
    """The loss of a resolved config by name (`loss` is a name, or a mapping with a name and options)."""
    return cfg["loss"] if isinstance(cfg["loss"], str) else cfg["loss"]["name"]


def _check_loss(raw, fail) -> str | dict:
    """loss: a name (cross_entropy), or a mapping with its options ({name: cross_entropy, label_smoothing: 0.1});
    kept as written, with the defaults filled in when it is a mapping."""
    if isinstance(raw, dict):
        name = _checked(Choice(LOSSES), raw.get("name"), "loss.name", fail)
        return {"name": name, **_resolved(LOSSES[name], {k: v for k, v in raw.items() if k != "name"}, "loss", fail)}
    return _checked(Choice(LOSSES), raw, "loss", fail)


def _check_optimizer(raw, fail) -> dict:
    if raw is None:
        raw = "sgd"
    if isinstance(raw, str):
        raw = {"name": raw}
    opt = _mapping(raw, "optimizer", ["name", "schedule"], fail)
    name = _checked(Choice(OPTIMIZERS), opt.get("name", "sgd"), "optimizer.name", fail)
    cls = OPTIMIZERS[name]
    try:
        check_keys(opt, ["name", *cls.options, "schedule"], "optimizer")
    except Invalid as exc:
        fail(exc.key, exc.message)
    resolved = {"name": name, **_resolved(cls, {k: v for k, v in opt.items() if k not in ("name", "schedule")},
                                           "optimizer", fail)}
    if opt.get("schedule") is not None:
        resolved["schedule"] = _check_schedule(opt["schedule"], fail)
    return resolved


def _check_schedule(raw, fail) -> dict:
    """optimizer.schedule: a name (cosine) or a mapping {name: step, step_size: 10, gamma: 0.1, warmup: 1}."""
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        fail("optimizer.schedule", f"expected one of {', '.join(SCHEDULES)} or a mapping with a name, got {show(raw)}")
    name = _checked(Choice(SCHEDULES), raw.get("name"), "optimizer.schedule.name", fail)
    rest = {k: v for k, v in raw.items() if k != "name"}
    return {"name": name, **_resolved(SCHEDULES[name], rest, "optimizer.schedule", fail)}


def layer_class_name(name: str) -> str:
    """The first config name of a layer class: affine and dense are linear."""
    return next(n for n, cls in LAYERS.items() if cls is LAYERS[name])


def check_layer(item, key: str, fail) -> tuple[str, dict, Any]:
    """(config name, options, the item as the resolved config keeps it) for one entry of `model`."""
    if isinstance(item, str):
        name, arg = item, None
    elif isinstance(item, dict) and len(item) == 1:
        name, arg = next(iter(item.items()))
    else:
        fail(key, f"expected a layer such as 'relu' or {{linear: 100}}, got {show(item)}")
    if not isinstance(name, str) or name not in LAYERS:
        hint = did_you_mean(name, LAYERS) or f"; known layers: {', '.join(LAYERS)}"
        fail(key, f"unknown layer {name!r}{hint}")
    cls = LAYERS[name]
    first = next(iter(cls.options), None)
    if arg is None:
        given = {}
    elif isinstance(arg, dict):
        given = arg
    elif first is not None:
        given = {first: arg}
    else:
        fail(f"{key}.{name}", f"'{name}' takes no options, got {show(arg)}")
    try:
        opts = resolve(cls, given)
    except Invalid as exc:
        shown = f"{key}.{name}.{exc.key}" if exc.key and isinstance(arg, dict) else f"{key}.{name}"
        message = f"{exc.message}, e.g. {{{name}: 100}}" if exc.message.startswith("needs ") else exc.message
        fail(shown, message)
    if not opts:
        kept = name
    elif len(opts) == 1 and next(iter(opts)) == first:
        kept = {name: next(iter(opts.values()))}
    else:
        kept = {name: opts}
    return name, opts, kept


def layer_specs(cfg: dict) -> list[tuple[str, dict]]:
    """The (layer name, options) pairs of a validated config, for `build_model`."""
    def fail(key, message):
        raise ConfigError("config", key, message)
    if isinstance(cfg["model"], str):
        return MODELS[cfg["model"]](len(cfg["data"]["digits"]))
    return [check_layer(item, f"model.{i}", fail)[:2] for i, item in enumerate(cfg["model"])]


def _check_shapes(cfg: dict, specs: list[tuple[str, dict]], source: str, fail) -> None:
    """Build the model once (no weights drawn) to check that the layers fit each other, the data, the digits
    and the loss, and that it fits in memory."""
    data = open_source(cfg["data"])
    layers, in_shape, _ = build_layers(specs, data.image_shape, LOSSES[loss_name(cfg)].fuses)
    try:
        layer_shapes, param_shapes = plan(layers, in_shape)
    except ShapeError as exc:
        fail(f"model.{exc.index}", str(exc))
    fitted = [str(i) for i, layer in enumerate(layers) if layer.closed_form]
    if fitted and any(key.split(".")[0] not in fitted for key in param_shapes):
        fail("model", "a layer fitted in one pass (class_means) cannot follow layers with weights to train")
    check_memory(cfg, data, layer_shapes, param_shapes, fail)
    out_shape = layer_shapes[-1] if layer_shapes else in_shape
    n_classes, digits = len(cfg["data"]["digits"]), cfg["data"]["digits"]
    if len(out_shape) != 1:
        fail("model", f"the last layer gives outputs of shape {out_shape}; add flatten and a linear layer")
    outputs = out_shape[0]
    name = loss_name(cfg)
    if name == "cross_entropy" and outputs != n_classes:
        fail("model", f"the last layer gives {outputs} output(s), but cross_entropy over digits {digits} "
                      f"needs {n_classes} (one per digit)")
    if name in ("bce", "mse") and outputs not in ({1, n_classes} if n_classes == 2 else {n_classes}):
        needs = "1 (or 2, one per digit)" if n_classes == 2 else f"{n_classes} (one per digit)"
        fail("model", f"the last layer gives {outputs} output(s), but {name} over digits {digits} needs {needs}")
    if name == "bce" and LAYERS[specs[-1][0]] is not LAYERS["sigmoid"]:  # build_layers would add one silently
        fail(f"model.{len(specs) - 1}", "bce needs the model to end with 'sigmoid' (outputs in (0, 1))")


NAME_BYTES = 160  # a run folder's name adds '-<UTC time>-<n>'; file systems allow 255 bytes


def safe_name(name: str) -> str:
    """A run name that is one plain folder name: letters and digits of any script are kept; path separators,
    control characters, spaces and other odd characters become '-'; at most NAME_BYTES bytes of UTF-8."""
    name = unicodedata.normalize("NFC", name)
    cleaned = re.sub(r"[^\w.+=-]+", "-", name).strip(".-")
    while len(cleaned.encode("utf-8")) > NAME_BYTES:
        cleaned = cleaned[:-1]
    return cleaned.strip(".-") or "run"


def identity(cfg: dict) -> dict:
    """What identifies the experiment a resolved config describes: everything but its name, with keys added
    after digitlab 0.1 left out while they hold the value that behaves as before (so that a sweep point or a run
    recorded then is the same experiment now)."""
    out = copy.deepcopy({k: v for k, v in cfg.items() if k != "name"})
    for path, default in LATER_DEFAULTS.items():
        node = out
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node and node[path[-1]] == default:
            del node[path[-1]]
    return out
