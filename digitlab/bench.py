"""digitlab bench: the engine's speed, memory and accuracy next to its peers, task by task.

Each (task, engine) pair runs in its own Python process, so peak memory (ru_maxrss) is that engine's alone
and one engine's threads or allocator state cannot slow the next. The engines:

- `digitlab`: the config -> `experiment.prepare` -> `Learner` path that `digitlab train` takes;
- `numpy`: a minimal hand-written numpy loop for the same dense network (what the abstractions cost);
- `matmul`: no training: the time the task's float32 matrix products alone take per epoch (the arithmetic
  limit), from the machine's GEMM rate for exactly those shapes;
- `torch`, `torch-loader` (PyTorch's DataLoader), `torch-best` (fused optimizer, denormals flushed), `sklearn` (MLPClassifier): optional peers,
  imported lazily inside their workers only; a peer that is not installed is skipped with a note.

Every trained engine starts from the same initial weights (digitlab's initialisers, same seed) and is scored
on the real test set after the timed epochs. Seconds per epoch are the median of the epochs after the first.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from digitlab.errors import UserError
from digitlab.runs import command_line
from digitlab.threads import cpus, limits

ALL_DIGITS = list(range(10))
EVAL_BATCH = 2000


@dataclass(frozen=True)
class Task:
    """A benchmark: a config (model, loss, optimizer, batch size, digits) and the ratios it must meet.

    `targets` are (engine, limit, what): digitlab's seconds per epoch divided by that engine's must be <= limit.
    `requires` names layers that must exist in digitlab.nn.LAYERS for the task to be offered.
    """

    name: str
    description: str
    digits: list
    model: list
    loss: str
    optimizer: dict
    batch_size: int
    targets: tuple = ()
    requires: tuple = ()
    sklearn: dict | None = None  # MLPClassifier options when the task maps onto it
    sklearn_note: str = ""

    def config(self, seed: int = 0, limit: int | None = None) -> dict:
        """The digitlab config of this task: all of the training set, no validation split, no schedule."""
        return {"name": f"bench-{self.name}", "seed": seed, "epochs": 1, "batch_size": self.batch_size,
                "data": {"digits": list(self.digits), "validation": 0.0, "limit": limit},
                "model": self.model, "loss": self.loss, "optimizer": dict(self.optimizer)}


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    TASKS[task.name] = task
    return task


register(Task(
    "3v8", "784-100-100-2-1 (ReLU, dropout 0.1), sigmoid/BCE, SGD momentum 0.9, batch 50: the course network",
    [3, 8],
    [{"linear": 100}, "relu", {"dropout": 0.1}, {"linear": 100}, "relu", {"linear": 2}, {"linear": 1}, "sigmoid"],
    "bce", {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0005}, 50,
    targets=(("torch", 0.4, "<= 0.4 x PyTorch (a lean loop indexing tensors)"),
             ("torch-loader", 0.4, "<= 0.4 x PyTorch (the usual loop, torch.utils.data.DataLoader)"),
             ("numpy", 1.2, "within 1.2x of the minimal numpy loop")),
    sklearn_note="MLPClassifier has one activation for all hidden layers (the 2-unit layer here is linear) "
                 "and no dropout"))

register(Task(
    "mnist10-mlp", "784-1024-512-10, ReLU, dropout 0.25, softmax cross-entropy, Adam 1e-3, batch 128",
    ALL_DIGITS,
    [{"linear": 1024}, "relu", {"dropout": 0.25}, {"linear": 512}, "relu", {"dropout": 0.25}, {"linear": 10}],
    "cross_entropy", {"name": "adam", "lr": 0.001}, 128,
    targets=(("torch", 0.8, "<= 0.8 x PyTorch (default Adam)"),
             ("torch-best", 1.2, "<= 1.2 x PyTorch (fused Adam, denormals flushed)"),
             ("sklearn", 1.0, "faster than scikit-learn")),
    sklearn={"hidden_layer_sizes": (1024, 512), "activation": "relu", "solver": "adam", "alpha": 0.0,
             "learning_rate_init": 0.001},
    sklearn_note="no dropout (MLPClassifier has none)"))

register(Task(
    "mnist10-cnn", "conv 32x3x3 same, ReLU, maxpool 2, conv 64x3x3 same, ReLU, maxpool 2, 3136-128 (dropout 0.25)"
                   "-10, cross-entropy, Adam 1e-3, batch 128",
    ALL_DIGITS,
    [{"conv2d": {"filters": 32, "kernel": 3, "padding": "same"}}, "relu", {"maxpool2d": 2},
     {"conv2d": {"filters": 64, "kernel": 3, "padding": "same"}}, "relu", {"maxpool2d": 2},
     "flatten", {"linear": 128}, "relu", {"dropout": 0.25}, {"linear": 10}],
    "cross_entropy", {"name": "adam", "lr": 0.001}, 128,
    requires=("conv2d", "maxpool2d"), sklearn_note="MLPClassifier has no convolutions"))

ENGINES = ("digitlab", "numpy", "matmul", "torch", "torch-loader", "torch-best", "sklearn")
PEERS = {"torch": "torch", "torch-loader": "torch", "torch-best": "torch", "sklearn": "sklearn"}  # engine -> module


def available_tasks() -> dict[str, Task]:
    """The registered tasks whose layers exist in this digitlab (mnist10-cnn needs the conv layers)."""
    from digitlab.nn import LAYERS
    return {name: t for name, t in TASKS.items() if all(layer in LAYERS for layer in t.requires)}


# -- the parent: run workers, collect, compare -----------------------------------------------------------------
def run(tasks: list[str] | None = None, engines: list[str] | None = None, epochs: int = 3,
        threads: int | None = None, limit: int | None = None, seed: int = 0, peers: bool = True,
        echo=lambda line: None) -> dict:
    """Benchmark `tasks` (default: all available) on `engines` (default: all); returns the figures as a dict
    (see `format_table`). `echo` receives a progress line after each measurement."""
    offered = available_tasks()
    names = list(tasks) if tasks else list(offered)
    for name in names:
        if name not in offered:
            why = " (needs the conv2d/maxpool2d layers)" if name in TASKS else ""
            raise UserError(f"unknown bench task {name!r}{why}; available: {', '.join(offered)}")
    engines = list(engines) if engines else list(ENGINES)
    for engine in engines:
        if engine not in ENGINES:
            raise UserError(f"unknown bench engine {engine!r}; available: {', '.join(ENGINES)}")
    if "digitlab" in engines:
        engines.remove("digitlab")
    engines.insert(0, "digitlab")  # always measured, first: every ratio is against it
    if epochs < 1:
        raise UserError("--epochs must be at least 1")
    threads = threads or cpus()
    results = {"command": command_line(), "epochs": epochs, "threads": threads, "limit": limit, "seed": seed,
               "machine": machine(), "load_before": load_average(), "tasks": {}}
    spec = {"epochs": epochs, "threads": threads, "limit": limit, "seed": seed}
    results["data"] = _run_worker({**spec, "engine": "load"}, threads)
    echo(f"data: warm MNIST load {fmt(results['data'].get('load_seconds'), 3)} s")
    versions = {}
    for name in names:
        task = offered[name]
        rows = results["tasks"][name] = {"description": task.description, "engines": {}}
        for engine in engines:
            module = PEERS.get(engine)
            if module and not peers:
                row = {"skipped": "peers disabled (--no-peers)"}
            elif module and importlib.util.find_spec(module) is None:
                row = {"skipped": f"{module} is not installed (pip install 'digitlab[bench]')"}
            else:
                row = _run_worker({**spec, "engine": engine, "task": name}, threads)
            versions.update(row.pop("versions", {}))
            rows["engines"][engine] = row
            echo(f"{name:<12} {engine:<10} " + (row.get("skipped") or row.get("error") or
                                                 f"{fmt(row['seconds_per_epoch'], 3)} s/epoch"))
        compare(rows["engines"])
        rows["targets"] = check_targets(task, rows["engines"])
    results["machine"].update(versions)
    results["load_after"] = load_average()
    return results


def compare(rows: dict) -> None:
    """Each row's `ratio`: digitlab's seconds per epoch over that engine's."""
    mine = rows.get("digitlab", {}).get("seconds_per_epoch")
    for row in rows.values():
        theirs = row.get("seconds_per_epoch")
        if mine and theirs:
            row["ratio"] = mine / theirs


