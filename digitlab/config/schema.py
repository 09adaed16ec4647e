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
from digitlab.nn import LAYERS, LOSSES, MODELS, OPTIMIZERS, SCHEDULES, ShapeError, Softmax, build_layers
from digitlab.nn.model import plan
from digitlab.nn.registry import layer_name
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
    defaults,
    did_you_mean,
    plural,
    resolve,
    show,
)

OUTPUT_LEVELS = ("full", "light")  # full: figures and report.html when a run ends; light: what they are drawn from


class Experiment:
    """The top level of a config. `name` names the run folder (default: the config file's stem); one `seed`
    drives the splits, the initial weights, the shuffles and dropout; `model` is the list of layers, or the name
    of a model fitted in one pass (average_image, nearest_mean); `early_stopping` stops when a metric stops
    improving (see learner.EarlyStopping); `test_every_epoch: false` scores the test set once, at the end,
    instead of after every epoch (so that nobody is tempted to pick a model by its test score); `outputs: light`
    ends a run with the files its figures are drawn from and no figures (a sweep's default: drawing is most of a
    small run's time), which `digitlab report` draws when someone looks; `init_from` names a run folder whose
    trained weights the network starts from (see run.transfer; kept as an absolute path)."""

    options = {"name": Text(), "seed": Integer(0, 2**32 - 1), "data": None, "model": None,
               "loss": None, "optimizer": None, "epochs": Integer(1, 100_000),
               "batch_size": Integer(1, 1_000_000), "early_stopping": Nested(EarlyStopping),
               "train_eval": CountOrAll(), "test_every_epoch": Boolean(), "outputs": Choice(OUTPUT_LEVELS),
               "init_from": Text()}

    def __init__(self, name: str | None = None, seed: int = 0, data: dict | None = None, model: list | None = None,
                 loss: str = "cross_entropy", optimizer: dict | str = "sgd", epochs: int = 10, batch_size: int = 32,
                 early_stopping: dict | None = None, train_eval: int | str | None = None,
                 test_every_epoch: bool = True, outputs: str = "full", init_from: str | None = None):
        pass  # the options are the point: see validate


def file_kind(raw) -> str | None:
    """The command a parsed YAML file is for: 'sweep' (a `base` config and what varies, no experiment keys),
    'train' (experiment keys, no `base`), or None when it is neither clearly."""
    if not isinstance(raw, dict):
        return None
    keys = set(map(str, raw)) - {"name"}
    ours = keys & set(Experiment.options)
    if "base" in keys and not ours:
        return "sweep"
    return "train" if ours and "base" not in keys else None


def check_kind(raw, source: str, command: str) -> None:
    """A sweep file given to `digitlab train`, or a train config given to `digitlab sweep`, is one line naming the
    command it is for (rather than an unknown-key error about its first key)."""
    kind = file_kind(raw)
    if kind is not None and kind != command:
        what = "a sweep file" if kind == "sweep" else "a train config"
        raise ConfigError(source, "", f"this is {what}; use digitlab {kind} {source}")


def validate(raw: Any, source: str = "config", memory: bool = True) -> dict:
    """A fully resolved config from a parsed one: defaults filled in, every value checked. `memory`: also check
    that training it fits in the memory this process may allocate now, which only training asks (a finished run
    read back on a machine with less free memory is no less valid)."""
    def fail(key: str, message: str):
        raise ConfigError(source, key, message)

    if not isinstance(raw, dict):
        fail("", f"expected a mapping of settings at the top level, got {show(raw)}")
    check_kind(raw, source, "train")
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
    for key in ("seed", "epochs", "early_stopping", "train_eval", "test_every_epoch"):
        cfg[key] = _checked(Experiment.options[key], cfg[key], key, fail)
    if cfg.get("init_from") is not None:  # kept absolute, so the run's config.yaml works from any folder
        cfg["init_from"] = os.path.abspath(os.path.expanduser(_checked(Text(), cfg["init_from"], "init_from", fail)))
    else:
        cfg.pop("init_from", None)
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
    if not _check_closed_form(cfg, raw, specs, fail):
        cfg["batch_size"] = _checked(Experiment.options["batch_size"], cfg["batch_size"], "batch_size", fail)
    _check_shapes(cfg, specs, source, fail, memory)
    _check_loss_input(loss_name(cfg), specs, fail)
    stopping = cfg["early_stopping"]
    if stopping and stopping["monitor"].startswith("val_") and not cfg["data"]["validation"]:
        fail("early_stopping.monitor", f"{stopping['monitor']} needs a validation split: set data.validation, "
                                       f"or monitor train_loss")
    return cfg


