"""The arithmetic limit: the time an epoch's float32 matrix products alone take at this machine's GEMM rate for
exactly the task's shapes (forward, weight gradient and input gradient of every linear and convolution layer)."""

from __future__ import annotations

import math
import time


def gemm_shapes(model, batch: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of every matrix product one training step of a batch makes: forward, weight gradient and
    (except for the first layer) input gradient of each linear layer and of each convolution as im2col."""
    from digitlab.nn import Conv2d, Linear
    shapes, first = [], True
    for layer, out_shape in zip(model.layers, model.layer_shapes):
        if isinstance(layer, Linear):
            m, k, n = batch, layer.in_shape[0], layer.units
        elif isinstance(layer, Conv2d):
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


def run_matmul(task, setup, spec: dict) -> dict:
    """The arithmetic limit: an epoch's matrix products alone, at the measured GEMM rate for each shape."""
    n, bs = len(setup.train_x), setup.cfg["batch_size"]
    full, rest = divmod(n, bs)
    seconds, flops = 0.0, 0.0
    for batch, count in ((bs, full), (rest, 1 if rest else 0)):
        if not count:
            continue
        for shape in gemm_shapes(setup.model, batch):
            seconds += count * gemm_seconds(*shape)
            flops += count * 2.0 * math.prod(shape)
    return {"epoch_seconds": [seconds], "gflops": flops / seconds / 1e9 if seconds else None,
            "note": f"numpy float32 GEMM at {flops / seconds / 1e9:.0f} GFLOP/s over the task's shapes"}
