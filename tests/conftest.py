"""Shared fixtures and helpers: the tiny config most tests train (TINY, tiny()), digitlab on the command line in this
process (cli, train) and in a fresh one (digitlab), a session's trained tiny run to read or copy (tiny_run,
other_run, copy_run), a private cache for decoded MNIST, IDX writers, config files, gradient checking (central
differences, and a layer's backward against them), a training run that SIGKILLs itself at a chosen point, and the
check that two run folders hold the same run.

Tests marked `slow` (see setup.cfg) start processes they kill, Dask clusters or a browser (marked here, by the
fixture they use), or train for many seconds: `make check` leaves them out, `make test` runs everything.

The decoded-array cache goes to a per-session temporary folder, so running the tests never touches the user's
~/.cache/digitlab (a cold decode of the bundled MNIST costs about a second, once per session).
"""

from __future__ import annotations

import copy
import gzip
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result

from digitlab.cli import main
from digitlab.nn import Sequential

# -- the tiny config -------------------------------------------------------------------------------------------------
# The experiment most tests train: 3 vs 8 on 300 real MNIST images (a tenth held out for validation), a 784-8-2-1
# network whose 2-unit layer gives the plane records, two epochs. `outputs: light` writes everything the figures are
# drawn from but not the figures (0.06 CPU-s a run instead of 0.8): a test that looks at figures or at report.html
# asks for them with tiny(outputs="full"), as tiny_run does.
TINY = {"name": "tiny", "seed": 0, "data": {"digits": [3, 8], "validation": 0.1, "limit": 300},
        "model": [{"linear": 8}, "relu", {"linear": 2}, {"linear": 1}, "sigmoid"], "loss": "bce",
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "epochs": 2, "batch_size": 50, "outputs": "light"}


def tiny(changes: dict | None = None, /, **top) -> dict:
    """A fresh copy of TINY: keyword arguments replace top-level keys (tiny(epochs=1, name="x")); `changes` sets
    dotted keys inside it, as --set does (tiny({"data.limit": 200, "optimizer.schedule": "cosine"}))."""
    cfg = copy.deepcopy(TINY)
    cfg.update(copy.deepcopy(top))
    for key, value in (changes or {}).items():
        *parents, last = key.split(".")
        node = cfg
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = copy.deepcopy(value)
    return cfg


def write_yaml(path: Path, content) -> Path:
    """`content` (a dict or list, dumped as YAML; or text) at `path`, its folder made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False,
                                                                            allow_unicode=True))
    return path


# Another network for the same data, under another name: a run whose files are foreign to a tiny one.
OTHER = tiny(name="other", model=[{"linear": 12}, "relu", {"linear": 2}, {"linear": 1}, "sigmoid"])


# -- digitlab on the command line ------------------------------------------------------------------------------------
def cli(*args) -> Result:
    """`digitlab ARGS` in this process (click's CliRunner; stdout and stderr apart); arguments may be paths."""
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result: Result, code: int = 2) -> str:
    """The one line `error: ...` a command that failed with `code` printed, and nothing else (no traceback)."""
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def train(config, runs_dir: Path, *args, codes=(0,)) -> tuple[Path | None, Result]:
    """`digitlab train CONFIG --runs-dir RUNS_DIR ARGS` in this process. CONFIG is a path, or a dict written to
    RUNS_DIR's parent as <its name>.yaml (tiny.yaml without a name, config.yaml for a name that is no plain file
    name). Asserts the exit code is one of `codes`; returns the run folder the command printed last (None when it
    ended before making one) and click's result."""
    if isinstance(config, dict):
        name = str(config.get("name", "tiny"))
        stem = name if re.fullmatch(r"\w[\w.-]*", name, re.ASCII) else "config"
        config = write_yaml(Path(runs_dir).parent / f"{stem}.yaml", config)
    result = cli("train", config, "--runs-dir", runs_dir, *args)
    assert result.exit_code in codes, (result.output, result.exception)
    lines = result.stdout.strip().splitlines()
    return (Path(lines[-1]) if result.exit_code in (0, 1) and lines else None), result


def digitlab(*args, threads: int | None = None, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """`digitlab ARGS` in a fresh process (`python -m digitlab`), text output captured. Without `threads` no BLAS
    thread variable is passed on (the machine's default); with it they are set as --threads sets them."""
    from digitlab.system.threads import LIMIT_VARIABLES, limits
    env = {k: v for k, v in os.environ.items() if k not in LIMIT_VARIABLES}
    env.update(limits(threads) if threads else {})
    return subprocess.run([sys.executable, "-m", "digitlab", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, **kwargs)


# -- trained runs ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """TINY trained once for the whole session, its figures and report.html drawn. Tests that only read a run
    folder share it; a test that damages or changes one (report writes report.html into it) works on
    copy_run(tiny_run)."""
    run, _ = train(tiny(outputs="full"), tmp_path_factory.mktemp("tiny") / "runs", "--quiet")
    return run


@pytest.fixture(scope="session")
def other_run(tmp_path_factory) -> Path:
    """OTHER (784-12-2-1) trained as tiny_run is: a run to copy foreign files from."""
    run, _ = train(OTHER, tmp_path_factory.mktemp("other") / "runs", "--quiet")
    return run


@pytest.fixture(scope="session")
def average_image_run(tmp_path_factory) -> Path:
    """The average-image model fitted to the 8x8 digits (a fifth held out for testing): a run of one pass."""
    run, _ = train({"name": "average_image", "data": {"dataset": "digits8x8", "test": 0.2}, "model": "average_image"},
                   tmp_path_factory.mktemp("average") / "runs")
    return run


@pytest.fixture
def copy_run(tmp_path):
    """copy_run(run, name="run"): a copy of the run folder `run` at tmp_path/name, to damage or change."""
    def make(run: Path, name: str = "run") -> Path:
        return Path(shutil.copytree(run, tmp_path / name))
    return make


@pytest.fixture(scope="session")
def digit_png(tmp_path_factory) -> Path:
    """A 28x28 PNG of a vertical stroke, white on black as MNIST stores digits: an image to predict."""
    from PIL import Image
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[6:22, 12:16] = 255
    path = tmp_path_factory.mktemp("digit") / "digit.png"
    Image.fromarray(digit).save(path)
    return path


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items):
    """A test that drives the browser (the `browser` or `page` fixture) is slow: a Chromium to start and pages to
    render. `make check` leaves it to `make test`."""
    for item in items:
        if {"browser", "page"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


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
        return write_yaml(tmp_path / name, content)
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


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
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


@pytest.fixture(name="same_run", scope="session")
def same_run_fixture():
    """same_run(run, other): the two run folders hold the same run (see same_run)."""
    return same_run


# -- a real browser ----------------------------------------------------------------------------------------------------
# Playwright (pip) drives Debian's chromium; it cannot download a browser here. Flags as in ../shared/BROWSER.md: the
# background-networking ones keep Chromium from reaching for hosts this machine cannot reach.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session, driven by Playwright. Skips, with the reason, where Chromium or
    Playwright is missing (.ci/run installs Chromium; the test extra installs Playwright)."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright;"
                                                                   " the test extra installs it)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page at a laptop's width; `page.errors` collects uncaught exceptions and console errors, and the test
    fails at teardown if any were logged (a page that throws is broken even when the asserted part works)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.errors = []
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    tab.on("console", lambda message: message.type == "error" and tab.errors.append(message.text))
    yield tab
    context.close()
    assert not tab.errors, f"the page logged errors: {tab.errors}"