def _check_closed_form(cfg: dict, raw: dict, specs: list[tuple[str, dict]], fail) -> bool:
    """A model fitted in one pass (class means) is its fitted layer after layers without parameters; it scores
    each class (cross_entropy: the loss its metrics report) and takes one epoch. It uses no optimizer and no
    batches, so its resolved config holds null for both. Returns whether the model is one."""
    fitted = [i for i, (name, _) in enumerate(specs) if LAYERS[name].closed_form]
    if not fitted:
        return False
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
    cfg["optimizer"] = cfg["batch_size"] = None
    return True


def unused_by_one_pass(raw: dict) -> list[str]:
    """The keys of a parsed config that a model fitted in one pass does not use (optimizer, batch_size) and that
    it sets to something other than their defaults: what the user asked for in vain. The defaults themselves, which
    a run folder's config.yaml may record, ask for nothing."""
    def fail(key: str, message: str):
        raise ConfigError("config", key, message)
    unused = []
    if raw.get("optimizer") is not None and _check_optimizer(raw["optimizer"], fail) != default_optimizer():
        unused.append("optimizer")
    if raw.get("batch_size") is not None and raw["batch_size"] != defaults(Experiment)["batch_size"]:
        unused.append("batch_size")
    return unused


def _check_loss_input(name: str, specs: list[tuple[str, dict]], fail) -> None:
    """What the loss receives must be what it expects. bce needs the model to end with the sigmoid it fuses
    (build_layers would add one silently). A loss on logits (bce, cross_entropy) refuses outputs that an
    activation has bounded: the layer that sets their range, looking back past the fused activation and past
    layers that keep a bound (dropout, pooling, flatten), must not be one that `gives` bounded values. mse takes
    outputs as they are: any last layer can be right (see docs/configs.md for each pair)."""
    loss, classes = LOSSES[name], [LAYERS[n] for n, _ in specs]
    fused = loss.fuses
    fused_name = layer_name(fused) if fused else ""
    if loss.needs_fused and classes[-1] is not fused:
        fail(f"model.{len(specs) - 1}", f"{name} needs the model to end with '{fused_name}' (outputs in (0, 1))")
    i = len(specs) - 1 - (fused is not None and classes[-1] is fused)
    while i >= 0 and classes[i].keeps_range:
        i -= 1
    if not loss.takes_logits or i < 0 or classes[i].gives is None:
        return
    layer = layer_class_name(specs[i][0])
    said = f"{name} takes logits (any real number) and applies {fused_name} itself; '{layer}' "
    if classes[i] is fused:
        fail(f"model.{i}", f"{said}here gives {classes[i].gives}, so the loss would see a {fused_name} of a "
                           f"{fused_name}: remove it (one final {fused_name} is fused into the loss)")
    where = f"before the final {fused_name}" if loss.needs_fused else "here"
    fail(f"model.{i}", f"{said}{where} gives only {classes[i].gives}: remove it, or use mse (which takes the outputs "
                       f"as they are)")


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


