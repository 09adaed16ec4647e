"""`--set KEY=VALUE`: one override of a parsed config, before validation. KEY is a dotted path whose numbers
reach into lists (`model.2.dropout`, `data.digits`); VALUE is YAML (`[4, 9]`, `{name: step}`, `1e-3`).

A mapping replaced by a single value loses its other keys, and that is said, never silent. Where the single value
has one meaning the rest can keep, it is merged instead: a layer's options given one value set the layer's first
option, as the shorthand does (`model.0.linear=200` on {linear: {units: 100, init: he}} keeps init: he). Anywhere
else (`optimizer=adam` on a mapping with lr, momentum and a schedule) the mapping is replaced, and the caller is
told which keys and values were dropped: the old options may not even exist for the new name.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from digitlab.config.reading import parse_yaml
from digitlab.errors import ConfigError
from digitlab.nn.registry import LAYERS

TEXT_KEYS = ("name",)  # keys whose value is text as typed, never YAML: name=yes is the name 'yes'


def parse_value(key: str, raw: str) -> Any:
    """The value of one assignment: YAML, except for the keys that are text as typed."""
    if key in TEXT_KEYS:
        return raw.strip()
    return parse_yaml(raw, f"--set {key}")


def apply_override(cfg: dict, assignment: str, warn=None, source: str = "--set") -> None:
    """Apply one `--set a.b.0.c=VALUE` in place; VALUE is parsed as YAML, list positions are numbers. `warn(line)`
    is told what a mapping replaced by a single value dropped. `source` is the option that gave it (--set, --name,
    --seed), which its errors and warnings name."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(source, assignment, "expected KEY=VALUE, e.g. optimizer.lr=0.01")
    dropped = set_key(cfg, key, parse_value(key, raw), source)
    if dropped and warn is not None:
        keys = ", ".join(f"{key}.{k}={_flow(v)}" for k, v in dropped.items())
        warn(f"{source} {key}={raw.strip()} replaces the whole mapping at {key}, dropping {keys}; set again any you "
             f"meant to keep ({source} {key}.KEY=VALUE)")


def _flow(value) -> str:
    """A value as YAML writes it on one line: 0.1, sgd, {name: step, step_size: 10}."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


def set_key(cfg: dict, key: str, value: Any, source: str = "--set") -> dict | None:
    """Set the already-parsed `value` at the dotted path `key` of `cfg`, creating mappings on the way. Returns what
    a mapping replaced by a single value dropped (its keys and values), or None; a layer's options given a single
    value keep the others (the value is the first option, as in the shorthand {linear: 100})."""
    parts = key.split(".")
    node: Any = cfg
    in_list = False  # node is an entry of a list (a layer of `model`)
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
            return _replace(node, part, value, in_list)
        if isinstance(node[part], (dict, list)):
            in_list = isinstance(node, list)
            node = node[part]
        elif isinstance(part, str) and part in LAYERS and LAYERS[part].options:
            # {linear: 100} with --set model.0.linear.units=...: expand the shorthand first
            node[part] = {next(iter(LAYERS[part].options)): node[part]}
            node, in_list = node[part], False
        else:
            raise ConfigError(source, here, f"is {node[part]!r}, which has no keys")
    return None


def _replace(node, part, value, layer_entry: bool) -> dict | None:
    """node[part] = value, merging a single value into a layer's options (see set_key); what was dropped, if
    anything."""
    old = node.get(part) if isinstance(node, dict) else None  # a list entry replaced is a layer for a layer
    if not isinstance(old, dict) or not old or isinstance(value, (dict, list)):
        node[part] = value
        return None
    layer = LAYERS.get(part) if layer_entry and isinstance(part, str) and len(node) == 1 else None
    if layer is not None and layer.options and value is not None:
        node[part] = {**old, next(iter(layer.options)): value}
        return None
    node[part] = value
    return old
