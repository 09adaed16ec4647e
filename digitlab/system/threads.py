"""Elementwise work split across threads. numpy's ufuncs release the GIL while they loop, so two threads can
update two halves of a large buffer at once: this is how the optimizer's update (memory-bound, a dozen passes
over every parameter per step) and the conversion of the pixels use the second core.

Only elementwise work is split, so every element gets exactly the same arithmetic whatever the number of
threads: results are identical with 1 thread or 4. `DIGITLAB_THREADS` sets how many (default: the CPUs this
process may use, at most 4).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

MIN_CHUNK = 1 << 17  # elements: below this, handing work to another thread costs more than it saves
ALIGN = 16  # chunk boundaries on 64-byte cache lines (float32)
MAX_THREADS = 4  # memory-bound updates stop scaling after a few threads

_pool: ThreadPoolExecutor | None = None
_pool_owner: tuple[int, int] = (0, 0)  # (pid, workers): a forked child must not reuse its parent's pool
_lock = threading.Lock()


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def count() -> int:
    """How many threads elementwise work may use: $DIGITLAB_THREADS, else the CPUs available (at most 4)."""
    env = os.environ.get("DIGITLAB_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(cpus(), MAX_THREADS))


LIMIT_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "DIGITLAB_THREADS")


def limits(n: int) -> dict[str, str]:
    """Environment variables that hold the BLAS libraries and digitlab's own elementwise work to `n` threads.
    BLAS reads them when numpy loads: set them in a process before it imports numpy (`use` does, for every
    command's --threads; sweeps and the bench do for the processes they start)."""
    return {name: str(max(1, n)) for name in LIMIT_VARIABLES}


def use(n: int | None, default: bool = False) -> None:
    """Hold this process, and the processes it starts, to `n` threads (None: leave the defaults). BLAS reads the
    variables once, as numpy loads, so the command line calls this before anything imports numpy (where numpy is
    loaded already, they reach the processes it starts and what a run records of its environment). A command's
    `default` thread count is applied only before numpy loads: a caller that runs the command in its own process
    (a script, a test) keeps its environment."""
    if n and not (default and "numpy" in sys.modules):
        os.environ.update(limits(n))


def spans(n: int, parts: int | None = None, min_chunk: int = MIN_CHUNK) -> list[tuple[int, int]]:
    """[lo, hi) ranges covering 0..n: `parts` of them (default `count()`), fewer when they would be smaller
    than `min_chunk`, with boundaries on multiples of ALIGN."""
    parts = max(1, min(parts or count(), n // max(min_chunk, 1)))
    bounds = [n * i // parts // ALIGN * ALIGN for i in range(parts)] + [n]
    return list(zip(bounds[:-1], bounds[1:]))


def batch_spans(n: int, per_item: int) -> list[tuple[int, int]]:
    """[lo, hi) slices of a batch of n items (per_item numbers each) along its first axis, whatever its memory
    layout: a share per thread, none smaller than MIN_CHUNK numbers."""
    parts = max(1, min(count(), n * per_item // MIN_CHUNK, n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_owner
    with _lock:
        pid = os.getpid()
        if _pool is None or _pool_owner[0] != pid or _pool_owner[1] < workers:
            if _pool is not None and _pool_owner[0] == pid:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="digitlab")
            _pool_owner = (pid, workers)
        return _pool


def run(fn: Callable[[int, int], None], ranges: list[tuple[int, int]]) -> None:
    """fn(lo, hi) for every range: the first in this thread, the others in the pool; returns when all are done
    (an exception in any of them is raised here, after all have finished)."""
    if len(ranges) == 1:
        fn(*ranges[0])
        return
    pool = _executor(len(ranges) - 1)
    futures = [pool.submit(fn, lo, hi) for lo, hi in ranges[1:]]
    try:
        fn(*ranges[0])
    finally:
        wait(futures)  # never return (or unwind) while another thread still writes into the buffers
    for future in futures:
        future.result()
