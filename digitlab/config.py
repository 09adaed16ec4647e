"""Configs: YAML read safely, defaults filled in, `--set KEY=VALUE` overrides applied, everything validated
before any training, so that a mistake costs one line of output and not an hour of compute.

Every error names the file, the key path and what was expected (`ConfigError`). The resolved config is a
plain dict: it is what `config.yaml` in a run folder holds, and what a sweep hashes to identify a point.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from digitlab.data.augment import AUGMENT_DEFAULTS, AUGMENT_OPTIONS, ELASTIC_DEFAULTS, ELASTIC_OPTIONS
from digitlab.errors import ConfigError
from digitlab.nn import LAYERS, LOSSES, OPTIMIZERS, ShapeError
from digitlab.nn.model import build_layers, plan

MAX_CONFIG_BYTES = 1_000_000
IMAGE_SHAPE = (1, 28, 28)

DEFAULTS: dict[str, Any] = {
    "name": None,  # the config file's stem
    "seed": 0,
    "data": {"digits": list(range(10)), "validation": 0.0, "limit": None, "path": None, "augment": None},
    "model": None,  # required
    "loss": "cross_entropy",
    "optimizer": {"name": "sgd"},
    "epochs": 10,
    "batch_size": 32,
}
OPTIMIZER_DEFAULTS = {
    "sgd": {"lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adam": {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
}


# -- reading ---------------------------------------------------------------------------------------------------
class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no Python tags), refusing aliases: a config has no use for them, and a chain of
    them ("billion laughs") expands exponentially."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed")
        return super().compose_node(parent, index)


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, "", f"invalid YAML: {where}{exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, "", f"invalid YAML: {exc}") from None


def read_yaml(path: str | Path) -> Any:
    """A YAML file's contents, refusing missing, huge, binary or malformed files with one line."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(path, "", f"file is {size} bytes; configs are at most {MAX_CONFIG_BYTES}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except IsADirectoryError:
        raise ConfigError(path, "", "is a folder, expected a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "", "is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(path, "", f"cannot be read ({exc.strerror})") from None
    return parse_yaml(text, str(path))


# -- overrides ---------------------------------------------------------------------------------------------------
def apply_override(cfg: dict, assignment: str) -> None:
    """Apply one `--set a.b.0.c=VALUE` in place; VALUE is parsed as YAML, list positions are numbers."""
    source = "--set"
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(source, assignment, "expected KEY=VALUE, e.g. optimizer.lr=0.01")
    value = parse_yaml(raw, f"--set {key}")
    parts = key.split(".")
    node: Any = cfg
    for depth, part in enumerate(parts):
        here = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not re.fullmatch(r"-?\d+", part) or not -len(node) <= int(part) < len(node):
                raise ConfigError(source, here, f"expected a position from 0 to {len(node) - 1}")
            part = int(part)
            if not last and isinstance(node[part], str):
                node[part] = {node[part]: None}  # model.3.units on a bare 'linear'
        elif isinstance(node, dict):
            if not last and node.get(part) is None:
                node[part] = {}
        else:
            raise ConfigError(source, here, f"cannot set a key inside {node!r}")
        if last:
            node[part] = value
        else:
            if isinstance(node[part], (dict, list)):
                node = node[part]
            elif isinstance(part, str) and part in LAYERS and _canonical(part) in LAYER_OPTIONS:
                # {linear: 100} with --set model.0.linear.units=...: expand the shorthand first
                node[part] = {next(iter(LAYER_OPTIONS[_canonical(part)])): node[part]}
                node = node[part]
            else:
                raise ConfigError(source, here, f"is {node[part]!r}, which has no keys")


# -- checks ------------------------------------------------------------------------------------------------------
class _Checker:
    """Type and range checks that raise ConfigError(source, key, ...)."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, message: str):
        raise ConfigError(self.source, key, message)

    def mapping(self, value, key: str, allowed: list[str]) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping with keys {', '.join(allowed)}, got {_show(value)}")
        for k in value:
            if k not in allowed:
                path = f"{key}.{k}" if key else str(k)
                close = difflib.get_close_matches(str(k), allowed, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; expected one of: {', '.join(allowed)}"
                self.fail(path, f"unknown key{hint}")
        return value

    def number(self, value, key: str, low=None, high=None, low_open=False, high_open=False) -> float:
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(key, f"expected a number{_range(low, high, low_open, high_open)}, got {_show(value)}")
        if (low is not None and (value < low or (low_open and value == low))) or \
                (high is not None and (value > high or (high_open and value == high))):
            self.fail(key, f"expected a number{_range(low, high, low_open, high_open)}, got {value}")
        return float(value)

    def integer(self, value, key: str, low=None, high=None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                self.fail(key, f"expected a whole number{_range(low, high)}, got {_show(value)}")
        if (low is not None and value < low) or (high is not None and value > high):
            self.fail(key, f"expected a whole number{_range(low, high)}, got {value}")
        return int(value)

    def boolean(self, value, key: str) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_show(value)}")
        return value

    def choice(self, value, key: str, choices) -> str:
        choices = list(choices)
        if not isinstance(value, str) or value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            self.fail(key, f"expected one of {', '.join(choices)}, got {_show(value)}{hint}")
        return value

    def text(self, value, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"expected a non-empty string, got {_show(value)}")
        return value


def _show(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}" if value is not None else "nothing"


def _range(low, high, low_open=False, high_open=False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


# Options of each layer: (check, arguments). The first is the shorthand: {linear: 100} is {linear: {units: 100}}.
LAYER_OPTIONS: dict[str, dict[str, tuple]] = {
    "linear": {"units": ("integer", 1, None), "init": ("choice", ("he", "kaiming", "xavier", "glorot", "normal", "zeros")),
               "scale": ("number", 0, None, True), "bias": ("boolean",)},
    "dropout": {"p": ("number", 0, 1, False, True)},
    "conv2d": {"filters": ("integer", 1, None), "kernel": ("integer", 1, None), "stride": ("integer", 1, None),
               "padding": ("choice", ("valid", "same")),
               "init": ("choice", ("he", "kaiming", "xavier", "glorot", "normal", "zeros")),
               "scale": ("number", 0, None, True), "bias": ("boolean",)},
    "maxpool2d": {"size": ("integer", 1, None), "stride": ("integer", 1, None)},
    "batchnorm": {"momentum": ("number", 0, 1), "eps": ("number", 0, None, True)},
}
REQUIRED_OPTION = {"linear": "units", "conv2d": "filters"}
OPTIMIZER_OPTIONS = {
    "sgd": {"lr": ("number", 0, None, True), "momentum": ("number", 0, 1, False, True),
            "nesterov": ("boolean",), "weight_decay": ("number", 0, None)},
    "adam": {"lr": ("number", 0, None, True), "eps": ("number", 0, None, True), "weight_decay": ("number", 0, None)},
}


def _canonical(name: str) -> str:
    """The first config name of a layer class: affine and dense are linear."""
    return next(n for n, cls in LAYERS.items() if cls is LAYERS[name])


def _check_option(check: _Checker, value, key: str, rule: tuple):
    kind, *args = rule
    return getattr(check, kind)(value, key, *args) if kind != "choice" else check.choice(value, key, args[0])


def _check_layer(check: _Checker, item, key: str) -> tuple[str, dict, Any]:
    """(config name, options, the item as the resolved config keeps it) for one entry of `model`."""
    if isinstance(item, str):
        name, arg = item, None
    elif isinstance(item, dict) and len(item) == 1:
        name, arg = next(iter(item.items()))
    else:
        check.fail(key, f"expected a layer such as 'relu' or {{linear: 100}}, got {_show(item)}")
    if not isinstance(name, str) or name not in LAYERS:
        close = difflib.get_close_matches(str(name), list(LAYERS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known layers: {', '.join(LAYERS)}"
        check.fail(key, f"unknown layer {name!r}{hint}")
    rules = LAYER_OPTIONS.get(_canonical(name), {})
    if arg is None:
        opts = {}
    elif isinstance(arg, dict):
        opts = dict(check.mapping(arg, f"{key}.{name}", list(rules)))
    elif rules:
        opts = {next(iter(rules)): arg}
    else:
        check.fail(f"{key}.{name}", f"'{name}' takes no options, got {_show(arg)}")
    for opt, value in opts.items():
        shown = f"{key}.{name}" if not isinstance(arg, dict) else f"{key}.{name}.{opt}"
        opts[opt] = _check_option(check, value, shown, rules[opt])
    required = REQUIRED_OPTION.get(_canonical(name))
    if required and required not in opts:
        check.fail(f"{key}.{name}", f"needs '{required}', e.g. {{{name}: 100}}")
    if not opts:
        kept = name
    elif len(opts) == 1 and next(iter(opts)) == next(iter(rules)):
        kept = {name: next(iter(opts.values()))}
    else:
        kept = {name: opts}
    return name, opts, kept


def layer_specs(cfg: dict) -> list[tuple[str, dict]]:
    """The (layer name, options) pairs of a validated config, for `build_model`."""
    check = _Checker("config")
    return [_check_layer(check, item, f"model.{i}")[:2] for i, item in enumerate(cfg["model"])]


def validate(raw: Any, source: str = "config") -> dict:
    """A fully resolved config from a parsed one: defaults filled in, every value checked."""
    check = _Checker(source)
    if not isinstance(raw, dict):
        check.fail("", f"expected a mapping of settings at the top level, got {_show(raw)}")
    check.mapping(raw, "", list(DEFAULTS))
    cfg = copy.deepcopy(DEFAULTS)
    cfg.update({k: copy.deepcopy(v) for k, v in raw.items() if k not in ("data", "optimizer")})

    name = raw.get("name") or Path(source).stem
    cfg["name"] = safe_name(check.text(str(name) if isinstance(name, (int, float)) else name, "name"))
    cfg["seed"] = check.integer(cfg["seed"], "seed", 0, 2**32 - 1)
    cfg["epochs"] = check.integer(cfg["epochs"], "epochs", 1, 100_000)
    cfg["batch_size"] = check.integer(cfg["batch_size"], "batch_size", 1, 1_000_000)

    data = check.mapping(raw.get("data"), "data", list(DEFAULTS["data"]))
    cfg["data"].update(data)
    digits = cfg["data"]["digits"]
    if not isinstance(digits, list):
        check.fail("data.digits", f"expected a list of at least two distinct digits 0-9, e.g. [3, 8], got {_show(digits)}")
    digits = [check.integer(d, f"data.digits.{i}", 0, 9) for i, d in enumerate(digits)]
    if len(set(digits)) != len(digits) or len(digits) < 2:
        check.fail("data.digits", f"expected at least two distinct digits 0-9, got {digits}")
    cfg["data"]["digits"] = digits
    cfg["data"]["validation"] = check.number(cfg["data"]["validation"], "data.validation", 0, 1, high_open=True)
    if cfg["data"]["limit"] is not None:
        cfg["data"]["limit"] = check.integer(cfg["data"]["limit"], "data.limit", 1)
    if cfg["data"]["path"] is not None:  # kept absolute, so the run's config.yaml works from any folder
        cfg["data"]["path"] = os.path.abspath(os.path.expanduser(check.text(cfg["data"]["path"], "data.path")))
    cfg["data"]["augment"] = _check_augment(check, cfg["data"]["augment"])

    cfg["loss"] = check.choice(cfg["loss"], "loss", LOSSES)
    cfg["optimizer"] = _check_optimizer(check, raw.get("optimizer"))

    model = cfg["model"]
    if not isinstance(model, list) or not model:
        check.fail("model", f"expected a list of layers, e.g. [{{linear: 100}}, relu, {{linear: 10}}], got {_show(model)}")
    checked = [_check_layer(check, item, f"model.{i}") for i, item in enumerate(model)]
    cfg["model"] = [kept for _, _, kept in checked]
    _check_shapes(check, cfg, [(n, o) for n, o, _ in checked])
    return cfg


def _check_optimizer(check: _Checker, raw) -> dict:
    if isinstance(raw, str):
        raw = {"name": raw}
    opt = check.mapping(raw, "optimizer", ["name", "lr", "momentum", "nesterov", "weight_decay", "betas", "eps",
                                           "schedule"])
    name = check.choice(opt.get("name", "sgd"), "optimizer.name", OPTIMIZERS)
    allowed = ["name"] + list(OPTIMIZER_DEFAULTS[name]) + ["schedule"]
    check.mapping(opt, "optimizer", allowed)
    resolved = {"name": name, **copy.deepcopy(OPTIMIZER_DEFAULTS[name]),
                **{k: v for k, v in opt.items() if k not in ("name", "schedule")}}
    for key, rule in OPTIMIZER_OPTIONS[name].items():
        resolved[key] = _check_option(check, resolved[key], f"optimizer.{key}", rule)
    if opt.get("schedule") is not None:
        resolved["schedule"] = _check_schedule(check, opt["schedule"])
    if name == "adam":
        betas = resolved["betas"]
        if not isinstance(betas, list) or len(betas) != 2:
            check.fail("optimizer.betas", f"expected two numbers in [0, 1), e.g. [0.9, 0.999], got {_show(betas)}")
        resolved["betas"] = [check.number(b, f"optimizer.betas.{i}", 0, 1, high_open=True) for i, b in enumerate(betas)]
    return resolved


SCHEDULE_OPTIONS = {
    "constant": {"warmup": ("number", 0, None)},
    "step": {"step_size": ("integer", 1, None), "gamma": ("number", 0, 1, True), "warmup": ("number", 0, None)},
    "cosine": {"warmup": ("number", 0, None)},
}
SCHEDULE_DEFAULTS = {"constant": {"warmup": 0}, "step": {"step_size": 10, "gamma": 0.1, "warmup": 0},
                     "cosine": {"warmup": 0}}


def _check_schedule(check: _Checker, raw) -> dict:
    """optimizer.schedule: a name (cosine) or a mapping {name: step, step_size: 10, gamma: 0.1, warmup: 1}."""
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        check.fail("optimizer.schedule", f"expected one of {', '.join(SCHEDULE_OPTIONS)} or a mapping with a name, "
                                         f"got {_show(raw)}")
    name = check.choice(raw.get("name"), "optimizer.schedule.name", SCHEDULE_OPTIONS)
    check.mapping(raw, "optimizer.schedule", ["name"] + list(SCHEDULE_OPTIONS[name]))
    resolved = {"name": name, **SCHEDULE_DEFAULTS[name], **{k: v for k, v in raw.items() if k != "name"}}
    for key, rule in SCHEDULE_OPTIONS[name].items():
        resolved[key] = _check_option(check, resolved[key], f"optimizer.schedule.{key}", rule)
    return resolved


def _check_augment(check: _Checker, raw) -> dict | None:
    """data.augment: null/false, or {shift: 2, rotate: 10, scale: 0.1, elastic: false | true | {alpha, sigma}}."""
    if raw is None or raw is False:
        return None
    opts = check.mapping(raw if raw is not True else {}, "data.augment", list(AUGMENT_OPTIONS))
    resolved = {**AUGMENT_DEFAULTS, **opts}
    for key, rule in AUGMENT_OPTIONS.items():
        if rule is not None:
            resolved[key] = _check_option(check, resolved[key], f"data.augment.{key}", rule)
    elastic = resolved["elastic"]
    if isinstance(elastic, dict):
        check.mapping(elastic, "data.augment.elastic", list(ELASTIC_OPTIONS))
        elastic = {**ELASTIC_DEFAULTS, **elastic}
        resolved["elastic"] = {k: _check_option(check, elastic[k], f"data.augment.elastic.{k}", rule)
                               for k, rule in ELASTIC_OPTIONS.items()}
    elif elastic is not None:
        resolved["elastic"] = check.boolean(elastic, "data.augment.elastic")
    return resolved


def _check_shapes(check: _Checker, cfg: dict, specs: list[tuple[str, dict]]) -> None:
    """Build the model once (no weights drawn) to check that the layers fit each other, the digits and the loss."""
    loss = LOSSES[cfg["loss"]]
    layers, in_shape, head = build_layers(specs, IMAGE_SHAPE, loss.fuses)
    try:
        layer_shapes, param_shapes = plan(layers, in_shape)
    except ShapeError as exc:
        check.fail(f"model.{exc.index}", str(exc))
    _check_memory(check, cfg, layer_shapes, param_shapes)
    out_shape = layer_shapes[-1] if layer_shapes else in_shape
    n_classes, digits = len(cfg["data"]["digits"]), cfg["data"]["digits"]
    if len(out_shape) != 1:
        check.fail("model", f"the last layer gives outputs of shape {out_shape}; add flatten and a linear layer")
    outputs = out_shape[0]
    name = cfg["loss"]
    if name == "cross_entropy" and outputs != n_classes:
        check.fail("model", f"the last layer gives {outputs} output(s), but cross_entropy over digits {digits} "
                            f"needs {n_classes} (one per digit)")
    if name in ("bce", "mse") and outputs not in ({1, n_classes} if n_classes == 2 else {n_classes}):
        needs = "1 (or 2, one per digit)" if n_classes == 2 else f"{n_classes} (one per digit)"
        check.fail("model", f"the last layer gives {outputs} output(s), but {name} over digits {digits} needs {needs}")
    if name == "bce" and LAYERS[specs[-1][0]] is not LAYERS["sigmoid"]:  # build_layers would add one silently
        check.fail(f"model.{len(specs) - 1}", "bce needs the model to end with 'sigmoid' (outputs in (0, 1))")


def available_memory() -> int:
    """Bytes of memory available to a new process (MemAvailable), or all physical memory where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def estimate_memory(cfg: dict, layer_shapes: list, param_shapes: dict) -> tuple[int, int]:
    """(bytes, parameters) a config needs, roughly: parameters with their gradients, optimizer state and
    scratch; activations of a training batch (forward and backward) and of an evaluation batch; the images."""
    params = sum(math.prod(s) for s in param_shapes.values())
    optimizer_buffers = 2 if cfg["optimizer"]["name"] == "adam" else 1
    activations = sum(math.prod(s) for s in layer_shapes) + math.prod(IMAGE_SHAPE)
    images = 70_000 * math.prod(IMAGE_SHAPE)
    floats = params * (3 + optimizer_buffers) + activations * (3 * cfg["batch_size"] + 2 * 2000) + images
    return 4 * floats, params


def _check_memory(check: _Checker, cfg: dict, layer_shapes: list, param_shapes: dict) -> None:
    need, params = estimate_memory(cfg, layer_shapes, param_shapes)
    have = available_memory()
    if need > have:
        check.fail("model", f"needs about {need / 2**30:.1f} GiB of memory ({params:,} parameters, batch_size "
                            f"{cfg['batch_size']}), more than the {have / 2**30:.1f} GiB available")


def safe_name(name: str) -> str:
    """A run name that is one plain folder name: path separators and odd characters become '-'."""
    cleaned = re.sub(r"[^A-Za-z0-9._+=-]+", "-", name).strip(".-")[:80]
    return cleaned or "run"


def load_config(path: str | Path, overrides: tuple[str, ...] = ()) -> dict:
    """Read, override, validate: the resolved config of a YAML file."""
    raw = read_yaml(path)
    if isinstance(raw, dict):
        for assignment in overrides:
            apply_override(raw, assignment)
    try:
        return validate(raw, str(path))
    except ConfigError as exc:
        keys = [a.partition("=")[0].strip() for a in overrides]
        if any(exc.key == k or exc.key.startswith(k + ".") or k.startswith(exc.key + ".") for k in keys if exc.key):
            raise ConfigError(f"{path} (--set)", exc.key, exc.message) from None
        raise


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)