def default_optimizer() -> dict:
    """The resolved optimizer of a config that names none: sgd with its defaults."""
    return _check_optimizer(None, None)


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
    """(config name, options, the item as the resolved config keeps it) for one entry of `model`. The kept item
    says what trains: a layer given without options keeps its defaults written out ({dropout: {p: 0.5}}); one
    given its first option alone keeps the shorthand ({linear: 100}); others keep the options given."""
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
    written = written_defaults(cls)
    if not cls.options or (not given and not written):
        kept = name
    elif not given or (isinstance(arg, dict) and opts == written):  # bare or null: the defaults it trains with
        kept = {name: written}
    elif len(opts) == 1 and next(iter(opts)) == first:
        kept = {name: next(iter(opts.values()))}
    else:
        kept = {name: opts}
    return name, opts, kept


def written_defaults(cls) -> dict:
    """The defaults of a layer's options as the resolved config writes them for a layer given without options
    (`- dropout` is {dropout: {p: 0.5}}): every option with a default other than null (null means 'derived',
    as a pooling stride that follows the size)."""
    return {k: cls.options[k].check(v) for k, v in defaults(cls).items() if v is not None}


def layer_specs(cfg: dict) -> list[tuple[str, dict]]:
    """The (layer name, options) pairs of a validated config, for `build_model`."""
    def fail(key, message):
        raise ConfigError("config", key, message)
    if isinstance(cfg["model"], str):
        return MODELS[cfg["model"]](len(cfg["data"]["digits"]))
    return [check_layer(item, f"model.{i}", fail)[:2] for i, item in enumerate(cfg["model"])]


def _check_shapes(cfg: dict, specs: list[tuple[str, dict]], source: str, fail, memory: bool = True) -> None:
    """Build the model once (no weights drawn) to check that the layers fit each other, the data, the digits
    and the loss, and (with `memory`) that training it fits in memory."""
    data = open_source(cfg["data"])
    layers, in_shape, _ = build_layers(specs, data.image_shape, LOSSES[loss_name(cfg)].fuses)
    try:
        layer_shapes, param_shapes = plan(layers, in_shape)
    except ShapeError as exc:
        fail(f"model.{exc.index}", str(exc))
    fitted = [str(i) for i, layer in enumerate(layers) if layer.closed_form]
    if fitted and any(key.split(".")[0] not in fitted for key in param_shapes):
        fail("model", "a layer fitted in one pass (class_means) cannot follow layers with weights to train")
    for i, layer in enumerate(layers):
        if isinstance(layer, Softmax) and layer_shapes[i] == (1,):
            fail(f"model.{i}", "softmax over a single output is always 1; it needs two or more (or use sigmoid)")
    if memory:
        check_memory(cfg, data, layer_shapes, param_shapes, fail, layers)
    out_shape = layer_shapes[-1] if layer_shapes else in_shape
    n_classes, digits = len(cfg["data"]["digits"]), cfg["data"]["digits"]
    if len(out_shape) != 1:
        fail("model", f"the last layer gives outputs of shape {out_shape}; add flatten and a linear layer")
    outputs = out_shape[0]
    name = loss_name(cfg)
    if name == "cross_entropy" and outputs != n_classes:
        fail("model", f"the last layer gives {plural(outputs, 'output')}, but cross_entropy over digits {digits} "
                      f"needs {n_classes} (one per digit)")
    if name in ("bce", "mse") and outputs not in ({1, n_classes} if n_classes == 2 else {n_classes}):
        needs = "1 (or 2, one per digit)" if n_classes == 2 else f"{n_classes} (one per digit)"
        fail("model", f"the last layer gives {plural(outputs, 'output')}, but {name} over digits {digits} needs "
                      f"{needs}")


NAME_BYTES = 160  # a run folder's name adds '-<UTC time>-<n>'; file systems allow 255 bytes


def safe_name(name: str) -> str:
    """A run name that is one plain folder name: letters and digits of any script are kept; path separators,
    control characters, spaces and other odd characters become '-'; at most NAME_BYTES bytes of UTF-8."""
    name = unicodedata.normalize("NFC", name)
    cleaned = re.sub(r"[^\w.+=-]+", "-", name).strip(".-")
    while len(cleaned.encode("utf-8")) > NAME_BYTES:
        cleaned = cleaned[:-1]
    return cleaned.strip(".-") or "run"
