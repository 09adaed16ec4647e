"""Will it fit? A rough estimate of the memory a config needs, checked against what this process may still
allocate before anything is allocated, so that `linear: 1000000` is one line and not a swapping machine or a
MemoryError traceback.

What a process may allocate is the tightest of: the machine's available memory (MemAvailable), the address-space
limit (`ulimit -v`, RLIMIT_AS) less what the process has mapped already, and its cgroup's limit less its usage
(v2: memory.max and memory.current; v1: memory.limit_in_bytes and memory.usage_in_bytes), for its own cgroup and
every cgroup above it.
"""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass
from pathlib import Path

from digitlab.errors import UserError
from digitlab.nn import OPTIMIZERS
from digitlab.nn.optim import NoOptimizer
from digitlab.options import plural, size_text

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63
EVAL_BATCH = 2000  # images scored at a time in evaluation, as the estimate counts them


class OutOfMemory(UserError):
    """An allocation that failed although the estimate fitted: the machine, not the input, ran short. Exit code
    1, as a failed run."""

    exit_code = 1


@dataclass
class Limit:
    """Bytes this process may still allocate, and what says so ('MemAvailable', 'ulimit -v', 'cgroup
    memory.max')."""

    bytes: int
    source: str


def meminfo_limit(path: Path = Path("/proc/meminfo")) -> Limit | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return Limit(int(line.split()[1]) * 1024, "MemAvailable")
    except (OSError, ValueError, IndexError):
        pass
    try:
        return Limit(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "physical memory")
    except (ValueError, OSError, AttributeError):
        return None


def mapped_bytes(path: Path = Path("/proc/self/status")) -> int:
    """The address space this process has mapped already (VmSize), 0 where unknown."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rlimit_limit() -> Limit | None:
    """What `ulimit -v` (RLIMIT_AS, its soft limit) leaves: the limit less the address space mapped already."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    return Limit(max(soft - mapped_bytes(), 0), "ulimit -v")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (v2's no limit) and damage alike: none


def _own_paths(self_cgroup: Path) -> dict[str, str]:
    """This process's cgroup paths from /proc/self/cgroup: {'v2': '/a/b', 'v1': '/c'} (v1: the memory controller)."""
    found: dict[str, str] = {}
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            found["v2"] = parts[2]
        elif "memory" in parts[1].split(","):
            found["v1"] = parts[2]
    return found


def _folders(top: Path, own: str | None) -> list[Path]:
    """The cgroup folder of this process under `top` and every folder above it up to `top` itself (a limit on a
    parent binds its children); just `top` where the path is unknown or not visible (a cgroup namespace)."""
    folders = [top]
    if own:
        here = top
        for part in [p for p in own.split("/") if p]:
            here = here / part
            if not here.is_dir():
                break
            folders.append(here)
    return folders


def cgroup_limit(root: Path | None = None, self_cgroup: Path | None = None) -> Limit | None:
    """The tightest cgroup memory limit less usage over this process's cgroups (v2 and v1), or None."""
    root = root or CGROUP_ROOT
    own = _own_paths(self_cgroup or SELF_CGROUP)
    found: list[Limit] = []
    for kind, top, limit_file, usage_file in (("v2", root, "memory.max", "memory.current"),
                                              ("v1", root / "memory", "memory.limit_in_bytes",
                                               "memory.usage_in_bytes")):
        for folder in _folders(top, own.get(kind)):
            limit = _read_int(folder / limit_file)
            if limit is not None and limit < NO_LIMIT:
                found.append(Limit(max(limit - (_read_int(folder / usage_file) or 0), 0), f"cgroup {limit_file}"))
    return min(found, key=lambda lim: lim.bytes, default=None)


def available_memory() -> Limit:
    """What this process may still allocate: the tightest of the machine's available memory, `ulimit -v` and
    the cgroup limits (1 TB when none can be read)."""
    limits = [lim for lim in (meminfo_limit(), rlimit_limit(), cgroup_limit()) if lim is not None]
    return min(limits, key=lambda lim: lim.bytes, default=Limit(1 << 40, "no known limit"))


def optimizer_state_bytes(cfg: dict) -> float:
    """Bytes per parameter of the config's optimizer state, as the optimizer class allocates it (none for a
    model fitted in one pass)."""
    opt = cfg.get("optimizer")
    if not opt:
        return NoOptimizer.state_bytes({})
    return OPTIMIZERS[opt["name"]].state_bytes({k: v for k, v in opt.items() if k not in ("name", "schedule")})


def estimate_memory(cfg: dict, source, layer_shapes: list, param_shapes: dict, layers: list = ()) -> tuple[int, int]:
    """(bytes, parameters) a config needs, roughly: parameters and their gradients, the optimizer's state and the
    per-parameter masks it keeps (weight decay, lr_scale); activations of a training batch (forward and backward)
    and of an evaluation batch; the images. A model fitted in one pass has no training batch."""
    params = sum(math.prod(s) for s in param_shapes.values())
    masks = (not (cfg.get("optimizer") or {}).get("decay_all", True)) + any(layer.lr_scale != 1 for layer in layers)
    activations = sum(math.prod(s) for s in layer_shapes) + source.input_size
    batch = cfg.get("batch_size") or 0
    floats = params * (2 + masks) + activations * (3 * batch + 2 * EVAL_BATCH) + source.num_images * source.input_size
    return int(4 * floats + params * optimizer_state_bytes(cfg)), params


def check_memory(cfg: dict, source, layer_shapes: list, param_shapes: dict, fail, layers: list = ()) -> None:
    need, params = estimate_memory(cfg, source, layer_shapes, param_shapes, layers)
    have = available_memory()
    if need > have.bytes:
        batch = f", batch_size {cfg['batch_size']}" if cfg.get("batch_size") else ""
        fail("model", f"needs about {size_text(need)} of memory ({plural(params, 'parameter')}{batch}), more than "
                      f"the {size_text(have.bytes)} this process may allocate ({have.source})")
