"""Configs: YAML read safely, `--set KEY=VALUE` overrides applied, defaults filled in, everything validated
before any training, so that a mistake costs one line of output and not an hour of compute."""

from __future__ import annotations

import copy
import hashlib
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
           "warn_stderr", "read_run_config"]


def warn_stderr(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


def load_config(path: str | Path, overrides=(), warn=warn_stderr, memory: bool = True) -> dict:
    """Read, override, validate: the resolved config of a YAML file. Each override is `KEY=VALUE` (from --set)
    or an (option, `KEY=VALUE`) pair for one that another option gave (("--name", "name=x")): a mistake it causes
    is blamed on that option, and `warn(line)` hears what an override dropped. `memory`: check that training it
    fits in the memory free now (for a config about to be trained; see read_run_config for one read back)."""
    given = [("--set", o) if isinstance(o, str) else tuple(o) for o in overrides]
    raw = read_yaml(path)
    if isinstance(raw, dict):
        check_kind(raw, str(path), "train")
        for option, assignment in given:
            apply_override(raw, assignment, warn, option)
    try:
        cfg = validate(raw, str(path), memory)
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


_RUN_CONFIGS: dict[bytes, dict] = {}  # resolved configs by the bytes of their file: a sweep's points and copies of
                                      # one run share a text, read and validated once a process
RUN_CONFIGS_KEPT = 10_000  # at most this many (about 3.4 KB each); then the cache starts again


def read_run_config(path: str | Path, warn=warn_stderr) -> dict:
    """The resolved config of a run folder's config.yaml, read back (listing, comparing, a report, a sweep's look
    at its points): validated once per distinct content in this process, and without the memory check, which
    belongs to training (a finished run is no less valid on a machine with less memory free). A copy each time:
    callers may change it."""
    path = Path(path)
    try:
        key = hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return load_config(path, warn=warn, memory=False)  # says what is wrong with the file
    if key not in _RUN_CONFIGS:
        if len(_RUN_CONFIGS) >= RUN_CONFIGS_KEPT:
            _RUN_CONFIGS.clear()
        _RUN_CONFIGS[key] = load_config(path, warn=warn, memory=False)
    return _copied(_RUN_CONFIGS[key])


def _copied(value):
    """A copy of a resolved config (dicts, lists and scalars only), several times faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return copy.copy(value) if not isinstance(value, (str, int, float, bool, type(None))) else value
