"""Will it fit? A rough estimate of the memory a config needs, checked against what the machine has before
anything is allocated, so that `linear: 1000000` is one line and not a swapping machine."""

from __future__ import annotations

import math
import os


def available_memory() -> int:
    """Bytes of memory available to a new process (MemAvailable), or all physical memory where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def estimate_memory(cfg: dict, source, layer_shapes: list, param_shapes: dict) -> tuple[int, int]:
    """(bytes, parameters) a config needs, roughly: parameters with their gradients, optimizer state and
    scratch; activations of a training batch (forward and backward) and of an evaluation batch; the images."""
    params = sum(math.prod(s) for s in param_shapes.values())
    optimizer_buffers = 2 if cfg["optimizer"]["name"] == "adam" else 1
    activations = sum(math.prod(s) for s in layer_shapes) + source.input_size
    images = source.num_images * source.input_size
    floats = params * (3 + optimizer_buffers) + activations * (3 * cfg["batch_size"] + 2 * 2000) + images
    return 4 * floats, params


def check_memory(cfg: dict, source, layer_shapes: list, param_shapes: dict, fail) -> None:
    need, params = estimate_memory(cfg, source, layer_shapes, param_shapes)
    have = available_memory()
    if need > have:
        fail("model", f"needs about {need / 2**30:.1f} GiB of memory ({params:,} parameters, batch_size "
                      f"{cfg['batch_size']}), more than the {have / 2**30:.1f} GiB available")
