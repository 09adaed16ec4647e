"""What identifies an experiment: a resolved config without its name, in the form digitlab 0.1 recorded it, and
its hash. A sweep finds its points by this hash, and a run's files (model.npz, the records) carry it, so the same
experiment must hash the same whichever digitlab version resolved its config."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from digitlab.config.schema import Experiment, default_optimizer, written_defaults
from digitlab.nn import LAYERS
from digitlab.options import defaults

# Keys added after digitlab 0.1, with the value that behaves as 0.1 did: a config that holds them at these values
# identifies the same experiment as one written before they existed (see identity()).
LATER_DEFAULTS: dict[tuple[str, ...], Any] = {("data", "dataset"): "mnist", ("data", "test"): None,
                                              ("test_every_epoch",): True, ("early_stopping",): None,
                                              ("optimizer", "decay_all"): True, ("train_eval",): None,
                                              ("init_from",): None}


NOT_IDENTITY = ("name", "outputs")  # what a run is called and which figures it draws change none of its numbers


def _as_recorded(item):
    """A layer of the resolved config as digitlab 0.1 recorded it: one written out with exactly its defaults
    ({dropout: {p: 0.5}}) was recorded by its bare name ('dropout')."""
    if isinstance(item, dict) and len(item) == 1:
        name, options = next(iter(item.items()))
        if name in LAYERS and isinstance(options, dict) and options == written_defaults(LAYERS[name]):
            return name
    return item


def identity(cfg: dict) -> dict:
    """What identifies the experiment a resolved config describes: everything but its name, with keys added
    after digitlab 0.1 left out while they hold the value that behaves as before (so that a sweep point or a run
    recorded then is the same experiment now). Layers given without options and a model fitted in one pass (which
    records no optimizer and no batch size) take the form digitlab 0.1 recorded: the bare layer name, and the
    default optimizer and batch size that such a model never used."""
    out = copy.deepcopy({k: v for k, v in cfg.items() if k not in NOT_IDENTITY})
    if isinstance(out.get("model"), list):
        out["model"] = [_as_recorded(item) for item in out["model"]]
    if "optimizer" in out and out["optimizer"] is None:
        out["optimizer"] = default_optimizer()
        out["batch_size"] = defaults(Experiment)["batch_size"]
    for path, default in LATER_DEFAULTS.items():
        node = out
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node and node[path[-1]] == default:
            del node[path[-1]]
    return out


def config_hash(cfg: dict) -> str:
    """8 hex digits of the SHA-256 of a resolved config's identity: everything that changes results."""
    text = json.dumps(identity(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]
