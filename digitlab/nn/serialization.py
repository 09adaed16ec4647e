"""The model.npz format: every parameter and buffer by name ("0.weight", "1.running_mean", ...) and one JSON
string, `__architecture__`, with the layer list in config form, the input shape and whatever the caller adds
(the loss, the classes, what run the weights belong to). Read with allow_pickle=False: nothing in the file can
run code.
"""

from __future__ import annotations

import json

import numpy as np

from digitlab.nn.model import Sequential
from digitlab.nn.registry import architecture
from digitlab.system.storage import read_npz

META_KEY = "__architecture__"


def model_arrays(model: Sequential, **meta) -> dict[str, np.ndarray]:
    """What model.npz holds: the state dict and the architecture JSON."""
    info = {"layers": architecture(model), "in_shape": list(model.in_shape), **meta}
    return {**model.state_dict(), META_KEY: np.array(json.dumps(info))}


def read_model_file(path) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, meta) of a model.npz. Raises FileNotFoundError, or ValueError for anything that is not such a
    file (not a zip, a damaged member, no architecture, arrays that are not numbers)."""
    try:
        arrays = read_npz(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # zipfile, zlib, format and OS errors alike mean a damaged file
        raise ValueError(f"not a readable .npz file ({type(exc).__name__}: {exc})") from None
    if META_KEY not in arrays:
        raise ValueError("no architecture record in it")
    try:
        meta = json.loads(str(arrays.pop(META_KEY)))
    except ValueError as exc:
        raise ValueError(f"its architecture record is not JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("layers"), list):
        raise ValueError("its architecture record has no layer list")
    for name, a in arrays.items():
        if a.dtype.kind != "f":
            raise ValueError(f"array {name!r} holds {a.dtype}, not floating-point numbers")
    return arrays, meta