def check_targets(task: Task, rows: dict) -> list[dict]:
    out = []
    for engine, limit, what in task.targets:
        ratio = rows.get(engine, {}).get("ratio")
        out.append({"engine": engine, "limit": limit, "what": what, "ratio": ratio,
                    "met": None if ratio is None else ratio <= limit})
    return out


def _run_worker(spec: dict, threads: int) -> dict:
    """One measurement in a fresh interpreter; its last stdout line is the JSON result."""
    env = {**os.environ, **limits(threads)}
    proc = subprocess.run([sys.executable, "-m", "digitlab.bench", json.dumps(spec)], env=env,
                          capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"worker failed (exit {proc.returncode}): {tail}"}
    return json.loads(lines[-1])


# -- the worker: one engine on one task ------------------------------------------------------------------------
def worker(spec: dict) -> dict:
    engine = spec["engine"]
    if engine == "load":
        return measure_load()
    task = TASKS[spec["task"]]
    started = time.perf_counter()
    setup = _setup(task, spec["seed"], spec["limit"])
    load_seconds = time.perf_counter() - started
    result = WORKERS[engine](task, setup, spec)
    if "skipped" in result:
        return result
    seconds = result["epoch_seconds"]
    per_epoch = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    n = len(setup.data.train)
    result.update(seconds_per_epoch=per_epoch, samples_per_second=n / per_epoch if per_epoch else None,
                  n_train=n, n_test=len(setup.test_y), load_seconds=load_seconds, peak_mb=peak_mb())
    return result


