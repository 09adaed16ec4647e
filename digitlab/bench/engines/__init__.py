"""The engines a benchmark times, by name: digitlab's own, a minimal numpy loop, the matmul limit, and the
optional peers (PyTorch three ways, scikit-learn). Each is `run(task, setup, spec) -> figures`, one module each;
peers import their library only when they run."""

from __future__ import annotations

from digitlab.bench.engines.matmul import run_matmul
from digitlab.bench.engines.numpy_loop import run_numpy
from digitlab.bench.engines.own import run_digitlab
from digitlab.bench.engines.sklearn_peer import run_sklearn
from digitlab.bench.engines.torch_peer import run_torch

ENGINES = {
    "digitlab": run_digitlab,
    "numpy": run_numpy,
    "matmul": run_matmul,
    "torch": run_torch,
    "torch-loader": lambda task, setup, spec: run_torch(task, setup, spec, loader=True),
    "torch-best": lambda task, setup, spec: run_torch(task, setup, spec, best=True),
    "sklearn": run_sklearn,
}
PEERS = {"torch": "torch", "torch-loader": "torch", "torch-best": "torch", "sklearn": "sklearn"}  # engine -> module
