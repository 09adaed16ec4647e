"""The memory check: the estimate counts each optimizer's state as its class allocates it, and is held against the
tightest of MemAvailable, `ulimit -v` and the cgroup limits (read from a fake cgroup folder here). A net that does
not fit is a one-line config error; memory that still runs out during training ends the run `failed` with one line
and its folder kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import digitlab.config.memory as memory
from digitlab.config import validate
from digitlab.config.memory import Limit, available_memory, cgroup_limit, estimate_memory
from digitlab.data import open_source
from digitlab.errors import ConfigError
from digitlab.nn import OPTIMIZERS, build_model
from digitlab.nn.optim import NoOptimizer

GB = 1 << 30
SMALL = {"name": "small", "data": {"dataset": "digits8x8", "digits": [3, 8]},
         "model": [{"linear": 32}, "relu", {"linear": 2}], "epochs": 1, "batch_size": 50}
# a net whose first batch needs 195 MB for one activation: far more than the ulimit below leaves
BIG = {"name": "big", "data": {"dataset": "digits8x8"}, "model": [{"linear": 200000}, "relu", {"linear": 10}],
       "epochs": 1, "batch_size": 1000}
ULIMIT_KB = 1_000_000  # room for Python, numpy, digitlab and the 8x8 digits (about 150 MB mapped), not for BIG


def cgroup(tmp_path: Path, own: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A fake /sys/fs/cgroup (files by path under it) and a fake /proc/self/cgroup naming `own`."""
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    root.mkdir(exist_ok=True)
    self_cgroup = tmp_path / "self-cgroup"
    self_cgroup.write_text(own)
    return root, self_cgroup