def _setup(task: Task, seed: int, limit: int | None):
    """The task's config through digitlab's own validation and `prepare`: data, model, loss, optimizer. The
    peers take their data and initial weights from it. With a limit the test set is cut to it too."""
    from digitlab.config import validate
    from digitlab.experiment import prepare

    setup = prepare(validate(task.config(seed, limit), f"bench task {task.name}"))
    test = setup.data.test
    cut = slice(None) if limit is None else slice(0, limit)
    setup.test_x, setup.test_y = setup.inputs(test)[cut], test.y[cut]
    setup.train_x = setup.inputs(setup.data.train)
    setup.train_t = setup.loss_fn.targets(setup.data.train.y, setup.model.out_shape[0])
    return setup


def peak_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run_digitlab(task: Task, setup, spec: dict) -> dict:
    """The path `digitlab train` takes: Sampler + DataLoader -> Learner(model, loss, optimizer)."""
    from digitlab.data import DataLoader, Sampler
    from digitlab.metrics import evaluate
    from digitlab.train import Learner

    loader = DataLoader((setup.train_x, setup.train_t),
                        Sampler(len(setup.train_x), task.batch_size, shuffle=True, rng=setup.rng))
    learner = Learner(setup.model, setup.loss_fn, setup.optimizer, loader)
    history = learner.fit(spec["epochs"])
    started = time.perf_counter()
    result = evaluate(setup.model, setup.loss_fn, setup.test_x, setup.test_y)
    return {"epoch_seconds": [h["train_seconds"] for h in history], "accuracy": result["accuracy"],
            "eval_seconds": time.perf_counter() - started}


def dense_plan(setup) -> list | None:
    """The model as [(kind, arrays)] for the hand-written loop, or None when it has non-dense layers."""
    from digitlab.nn import Dropout, Linear, ReLU, Sigmoid, Tanh
    plan = []
    for layer in setup.model.layers:
        if isinstance(layer, Linear):
            plan.append(("linear", layer.weight.data.copy(), None if layer.b is None else layer.b.data.copy()))
        elif isinstance(layer, Dropout):
            plan.append(("dropout", layer.p))
        elif isinstance(layer, (ReLU, Sigmoid, Tanh)):
            plan.append((type(layer).__name__.lower(),))
        else:
            return None
    return plan


