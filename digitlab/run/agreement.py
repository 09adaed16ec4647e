"""What the files of a run folder say of each other. Each file can be valid on its own and still not be the run's:
a config.yaml cut short or copied in still parses, an emptied metrics.csv is still a metrics.csv. Read cheaply
(one small member of each .npz, no model built), so that compare, runs and sweeps can afford it for every folder.
"""

from __future__ import annotations

import json

from digitlab.config import config_hash
from digitlab.errors import DamagedRun
from digitlab.nn.serialization import META_KEY
from digitlab.options import plural
from digitlab.run import layout
from digitlab.run.folder import RunFolder
from digitlab.system.storage import read_npz


def check_agreement(run: RunFolder, cfg: dict, info: dict, metrics: list[dict]) -> None:
    """What the run's files say of each other, read cheaply (one small member of each .npz): config.yaml against
    the config model.npz, or else checkpoint.npz, was made from; a finished run's metrics.csv against the epochs
    run.json counts. A config.yaml cut short or copied in still parses, and an emptied metrics.csv is still a
    metrics.csv: only this tells that they are not the run's. DamagedRun naming the file that disagrees."""
    model, state = run / layout.MODEL, run / layout.CHECKPOINT
    source, key = (model, META_KEY) if model.is_file() else (state, "config_yaml") if state.is_file() else (None, None)
    if source is not None:
        try:
            recorded = str(read_npz(source, [key])[key])
            made_for = json.loads(recorded).get("config_hash") if source == model else recorded
        except Exception as exc:  # zip, zlib, key, JSON and OS errors alike mean a damaged file
            raise DamagedRun(source, f"{type(exc).__name__}: {exc}") from None
        ours = config_hash(cfg) if source == model else (run / layout.CONFIG).read_text(encoding="utf-8")
        if made_for is not None and made_for != ours:
            which = (f"model.npz was trained from (config {ours}, model.npz {made_for})" if source == model else
                     "checkpoint.npz holds")
            raise DamagedRun(run / layout.CONFIG, f"is not the config {which}: edited, cut short or copied in, or "
                                                  f"{source.name} is another run's")
    epochs = info.get("epoch")
    if info.get("status") in ("complete", "pruned") and isinstance(epochs, int) and len(metrics) != epochs:
        raise DamagedRun(run / layout.METRICS, f"holds {plural(len(metrics), 'epoch')}; run.json says the run did "
                                               f"{epochs}")
