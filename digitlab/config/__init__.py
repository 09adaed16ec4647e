"""Configs: YAML read safely, `--set KEY=VALUE` overrides applied, defaults filled in, everything validated
before any training, so that a mistake costs one line of output and not an hour of compute."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from digitlab.config.overrides import apply_override, set_key
from digitlab.config.reading import dump, parse_yaml, read_yaml
from digitlab.config.schema import identity, layer_specs, loss_name, safe_name, validate, validate_data
from digitlab.errors import ConfigError

__all__ = ["apply_override", "set_key", "dump", "parse_yaml", "read_yaml", "identity", "layer_specs", "loss_name",
           "safe_name",
           "validate", "validate_data", "load_config", "config_hash"]


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


def config_hash(cfg: dict) -> str:
    """8 hex digits of the SHA-256 of a resolved config's identity: everything that changes results."""
    text = json.dumps(identity(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]
