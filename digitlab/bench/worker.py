"""One measurement in a fresh interpreter (`python -m digitlab.bench.worker SPEC`), so that peak memory is one
engine's alone and no engine's threads or allocator state slow the next. Prints the figures as its last line."""

from __future__ import annotations

import json
import statistics
import sys
import time

ALL_DIGITS = list(range(10))


def peak_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def setup_task(task, seed: int, limit: int | None):
    """The task's config through digitlab's own `prepare`: data, model, loss, optimizer. The peers take their data
    and initial weights from it. With a limit the test set is cut to it too."""
    from digitlab.run.setup import prepare

    setup = prepare(task.resolved(seed, limit))
    test = setup.data.test
    cut = slice(None) if limit is None else slice(0, limit)
    setup.test_x, setup.test_y = setup.inputs(test)[cut], test.y[cut]
    setup.train_x = setup.inputs(setup.data.train)
    setup.train_t = setup.loss_fn.targets(setup.data.train.y, setup.model.out_shape[0])
    return setup


def measure_load() -> dict:
    """Warm load: all ten digits with a 0.1 validation split, as configs/mnist10-mlp.yaml asks, in a process
    whose decoded-array cache already exists (the first call fills it when it does not)."""
    import numpy as np

    from digitlab.data import load_data
    from digitlab.data.mnist import MNIST

    MNIST().parts()  # fills the cache on a cold machine; a memory map otherwise
    started = time.perf_counter()
    load_data({"digits": ALL_DIGITS, "validation": 0.1}, rng=np.random.default_rng(0))
    return {"load_seconds": time.perf_counter() - started, "peak_mb": peak_mb()}


def measure(spec: dict) -> dict:
    from digitlab.bench.engines import ENGINES
    from digitlab.bench.tasks import TASKS

    engine = spec["engine"]
    if engine == "load":
        return measure_load()
    task = TASKS[spec["task"]]
    started = time.perf_counter()
    setup = setup_task(task, spec["seed"], spec["limit"])
    load_seconds = time.perf_counter() - started
    result = ENGINES[engine](task, setup, spec)
    if "skipped" in result:
        return result
    seconds = result["epoch_seconds"]
    per_epoch = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    n = len(setup.data.train)
    result.update(seconds_per_epoch=per_epoch, samples_per_second=n / per_epoch if per_epoch else None,
                  n_train=n, n_test=len(setup.test_y), load_seconds=load_seconds, peak_mb=peak_mb())
    return result


if __name__ == "__main__":
    out = measure(json.loads(sys.argv[1]))
    sys.stdout.flush()
    print(json.dumps(out))
