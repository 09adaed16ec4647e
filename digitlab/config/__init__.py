"""Configs: YAML read safely, `--set KEY=VALUE` overrides applied, defaults filled in, everything validated
before any training, so that a mistake costs one line of output and not an hour of compute."""

from __future__ import annotations

import sys
from pathlib import Path

from digitlab.config.identity import config_hash, identity
from digitlab.config.overrides import apply_override, set_key
from digitlab.config.reading import dump, parse_yaml, read_yaml
from digitlab.config.schema import (
    check_kind,
    layer_specs,
    loss_name,
    safe_name,
    unused_by_one_pass,
    validate,
    validate_data,
)
from digitlab.errors import ConfigError

__all__ = ["apply_override", "set_key", "dump", "parse_yaml", "read_yaml", "identity", "layer_specs", "loss_name",
           "safe_name", "check_kind", "validate", "validate_data", "load_config", "config_hash",
           "warn_stderr"]


def warn_stderr(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


def load_config(path: str | Path, overrides=(), warn=warn_stderr) -> dict:
    """Read, override, validate: the resolved config of a YAML file. Each override is `KEY=VALUE` (from --set)
    or an (option, `KEY=VALUE`) pair for one that another option gave (("--name", "name=x")): a mistake it causes
    is blamed on that option, and `warn(line)` hears what an override dropped."""
    given = [("--set", o) if isinstance(o, str) else tuple(o) for o in overrides]
    raw = read_yaml(path)
    if isinstance(raw, dict):
        check_kind(raw, str(path), "train")
        for option, assignment in given:
            apply_override(raw, assignment, warn, option)
    try:
        cfg = validate(raw, str(path))
    except ConfigError as exc:
        for option, assignment in reversed(given):  # the last one to set a key is the one that counts
            k = assignment.partition("=")[0].strip()
            if exc.key and k and (exc.key == k or exc.key.startswith(k + ".") or k.startswith(exc.key + ".")):
                raise ConfigError(f"{path} ({option})", exc.key, exc.message) from None
        raise
    unused = unused_by_one_pass(raw) if cfg["optimizer"] is None else []
    if unused:
        warn(f"{path}: {' and '.join(unused)} unused: the model is fitted in one pass (class means), without "
             f"an optimizer or batches; the run records neither")
    return cfg