def run_numpy(task: Task, setup, spec: dict) -> dict:
    """A minimal numpy training loop, written by hand for dense networks: one array per weight, in-place
    optimizer updates, dropout masks from random bytes. Same initial weights, same batches' sizes."""
    import numpy as np

    plan = dense_plan(setup)
    if plan is None:
        return {"skipped": "the minimal numpy loop covers dense networks only"}
    opt, loss = task.optimizer, task.loss
    params = [a for step in plan if step[0] == "linear" for a in step[1:] if a is not None]
    grads = [np.empty_like(p) for p in params]
    tmp = [np.empty_like(p) for p in params]
    lr, wd = float(opt["lr"]), float(opt.get("weight_decay", 0.0))
    if opt["name"] == "sgd":
        mu = float(opt.get("momentum", 0.0))
        vel = [np.zeros_like(p) for p in params]
    else:
        b1, b2, eps = 0.9, 0.999, 1e-8
        ms = [np.zeros_like(p) for p in params]
        vs = [np.zeros_like(p) for p in params]
    x_all, t_all = setup.train_x, setup.train_t
    n, bs = len(x_all), task.batch_size
    rng = np.random.default_rng(spec["seed"])
    first_linear = next(i for i, s in enumerate(plan) if s[0] == "linear")

    def forward(x, train):
        cache = []
        for step in plan:
            kind = step[0]
            if kind == "linear":
                cache.append(x)
                x = x @ step[1]
                if step[2] is not None:
                    x += step[2]
            elif kind == "relu":
                np.maximum(x, 0, out=x)
                cache.append(x)
            elif kind == "sigmoid":
                x = 0.5 * (1 + np.tanh(0.5 * x))
                cache.append(x)
            elif kind == "tanh":
                x = np.tanh(x)
                cache.append(x)
            elif kind == "dropout":
                if train and step[1] > 0:
                    thr = int(round(step[1] * 256))
                    keep = np.frombuffer(rng.bytes(x.size), np.uint8).reshape(x.shape) >= thr
                    mask = keep * np.float32(256 / (256 - thr))
                    x *= mask
                    cache.append(mask)
                else:
                    cache.append(None)
        return x, cache

    def train_step(x, t):
        z, cache = forward(x, True)
        if loss == "cross_entropy":
            d = np.exp(z - z.max(axis=1, keepdims=True))
            d /= d.sum(axis=1, keepdims=True)
            d[np.arange(len(t)), t] -= 1
        elif loss == "bce":
            d = 0.5 * (1 + np.tanh(0.5 * z)) - t
        else:
            d = 2 * (z - t) / z.shape[1]
        d *= np.float32(1 / len(x))
        gi = len(grads)
        for i in range(len(plan) - 1, -1, -1):
            step, c = plan[i], cache[i]
            kind = step[0]
            if kind == "linear":
                if step[2] is not None:
                    gi -= 1
                    np.sum(d, axis=0, out=grads[gi])
                gi -= 1
                np.matmul(c.T, d, out=grads[gi])
                if i > first_linear:
                    d = d @ step[1].T
            elif kind == "relu":
                d *= c > 0
            elif kind == "sigmoid":
                d *= c * (1 - c)
            elif kind == "tanh":
                d *= 1 - c * c
            elif kind == "dropout" and c is not None:
                d *= c

    def update(k):
        for i, (p, g) in enumerate(zip(params, grads)):
            if wd:
                np.multiply(p, wd, out=tmp[i])
                g += tmp[i]
            if opt["name"] == "sgd":
                if mu:
                    vel[i] *= mu
                    vel[i] += g
                    g = vel[i]
                np.multiply(g, lr, out=tmp[i])  # not g *= lr: g may be the velocity, which must keep its scale
                p -= tmp[i]
            else:
                m, v, s = ms[i], vs[i], tmp[i]
                m *= b1
                np.multiply(g, 1 - b1, out=s)
                m += s
                v *= b2
                np.multiply(g, g, out=s)
                s *= 1 - b2
                v += s
                np.sqrt(v, out=s)
                s *= 1 / math.sqrt(1 - b2 ** k)
                s += eps
                np.divide(m, s, out=s)
                s *= lr / (1 - b1 ** k)
                p -= s

    seconds, k = [], 0
    for _ in range(spec["epochs"]):
        started = time.perf_counter()
        order = rng.permutation(n)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            train_step(x_all[idx], t_all[idx])
            k += 1
            update(k)
        seconds.append(time.perf_counter() - started)
    started = time.perf_counter()
    right = 0
    for start in range(0, len(setup.test_y), EVAL_BATCH):
        z, _ = forward(setup.test_x[start:start + EVAL_BATCH], False)
        pred = (z[:, 0] < 0).astype(np.int64) if z.shape[1] == 1 else z.argmax(axis=1)
        right += int(np.sum(pred == setup.test_y[start:start + EVAL_BATCH]))
    return {"epoch_seconds": seconds, "accuracy": right / max(len(setup.test_y), 1),
            "eval_seconds": time.perf_counter() - started}


