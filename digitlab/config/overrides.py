"""`--set KEY=VALUE`: one override of a parsed config, before validation. KEY is a dotted path whose numbers
reach into lists (`model.2.dropout`, `data.digits`); VALUE is YAML (`[4, 9]`, `{name: step}`, `1e-3`)."""

from __future__ import annotations

import re
from typing import Any

from digitlab.config.reading import parse_yaml
from digitlab.errors import ConfigError
from digitlab.nn.registry import LAYERS

TEXT_KEYS = ("name",)  # keys whose value is text as typed, never YAML: name=yes is the name 'yes'


def parse_value(key: str, raw: str) -> Any:
    """The value of one assignment: YAML, except for the keys that are text as typed."""
    if key in TEXT_KEYS:
        return raw.strip()
    return parse_yaml(raw, f"--set {key}")


def apply_override(cfg: dict, assignment: str) -> None:
    """Apply one `--set a.b.0.c=VALUE` in place; VALUE is parsed as YAML, list positions are numbers."""
    source = "--set"
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(source, assignment, "expected KEY=VALUE, e.g. optimizer.lr=0.01")
    set_key(cfg, key, parse_value(key, raw), source)


def set_key(cfg: dict, key: str, value: Any, source: str = "--set") -> None:
    """Set the already-parsed `value` at the dotted path `key` of `cfg`, creating mappings on the way."""
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
        elif isinstance(node[part], (dict, list)):
            node = node[part]
        elif isinstance(part, str) and part in LAYERS and LAYERS[part].options:
            # {linear: 100} with --set model.0.linear.units=...: expand the shorthand first
            node[part] = {next(iter(LAYERS[part].options)): node[part]}
            node = node[part]
        else:
            raise ConfigError(source, here, f"is {node[part]!r}, which has no keys")
