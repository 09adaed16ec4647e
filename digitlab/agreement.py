"""What the files of a run folder say of each other. Each file can be valid on its own and still not be the run's:
a config.yaml cut short or copied in still parses, an emptied metrics.csv is still a metrics.csv. Read cheaply
(one small member of each .npz, no model built), so that compare, runs and sweeps can afford it for every folder.
"""

from __future__ import annotations

import json

import numpy as np

from digitlab import checkpoint
from digitlab.config import config_hash
from digitlab.errors import DamagedRun
from digitlab.nn.serialization import META_KEY
from digitlab.runs import MODEL, RunFolder


def check_agreement(run: RunFolder, cfg: dict, info: dict, metrics: list[dict]) -> None:
    """What the run's files say of each other, read cheaply (one small member of each .npz): config.yaml against
    the config model.npz, or else checkpoint.npz, was made from; a finished run's metrics.csv against the epochs
    run.json counts. A config.yaml cut short or copied in still parses, and an emptied metrics.csv is still a
    metrics.csv: only this tells that they are not the run's. DamagedRun naming the file that disagrees."""
    model, state = run / MODEL, run / checkpoint.NAME
    try:
        if model.is_file():
            with np.load(model, allow_pickle=False) as npz:
                made_for = json.loads(str(npz[META_KEY])).get("config_hash")
            if made_for not in (None, config_hash(cfg)):
                raise DamagedRun(run / "config.yaml", f"is not the config model.npz was trained from (config "
                                                      f"{config_hash(cfg)}, model.npz {made_for}): edited, cut "
                                                      f"short or copied in, or model.npz is another run's")
        elif state.is_file():
            with np.load(state, allow_pickle=False) as npz:
                recorded = str(npz["config_yaml"])
            if recorded != (run / "config.yaml").read_text(encoding="utf-8"):
                raise DamagedRun(run / "config.yaml", "is not the config checkpoint.npz holds: edited, cut short or "
                                                      "copied in, or checkpoint.npz is another run's")
    except DamagedRun:
        raise
    except Exception as exc:  # zip, zlib, key, JSON and OS errors alike mean a damaged file
        raise DamagedRun(model if model.is_file() else state, f"{type(exc).__name__}: {exc}") from None
    epochs = info.get("epoch")
    if info.get("status") in ("complete", "pruned") and isinstance(epochs, int) and len(metrics) != epochs:
        raise DamagedRun(run / "metrics.csv", f"holds {len(metrics)} epoch(s); run.json says the run did {epochs}")