# -- the cgroup reader on a fake folder ------------------------------------------------------------------------------
def test_cgroup_v2_limit_less_usage(tmp_path):
    root, own = cgroup(tmp_path, "0::/\n", {"memory.max": str(GB), "memory.current": str(GB // 4)})
    assert cgroup_limit(root, own) == Limit(GB - GB // 4, "cgroup memory.max")


def test_cgroup_v2_takes_the_tightest_of_its_own_and_its_parents(tmp_path):
    root, own = cgroup(tmp_path, "0::/app/job\n", {
        "memory.max": "max", "memory.current": str(5 * GB),
        "app/memory.max": str(2 * GB), "app/memory.current": str(GB // 2),
        "app/job/memory.max": "max", "app/job/memory.current": str(GB // 4)})
    assert cgroup_limit(root, own) == Limit(2 * GB - GB // 2, "cgroup memory.max")
    root, own = cgroup(tmp_path / "none", "0::/\n", {"memory.max": "max", "memory.current": "1000"})
    assert cgroup_limit(root, own) is None


def test_cgroup_v1_limit_less_usage_and_its_no_limit_number(tmp_path):
    root, own = cgroup(tmp_path, "4:memory:/process/x\n3:cpu:/\n", {
        "memory/memory.limit_in_bytes": "9223372036854771712", "memory/memory.usage_in_bytes": str(GB),
        "memory/process/x/memory.limit_in_bytes": str(512 << 20),
        "memory/process/x/memory.usage_in_bytes": str(100 << 20)})
    assert cgroup_limit(root, own) == Limit(412 << 20, "cgroup memory.limit_in_bytes")
    root, own = cgroup(tmp_path / "open", "4:memory:/\n", {"memory/memory.limit_in_bytes": "9223372036854771712",
                                                            "memory/memory.usage_in_bytes": "1"})
    assert cgroup_limit(root, own) is None


def test_a_cgroup_path_that_is_not_visible_reads_the_root(tmp_path):
    root, own = cgroup(tmp_path, "0::/elsewhere/not/mounted\n", {"memory.max": str(GB), "memory.current": "0"})
    assert cgroup_limit(root, own) == Limit(GB, "cgroup memory.max")


def test_the_tightest_limit_is_taken_and_a_config_beyond_it_is_one_line(tmp_path, monkeypatch):
    root, own = cgroup(tmp_path, "0::/\n", {"memory.max": str(64 << 20), "memory.current": str(16 << 20)})
    monkeypatch.setattr(memory, "CGROUP_ROOT", root)
    monkeypatch.setattr(memory, "SELF_CGROUP", own)
    assert available_memory() == Limit(48 << 20, "cgroup memory.max")
    validate(dict(SMALL), "small.yaml")
    with pytest.raises(ConfigError) as error:
        validate({**SMALL, "model": [{"linear": 20000}, "relu", {"linear": 2}]}, "wide.yaml")
    message = str(error.value)
    assert message.startswith("wide.yaml: model: needs about ") and "\n" not in message
    assert message.endswith("more than the 48.0 MB this process may allocate (cgroup memory.max)"), message


# -- the estimate counts each optimizer's state ------------------------------------------------------------------
@pytest.mark.parametrize("name, options", [("sgd", {}), ("sgd", {"momentum": 0.9}), ("adam", {}), ("adamw", {}),
                                           ("rmsprop", {}), ("rmsprop", {"momentum": 0.9, "centered": True}),
                                           ("adadelta", {})])
def test_the_state_bytes_are_what_the_optimizer_allocates(name, options):
    model = build_model([("linear", {"units": 7}), ("relu", {}), ("linear", {"units": 3})], (11,))
    params = model.parameters()
    optimizer = OPTIMIZERS[name](params, **options)
    arrays = [a for a in vars(optimizer).values() if isinstance(a, np.ndarray)
              and a is not params.data and a is not params.grad]
    assert sum(a.nbytes for a in arrays) == OPTIMIZERS[name].state_bytes(options) * len(params)


def test_every_optimizer_state_is_counted_in_the_estimate():
    per_parameter = {"sgd": 4, "adam": 13, "adamw": 13, "rmsprop": 8, "adadelta": 16}  # scratch + state (+ a mask)
    assert per_parameter.keys() == OPTIMIZERS.keys()
    assert NoOptimizer.state_bytes({}) == 0
    base = validate(dict(SMALL), "x.yaml")
    source = open_source(base["data"])
    model = build_model([("linear", {"units": 32}), ("relu", {}), ("linear", {"units": 2})], (64,))
    shapes = {k: p.shape for k, p in model.parameters().named.items()}

    def need(optimizer):
        cfg = {**base, "optimizer": {"name": optimizer, **{k: v for k, v in base["optimizer"].items()
                                                           if k == "lr"}}}
        return estimate_memory(cfg, source, model.layer_shapes, shapes, model.layers)[0]

    params = model.num_parameters()
    for name, size in per_parameter.items():
        assert need(name) - need("sgd") == (size - 4) * params, name
    momentum = {**base, "optimizer": {**base["optimizer"], "momentum": 0.9}}
    assert estimate_memory(momentum, source, model.layer_shapes, shapes)[0] - need("sgd") == 4 * params


# -- under `ulimit -v`, in a subprocess ------------------------------------------------------------------------------
def under_ulimit(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    script = tmp_path / "run.py"
    script.write_text(code)
    return subprocess.run(["bash", "-c", f"ulimit -v {ULIMIT_KB}; exec {sys.executable} {script}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def cli_code(config: Path, runs: Path, before: str = "") -> str:
    return (f"import sys\n{before}\nfrom digitlab.cli import main\n"
            f"sys.argv = ['digitlab', 'train', {str(config)!r}, '--threads', '1', '--runs-dir', {str(runs)!r}]\n"
            f"main()\n")


def test_a_net_beyond_ulimit_is_refused_before_anything_is_written(tmp_path):
    config = tmp_path / "big.yaml"
    config.write_text(yaml.safe_dump(BIG))
    result = under_ulimit(tmp_path, cli_code(config, tmp_path / "runs"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {config}: model: needs about ")
    assert "(ulimit -v)" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_memory_that_runs_out_during_training_ends_a_failed_run(tmp_path):
    """The estimate is made to fit (as if it were wrong), so the allocation fails in training itself."""
    config = tmp_path / "big.yaml"
    config.write_text(yaml.safe_dump(BIG))
    fits = "import digitlab.config.memory as m\nm.estimate_memory = lambda *a, **k: (0, 0)"
    result = under_ulimit(tmp_path, cli_code(config, tmp_path / "runs", fits))
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert errors[0].startswith(f"error: {run}: out of memory in epoch 1 (")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and info["error"].startswith("out of memory in epoch 1 (")
    assert (run / "config.yaml").is_file() and "error: out of memory" in (run / "log.txt").read_text()
