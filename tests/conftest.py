"""Shared fixtures: a private cache for decoded MNIST, IDX writers, config files, gradient checking (central
differences, and a layer's backward against them), a training run that SIGKILLs itself at a chosen point, and the
check that two run folders hold the same run.

The decoded-array cache goes to a per-session temporary folder, so running the tests never touches the user's
~/.cache/digitlab (a cold decode of the bundled MNIST costs about a second, once per session).
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from digitlab.nn import Sequential


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


RTOL, ATOL = 1e-5, 1e-7


def check_layer_gradients(layer, in_shape, n, seed=0, before_forward=lambda: None):
    """Compare layer.backward and its parameter gradients with central differences; returns the layer."""
    rng = np.random.default_rng(seed)
    model = Sequential([layer], in_shape, dtype=np.float64)
    model.reset_parameters(rng)
    for p in model.parameters():  # non-zero biases too, so that a bias bug shows
        p.data[...] = rng.normal(size=p.shape)
        assert p.data.dtype == np.float64 and p.grad.dtype == np.float64
    layer.needs_input_grad = True  # the model turns it off for a first layer; here we want dL/dx too
    x = rng.normal(size=(n,) + tuple(in_shape))
    before_forward()
    y = layer.forward(x)
    g = rng.normal(size=y.shape)
    dx = layer.backward(g)
    analytic = {name: p.grad.copy() for name, p in layer.params.items()} if hasattr(layer, "params") else {}

    def loss():
        before_forward()
        return float(np.sum(g * layer.forward(x)))

    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=RTOL, atol=ATOL, err_msg="input gradient")
    for name, p in layer.params.items() if hasattr(layer, "params") else ():
        np.testing.assert_allclose(analytic[name], numerical_gradient(loss, p.data), rtol=RTOL, atol=ATOL,
                                   err_msg=f"{name} gradient")
    return layer


@pytest.fixture
def check_layer():
    """check_layer(layer, in_shape, n, seed=0, before_forward=...): see check_layer_gradients."""
    return check_layer_gradients


# A child process that trains a config and SIGKILLs itself at a chosen point: after epoch E is fully recorded
# (after-epoch), at batch B of epoch E (mid-epoch), or after epoch E's records were written but before its
# checkpoint (before-checkpoint).
KILLER = r"""
import os, signal, sys
from digitlab.config import load_config
from digitlab.learner import Callback
from digitlab.run.lifecycle import start
from digitlab.run.callbacks import RunWriter
config, run_dir, where, epoch, at_batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
die = lambda: os.kill(os.getpid(), signal.SIGKILL)

class Kill(Callback):
    def on_epoch_end(self, e, logs):
        if where == "after-epoch" and e == epoch:
            die()
    def on_batch_end(self, batch, logs):
        if where == "mid-epoch" and self.learner.epoch == epoch and batch == at_batch:
            die()

if where == "before-checkpoint":
    save = RunWriter.save_checkpoint
    def patched(self, e):
        if e == epoch:
            die()
        save(self, e)
    RunWriter.save_checkpoint = patched
start(load_config(config), run_dir=run_dir, quiet=True, callbacks=[Kill()])
"""


@pytest.fixture
def kill_run():
    """kill_run(config, run_dir, where, epoch, batch=7, env=None, timeout=120): train `config` into `run_dir` in a
    child process that SIGKILLs itself at `where` (see KILLER); returns the finished subprocess."""
    def run(config, run_dir, where: str, epoch: int, batch: int = 7, env=None, timeout: float = 120):
        return subprocess.run([sys.executable, "-c", KILLER, str(config), str(run_dir), where, str(epoch), str(batch)],
                              env=env, capture_output=True, text=True, timeout=timeout)
    return run


def same_run(run: Path, other: Path) -> dict[str, np.ndarray]:
    """Assert two run folders hold the same run: metrics.csv equal but for the seconds column, model.npz's arrays
    equal to the last bit. Returns the first run's arrays for further checks."""
    def metrics(folder):
        return [line.rsplit(",", 1)[0] for line in (folder / "metrics.csv").read_text().splitlines()]

    def arrays(folder):
        with np.load(folder / "model.npz", allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files if k != "__architecture__"}

    assert metrics(run) == metrics(other)
    a, b = arrays(run), arrays(other)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    return a


@pytest.fixture(name="same_run")
def same_run_fixture():
    """same_run(run, other): the two run folders hold the same run (see same_run)."""
    return same_run
