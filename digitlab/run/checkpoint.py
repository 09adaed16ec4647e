"""Checkpoints: everything a run needs to continue exactly where an epoch ended.

One `checkpoint.npz` per run folder, replaced atomically at the end of every epoch (and written once before
the first, so even a run stopped in epoch 1 can resume): the weights, the optimizer's state, the epoch, the
Generator's state, the metrics.csv text so far and the config it was trained from. Resuming from it gives the
same weights and metrics as a run that never stopped, because every random choice comes from that Generator.
Loaded with allow_pickle=False; a missing or damaged file is a one-line CheckpointError.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digitlab.errors import CheckpointError
from digitlab.system.storage import read_npz


@dataclass
class Checkpoint:
    epoch: int
    model: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    rng_state: dict
    metrics_csv: str
    config_yaml: str
    callbacks: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # stateful callbacks by name


def to_arrays(ckpt: Checkpoint) -> dict[str, np.ndarray]:
    arrays = {f"model/{k}": v for k, v in ckpt.model.items()}
    arrays.update({f"optimizer/{k}": v for k, v in ckpt.optimizer.items()})
    arrays["epoch"] = np.array(ckpt.epoch)
    arrays["rng_state"] = np.array(json.dumps(ckpt.rng_state))
    arrays["metrics_csv"] = np.array(ckpt.metrics_csv)
    arrays["config_yaml"] = np.array(ckpt.config_yaml)
    for name, state in ckpt.callbacks.items():
        arrays.update({f"callbacks/{name}/{k}": v for k, v in state.items()})
    return arrays


def load(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    try:
        arrays = read_npz(path)
        return Checkpoint(
            epoch=int(arrays["epoch"]),
            model={k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("model/")},
            optimizer={k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("optimizer/")},
            rng_state=json.loads(str(arrays["rng_state"])),
            metrics_csv=str(arrays["metrics_csv"]),
            config_yaml=str(arrays["config_yaml"]),
            callbacks=_callbacks(arrays),
        )
    except Exception as exc:  # zip, key, JSON and value errors all mean a damaged file
        raise CheckpointError(f"{path}: damaged or not a digitlab checkpoint ({type(exc).__name__}: {exc})") from None


def _callbacks(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        if key.startswith("callbacks/"):
            _, name, rest = key.split("/", 2)
            out.setdefault(name, {})[rest] = value
    return out
