"""The binary files of a run folder and what they must match: `model.npz` (the weights, and what run they
belong to: the architecture and a hash of the resolved config) and `splits.npz` (the rows of the dataset each
split took). Both are read with allow_pickle=False and checked against the run's config, so a file copied in
from another run, truncated or garbled is refused with one line instead of scored as if it belonged. And
`git.diff`: the uncommitted changes of the code a run started from, so that even a dirty tree can be rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from digitlab import __version__
from digitlab.config import config_hash, loss_name, validate
from digitlab.data import DigitData, from_indices, open_source
from digitlab.errors import ConfigError, DamagedRun, DataError, RunError
from digitlab.nn import Sequential, architecture
from digitlab.nn.serialization import model_arrays, read_model_file
from digitlab.options import plural, size_text
from digitlab.run import layout
from digitlab.run.folder import RunFolder
from digitlab.run.setup import make_model
from digitlab.system.environment import DIFF_LIMIT, uncommitted_changes
from digitlab.system.storage import read_npz

NOT_FINITE = "its weights give outputs that are not finite numbers (too large for a trained network's)"


def save_model(run: RunFolder, model: Sequential, cfg: dict, name: str = layout.MODEL, **extra) -> None:
    run.save_npz(name, model_arrays(model, loss=loss_name(cfg), classes=cfg["data"]["digits"], digitlab=__version__,
                                    config_hash=config_hash(cfg), **extra))


def load_model(path: Path, cfg: dict, image_shape: tuple[int, ...]) -> tuple[Sequential, dict]:
    """The model saved in a model.npz and its metadata, checked against the config it was trained from."""
    try:
        arrays, meta = read_model_file(path)
    except FileNotFoundError:
        raise RunError(f"{path}: file not found") from None
    except ValueError as exc:
        raise DamagedRun(path, str(exc)) from None
    model, _ = make_model(cfg, image_shape)
    if meta.get("config_hash") not in (None, config_hash(cfg)):
        raise DamagedRun(path, f"belongs to another run: made for config {meta.get('config_hash')}, this run's "
                               f"config.yaml is {config_hash(cfg)} (or config.yaml was edited, cut short or "
                               f"copied in)")
    try:  # compared as built models: files written by older versions spell the same layers differently
        saved, _ = make_model(validate({**cfg, "model": meta["layers"]}, str(path), memory=False), image_shape)
    except ConfigError as exc:
        raise DamagedRun(path, f"its architecture record is not a model ({exc.message})") from None
    if architecture(saved) != architecture(model):
        raise DamagedRun(path, "its layers are not the ones config.yaml describes")
    try:
        model.load_state_dict(arrays)
    except ValueError as exc:
        raise DamagedRun(path, str(exc)) from None
    if not all(np.isfinite(a).all() for a in arrays.values()):
        raise DamagedRun(path, "holds weights that are not finite numbers")
    return model, meta


def save_splits(run: RunFolder, data: DigitData, cfg: dict) -> None:
    meta = {"dataset": open_source(cfg["data"]).name, "parts": data.parts, "classes": data.classes}
    run.save_npz(layout.SPLITS, {**{k: v.astype(np.int64) for k, v in data.indices.items()},
                          "__meta__": np.array(json.dumps(meta))})


def load_splits(run: RunFolder, cfg: dict) -> DigitData | None:
    """The run's recorded splits rebuilt from its dataset, or None when the run predates splits.npz."""
    path = run / layout.SPLITS
    if not path.exists():
        return None
    try:
        arrays = read_npz(path)
        meta = json.loads(str(arrays.pop("__meta__")))
        parts = meta["parts"]
    except Exception as exc:  # zip, JSON, key and value errors alike mean a damaged file
        raise DamagedRun(path, f"{type(exc).__name__}: {exc}") from None
    if set(arrays) != set(parts) or meta.get("classes") != cfg["data"]["digits"] or \
            any(a.ndim != 1 or a.dtype.kind not in "iu" for a in arrays.values()):
        raise DamagedRun(path, "does not hold the splits of this run's config")
    try:
        return from_indices(open_source(cfg["data"]), cfg["data"]["digits"], arrays, parts)
    except DataError as exc:
        raise DamagedRun(path, str(exc)) from None


def save_git_diff(run: RunFolder, env: dict, console, limit: int | None = None) -> None:
    """git.diff: the uncommitted changes when the run starts from a dirty tree (env["git_dirty"]), at most
    `limit` bytes; a capped diff ends with a line saying so, run.json's `git_diff` says how large it was, and
    the console warns, because a capped diff cannot rebuild the code."""
    if not env.get("git_dirty"):
        return
    limit = limit or DIFF_LIMIT
    diff = (uncommitted_changes() or "").encode("utf-8", errors="replace")
    size, capped = len(diff), len(diff) > limit
    if capped:
        diff = diff[:limit].rsplit(b"\n", 1)[0] + b"\n" + \
            f"# digitlab: capped at {plural(limit, 'byte')}; the changes were {plural(size, 'byte')}\n".encode()
        console.warn(f"{layout.GIT_DIFF}: the uncommitted changes are {size_text(size)}; kept the first "
                     f"{size_text(limit)} (not enough to rebuild the code)")
    run.write(layout.GIT_DIFF, diff)
    run.update_status(git_diff={"file": layout.GIT_DIFF, "bytes": size, "capped": capped})
