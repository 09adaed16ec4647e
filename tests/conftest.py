"""Shared fixtures: a private cache for decoded MNIST, IDX writers, config files, and gradient checking.

The decoded-array cache goes to a per-session temporary folder, so running the tests never touches the user's
~/.cache/digitlab (a cold decode of the bundled MNIST costs about a second, once per session).
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """DIGITLAB_CACHE -> a temporary folder for the whole session (subprocesses inherit it)."""
    folder = tmp_path_factory.mktemp("digitlab-cache")
    old = os.environ.get("DIGITLAB_CACHE")
    os.environ["DIGITLAB_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("DIGITLAB_CACHE", None)
    else:
        os.environ["DIGITLAB_CACHE"] = old


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array in the IDX format: two zero bytes, type 0x08, the number of dimensions, sizes (big-endian)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.tobytes()


@pytest.fixture
def write_idx():
    """write_idx(path, uint8 array): an IDX file, gzip'd when the name ends in .gz."""
    def write(path: Path, array: np.ndarray) -> Path:
        data = idx_bytes(array)
        path = Path(path)
        path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
        return path
    return write


@pytest.fixture
def fake_idx_folder(tmp_path, write_idx):
    """make(n_train=40, n_test=20, n_train_labels=None): a folder holding the four MNIST-named IDX files of a
    small random data set whose labels cycle through 0..9."""
    def make(n_train: int = 40, n_test: int = 20, n_train_labels: int | None = None, name: str = "fake") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        rng = np.random.default_rng(0)
        write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_train, 28, 28)))
        write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(n_train_labels or n_train) % 10)
        write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28)))
        write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(n_test) % 10)
        return folder
    return make


@pytest.fixture
def write_config(tmp_path):
    """write_config(content, name='exp.yaml'): a config file from a dict (dumped as YAML) or raw text."""
    def write(content, name: str = "exp.yaml") -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
        return path
    return write


def numerical_gradient(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() with respect to every element of x (changed in place, restored)."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, out = x.reshape(-1), grad.reshape(-1)
    assert np.shares_memory(flat, x), "x must be contiguous so that its flat view changes it"
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        out[i] = (up - down) / (2 * eps)
    return grad


@pytest.fixture
def numgrad():
    return numerical_gradient
