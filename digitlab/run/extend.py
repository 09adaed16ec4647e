"""`digitlab train --resume RUN --epochs N`: a complete run trained on, in its own folder, to N epochs in all.

It continues from the run's last checkpoint (the weights, optimizer state, Generator and early-stopping counters
of its last epoch), as a resume does; its config.yaml then says N epochs, and run.json's `history` records the
extension (what was asked, when, the epochs before and after, the environment). The files that name the config they
belong to (model.npz, checkpoint.npz, the records) are marked as the new config's before training starts, so the
folder reads as one run, whole, whether the extension ends, is interrupted or fails; a write that fails while they
are being marked puts back the ones already marked.

The learning-rate schedule of the epochs still to train is the config's schedule over the new total: the lr at
fractional epoch t is schedule(lr, N)(t), as for a run planned for N epochs, and the epochs already trained keep the
lrs they had (metrics.csv's lr column shows both). Schedules that do not depend on the total (none, step, warmup)
therefore give exactly the run trained to N in one go; cosine and one_cycle take up the N-epoch curve where it
stands at the old last epoch (a cosine's lr rises again). An early-stopped run is refused: its stopping rule holds.

A run that stopped part-way (interrupted, crashed, ...) takes `--epochs N` as a new target, N at least the epochs it
has done (a mistyped large N taken back): its files are marked as the new config's and it is resumed; the history
entry records the epoch it went on from, so that reproduce trains each stage as far as it went.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from digitlab.config import config_hash, dump, load_config
from digitlab.errors import CheckpointError, DamagedRun, RunError
from digitlab.nn.serialization import META_KEY
from digitlab.options import plural
from digitlab.run import checkpoint, layout
from digitlab.run.agreement import check_agreement
from digitlab.run.console import Console
from digitlab.run.folder import RunFolder, utc_now
from digitlab.run.lifecycle import checkpoint_of, continue_from, refuse_complete, resume_from
from digitlab.run.records import carry_over
from digitlab.system.environment import command_line, environment
from digitlab.system.storage import read_npz

TOTAL_DEPENDENT = ("cosine", "one_cycle")  # schedules whose lr at epoch t depends on the total epochs
EXTEND = "extend"  # the `action` of an extension in run.json's history


def extend(run_dir: str | Path, epochs: int, quiet: bool = False, progress: bool = True, stop=None,
           warnings=()) -> RunFolder:
    """Train the complete run in `run_dir` on to `epochs` epochs in all (see the module's docstring); a run that
    stopped part-way (interrupted, crashed, ...) gets `epochs` as its new target, at least the epochs it has done,
    and is resumed. RunError naming the folder when it cannot go on: fewer epochs asked than it has, a model
    fitted in one pass, an early-stopped run, a sweep's point, damaged files. `warnings`: printed when it trains."""
    run = RunFolder.open(run_dir)
    status = run.status()  # as `digitlab runs` reads it, before this process's own lock makes it look live
    with run.lock():
        info = run.info()
        cfg = load_config(run / layout.CONFIG)
        before = cfg["epochs"]
        if info.get("sweep"):
            raise RunError(f"{run.path}: is a point of sweep {info['sweep']}; more epochs would make it another "
                           f"point: give the sweep file more epochs instead")
        if cfg["optimizer"] is None:
            raise RunError(f"{run.path}: its model is fitted in one pass (class means); more epochs change nothing")
        config_yaml = (run / layout.CONFIG).read_text(encoding="utf-8")
        if status != "complete":
            state = checkpoint_of(run, config_yaml)
            if epochs < state.epoch:
                raise RunError(f"--epochs {epochs}: {run.path} is {status} after epoch {state.epoch} of {before}; "
                               f"give at least {state.epoch} (or resume it: digitlab train --resume {run.path})")
            if epochs == before:
                refuse_complete(run, info)  # finished since `status` was read
                resume_from(run, info, cfg, config_yaml, state, quiet, progress, stop, warnings)
                return run
            said = f"{cfg['name']}: {status} after epoch {state.epoch}; its target goes from {before} to " \
                   f"{plural(epochs, 'epoch')}, resuming"
            _train_to(run, cfg, info, state, epochs, quiet, progress, stop, warnings, said)
            return run
        if epochs <= before:
            raise RunError(f"--epochs {epochs}: {run.path} has trained {plural(before, 'epoch')} already; give more "
                           f"than {before}")
        rows = run.read_metrics()
        check_agreement(run, cfg, info, rows)
        state = checkpoint.load(run / layout.CHECKPOINT)
        if state.config_yaml != config_yaml or state.epoch != len(rows):
            raise CheckpointError(f"{run / layout.CHECKPOINT}: is not the checkpoint of the run's last epoch "
                                  f"(epoch {state.epoch}, metrics.csv has {len(rows)}); refusing to extend")
        stopping = state.callbacks.get("early_stopping") or {}
        if int(stopping.get("stopped_epoch", 0)):
            es = cfg["early_stopping"]
            raise RunError(f"{run.path}: early stopping ended it after epoch {int(stopping['stopped_epoch'])} of "
                           f"{before} ({es['monitor']} did not improve for {es['patience']}); more epochs would "
                           f"stop at once: train a new run with more patience or epochs instead")
        _train_to(run, cfg, info, state, epochs, quiet, progress, stop, warnings,
                  f"{cfg['name']}: extending {run.path} from {before} to {plural(epochs, 'epoch')}")
    return run


def _train_to(run: RunFolder, cfg: dict, info: dict, state, epochs: int, quiet: bool, progress: bool, stop,
              warnings, said: str) -> None:
    """The locked run's config set to `epochs`, its files marked as that config's, the change recorded in
    run.json's history (with the epoch it went on from), and training continued from `state`."""
    before = cfg["epochs"]
    new = {**cfg, "epochs": epochs}
    new_yaml = dump(new)
    state.config_yaml = new_yaml
    with _restored_on_failure(run):
        run.save_npz(layout.CHECKPOINT, checkpoint.to_arrays(state))  # the same state, for the new config
        carry_over(run, cfg, new)
        _rehash_model(run, config_hash(new))
        run.write(layout.CONFIG, new_yaml)
    entry = {"action": EXTEND, "asked": f"--epochs {epochs}", "at": utc_now(), "command": command_line(),
             "epochs_before": before, "epochs_after": epochs, "from_epoch": state.epoch, **environment()}
    schedule = (cfg["optimizer"].get("schedule") or {}).get("name")
    if schedule in TOTAL_DEPENDENT:
        said += f"; its {schedule} schedule runs over {plural(epochs, 'epoch')} from epoch {state.epoch + 1} on"
    continue_from(run, new, new_yaml, state, Console(quiet), {"history": [*info.get("history", []), entry]},
                  said, progress=progress, stop=stop, warnings=warnings)


def extensions(info: dict) -> list[dict]:
    """The extensions run.json's history records, oldest first."""
    history = info.get("history")
    return [h for h in history if isinstance(h, dict) and h.get("action") == EXTEND] if isinstance(history, list) \
        else []


@contextlib.contextmanager
def _restored_on_failure(run: RunFolder):
    """The files an extension marks as its new config's, put back as they were when marking them fails half-way
    (a full disk), so that the run stays the whole, complete run it was."""
    names = (layout.CHECKPOINT, layout.MODEL, layout.EMBEDDING_EPOCHS, layout.LAYER_HEALTH, layout.CONFIG)
    saved = {name: (run / name).read_bytes() for name in names if (run / name).is_file()}
    try:
        yield
    except BaseException:
        for name, data in saved.items():
            with contextlib.suppress(Exception):  # each file is replaced whole or not at all
                if (run / name).read_bytes() != data:
                    run.write(name, data)
        raise


def _rehash_model(run: RunFolder, new_hash: str) -> None:
    """model.npz (the weights the run ended with so far) marked as the extended config's."""
    path = run / layout.MODEL
    if not path.is_file():
        return
    try:
        arrays = read_npz(path)
        meta = json.loads(str(arrays[META_KEY]))
    except Exception as exc:  # zip, key and JSON errors alike mean a damaged file
        raise DamagedRun(path, f"{type(exc).__name__}: {exc}") from None
    arrays[META_KEY] = np.array(json.dumps({**meta, "config_hash": new_hash}))
    run.save_npz(layout.MODEL, arrays)