def gemm_shapes(setup, batch: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of every matrix product one training step of a batch makes: forward, weight gradient and
    (except for the first layer) input gradient of each linear layer and of each convolution as im2col."""
    from digitlab.nn import Linear
    shapes, first = [], True
    for layer, out_shape in zip(setup.model.layers, setup.model.layer_shapes):
        if isinstance(layer, Linear):
            m, k, n = batch, layer.in_shape[0], layer.units
        elif type(layer).__name__ == "Conv2d":
            c, kk, filters = layer.in_shape[0], layer.kernel, layer.filters
            m, k, n = batch * out_shape[1] * out_shape[2], c * kk * kk, filters
        else:
            continue
        shapes += [(m, k, n), (k, m, n)] + ([] if first else [(m, n, k)])
        first = False
    return shapes


def gemm_seconds(m: int, k: int, n: int, min_time: float = 0.05) -> float:
    """Seconds of one float32 (m, k) @ (k, n) product into a preallocated output: the best of a few runs."""
    import numpy as np
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    np.matmul(a, b, out=out)
    reps = 1
    while True:
        started = time.perf_counter()
        for _ in range(reps):
            np.matmul(a, b, out=out)
        took = time.perf_counter() - started
        if took >= min_time:
            break
        reps *= 4
    best = took / reps
    for _ in range(2):
        started = time.perf_counter()
        for _ in range(reps):
            np.matmul(a, b, out=out)
        best = min(best, (time.perf_counter() - started) / reps)
    return best


def run_matmul(task: Task, setup, spec: dict) -> dict:
    """The arithmetic limit: an epoch's matrix products alone, at the measured GEMM rate for each shape."""
    n, bs = len(setup.train_x), task.batch_size
    full, rest = divmod(n, bs)
    seconds, flops = 0.0, 0.0
    for batch, count in ((bs, full), (rest, 1 if rest else 0)):
        if not count:
            continue
        for shape in gemm_shapes(setup, batch):
            seconds += count * gemm_seconds(*shape)
            flops += count * 2.0 * math.prod(shape)
    return {"epoch_seconds": [seconds], "gflops": flops / seconds / 1e9 if seconds else None,
            "note": f"numpy float32 GEMM at {flops / seconds / 1e9:.0f} GFLOP/s over the task's shapes"}


def torch_model(setup):
    """The digitlab model's layers as torch modules, with its initial weights copied over."""
    import torch
    from digitlab.nn import Dropout, Flatten, Linear, ReLU, Sigmoid, Tanh
    modules = []
    with torch.no_grad():
        for layer, shape in zip(setup.model.layers, setup.model.layer_shapes):
            kind = type(layer).__name__
            if isinstance(layer, Linear):
                m = torch.nn.Linear(layer.in_shape[0], layer.units, bias=layer.b is not None)
                m.weight.copy_(torch.from_numpy(layer.weight.data.T.copy()))
                if layer.b is not None:
                    m.bias.copy_(torch.from_numpy(layer.b.data))
            elif kind == "Conv2d":
                if layer.padding == "same" and layer.stride != 1:
                    raise ValueError("torch has padding='same' for stride 1 only")
                m = torch.nn.Conv2d(layer.in_shape[0], layer.filters, layer.kernel, layer.stride,
                                    padding=layer.padding, bias=layer.b is not None)
                m.weight.copy_(torch.from_numpy(layer.weight.data))
                if layer.b is not None:
                    m.bias.copy_(torch.from_numpy(layer.b.data))
            elif kind == "MaxPool2d":
                m = torch.nn.MaxPool2d(layer.size, layer.stride)
            elif isinstance(layer, Dropout):
                m = torch.nn.Dropout(layer.p)
            elif isinstance(layer, Flatten):
                m = torch.nn.Flatten()
            elif isinstance(layer, (ReLU, Sigmoid, Tanh)):
                m = {ReLU: torch.nn.ReLU, Sigmoid: torch.nn.Sigmoid, Tanh: torch.nn.Tanh}[type(layer)]()
            else:
                raise ValueError(f"no torch equivalent for {kind}")
            modules.append(m)
    return torch.nn.Sequential(*modules)


def run_torch(task: Task, setup, spec: dict, best: bool = False, loader: bool = False) -> dict:
    """PyTorch CPU, same layers, initial weights, optimizer, batch size and threads. Batches are gathered by
    indexing the tensors with a permutation (what digitlab does), or with `loader`, by PyTorch's own
    DataLoader over a TensorDataset, the loop most PyTorch code is written as. `best`: the fused optimizer and
    denormals flushed to zero, PyTorch's fastest CPU settings for this loop."""
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    if best:
        torch.set_flush_denormal(True)
    model = torch_model(setup)
    opt = dict(task.optimizer)
    name = opt.pop("name")
    kwargs = {"fused": True} if best else {}
    if name == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), **opt, **kwargs)
    else:
        if "betas" in opt:
            opt["betas"] = tuple(opt["betas"])
        optimizer = torch.optim.Adam(model.parameters(), **opt, **kwargs)
    loss_fn = {"bce": torch.nn.BCEWithLogitsLoss, "cross_entropy": torch.nn.CrossEntropyLoss,
               "mse": torch.nn.MSELoss}[task.loss]()
    x = torch.from_numpy(np.ascontiguousarray(setup.train_x))
    t = torch.from_numpy(setup.train_t)
    n, bs = len(x), task.batch_size
    generator = torch.Generator().manual_seed(spec["seed"])

    def batches():
        if loader:
            yield from torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, t), batch_size=bs,
                                                   shuffle=True, generator=generator)
            return
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            yield x[idx], t[idx]

    seconds = []
    model.train()
    for _ in range(spec["epochs"]):
        started = time.perf_counter()
        for xb, tb in batches():
            loss = loss_fn(model(xb), tb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    model.eval()
    started = time.perf_counter()
    right = 0
    with torch.no_grad():
        for start in range(0, len(setup.test_y), EVAL_BATCH):
            z = model(torch.from_numpy(np.ascontiguousarray(setup.test_x[start:start + EVAL_BATCH]))).numpy()
            pred = (z[:, 0] < 0).astype(np.int64) if z.shape[1] == 1 else z.argmax(axis=1)
            right += int(np.sum(pred == setup.test_y[start:start + EVAL_BATCH]))
    config = torch.__config__.show()
    backend = ", ".join(b for b in ("MKL", "oneDNN", "OpenBLAS") if b.lower() in config.lower() or
                        (b == "oneDNN" and "mkldnn" in config.lower()))
    note = "fused optimizer, denormals flushed" if best else "default optimizer"
    if loader:
        note += ", torch.utils.data.DataLoader"
    return {"epoch_seconds": seconds, "accuracy": right / max(len(setup.test_y), 1),
            "eval_seconds": time.perf_counter() - started, "note": note,
            "versions": {"torch": torch.__version__, "torch_backends": backend,
                         "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}}


def run_sklearn(task: Task, setup, spec: dict) -> dict:
    """scikit-learn's MLPClassifier, one `partial_fit` pass per epoch, float32, same batch size."""
    if task.sklearn is None:
        return {"skipped": f"does not fit MLPClassifier: {task.sklearn_note}"}
    import numpy as np
    import sklearn
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(batch_size=task.batch_size, random_state=spec["seed"], shuffle=True, **task.sklearn)
    x = np.ascontiguousarray(setup.train_x.reshape(len(setup.train_x), -1))
    y = setup.data.train.y
    classes = np.arange(len(task.digits))
    seconds = []
    for _ in range(spec["epochs"]):
        started = time.perf_counter()
        clf.partial_fit(x, y, classes=classes)
        seconds.append(time.perf_counter() - started)
    started = time.perf_counter()
    pred = clf.predict(setup.test_x.reshape(len(setup.test_x), -1))
    return {"epoch_seconds": seconds, "accuracy": float(np.mean(pred == setup.test_y)) if len(pred) else None,
            "eval_seconds": time.perf_counter() - started, "note": task.sklearn_note,
            "versions": {"scikit-learn": sklearn.__version__}}


WORKERS = {"digitlab": run_digitlab, "numpy": run_numpy, "matmul": run_matmul, "torch": run_torch,
           "torch-loader": lambda task, setup, spec: run_torch(task, setup, spec, loader=True),
           "torch-best": lambda task, setup, spec: run_torch(task, setup, spec, best=True),
           "sklearn": run_sklearn}


def measure_load() -> dict:
    """Warm load: all ten digits with a 0.1 validation split, as configs/mnist10-mlp.yaml asks, in a process
    whose decoded-array cache already exists (the first call fills it when it does not)."""
    import numpy as np
    from digitlab.data import load_digits
    from digitlab.data.idx import load_idx_set

    load_idx_set()  # fills the cache on a cold machine; a no-op memory map otherwise
    started = time.perf_counter()
    load_digits(ALL_DIGITS, 0.1, rng=np.random.default_rng(0))
    return {"load_seconds": time.perf_counter() - started, "peak_mb": peak_mb()}


# -- the machine -----------------------------------------------------------------------------------------------
def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict:
    import numpy as np
    info = {"nproc": cpus(), "cpu": cpu_model(), "python": platform.python_version(),
            "numpy": np.__version__, "blas": blas_name(),
            "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}
    return info


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_name() -> str:
    import numpy as np
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy: no dict mode
        return "unknown"


# -- output ----------------------------------------------------------------------------------------------------
def fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def format_table(results: dict) -> str:
    """A Markdown table: one row per task and engine, then the targets with met / not met."""
    head = ["task", "engine", "s/epoch", "samples/s", "peak MB", "test acc", "digitlab/engine", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for name, task in results["tasks"].items():
        for engine, row in task["engines"].items():
            if "skipped" in row or "error" in row:
                cells = [name, engine, "-", "-", "-", "-", "-", row.get("skipped") or row.get("error")]
            else:
                acc = row.get("accuracy")
                cells = [name, engine, fmt(row["seconds_per_epoch"], 3),
                         fmt(row.get("samples_per_second"), 0),
                         "-" if engine == "matmul" else fmt(row.get("peak_mb"), 0),
                         "-" if acc is None else f"{100 * acc:.2f}%",
                         fmt(row.get("ratio"), 2) if engine != "digitlab" else "1",
                         row.get("note", "")]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    data = results.get("data", {})
    lines += ["", f"Warm MNIST load (ten digits, validation 0.1, fresh process): "
                  f"{fmt(data.get('load_seconds'), 3)} s (target < 0.5 s)."]
    targets = [(name, t) for name, task in results["tasks"].items() for t in task.get("targets", [])]
    if targets:
        lines += ["", "| task | target | digitlab/engine | met |", "| --- | --- | --- | --- |"]
        for name, t in targets:
            met = "-" if t["met"] is None else ("met" if t["met"] else "NOT met")
            lines.append(f"| {name} | {t['what']} | {fmt(t['ratio'], 2)} | {met} |")
    return "\n".join(lines)


def format_machine(results: dict) -> str:
    m = results["machine"]
    parts = [f"{m['nproc']} CPUs ({m['cpu']})", f"Python {m['python']}", f"numpy {m['numpy']} ({m['blas']})"]
    if "torch" in m:
        parts.append(f"torch {m['torch']} ({m.get('torch_backends', '')}, {m.get('torch_cpu_capability', '')})")
    if "scikit-learn" in m:
        parts.append(f"scikit-learn {m['scikit-learn']}")
    if m.get("openblas_thread_timeout"):
        parts.append(f"OPENBLAS_THREAD_TIMEOUT={m['openblas_thread_timeout']}")
    return (", ".join(parts) + f"; {results['threads']} threads, {results['epochs']} epochs; load average "
            f"{results['load_before']} before, {results.get('load_after')} after")


def write_json(results: dict, path) -> None:
    from digitlab.runs import atomic_write  # a bad path is a one-line StorageError, and never a half-written file
    atomic_write(path, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":  # a worker: python -m digitlab.bench '<spec as JSON>'
    out = worker(json.loads(sys.argv[1]))
    sys.stdout.flush()
    print(json.dumps(out))
