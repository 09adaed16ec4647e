"""The machine and software a result depends on besides its config: Python, numpy and BLAS, the versions of
digitlab's runtime dependencies, the digitlab commit and whether its tree had uncommitted changes (and which:
a run keeps them as git.diff), the host, the number of BLAS threads (which changes the last bits of sums).
Recorded in every run's run.json and every benchmark, from this one place; `digitlab reproduce` names the
entries that differ when a run does not come out the same again.

The versions and the checkout's state are read once a process (each takes subprocesses or a walk over the
installed packages, tens of milliseconds): a sweep worker trains hundreds of points with the code it imported
when it started, so what it first read is what every point ran.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from pathlib import Path

from digitlab import __version__
from digitlab.system.threads import cpus

DIFF_LIMIT = 1 << 20  # bytes of uncommitted changes a run keeps in git.diff


def _git(*args: str) -> str | None:
    """The output of a git command in the digitlab checkout this code runs from; None outside git."""
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True,
                             timeout=10, errors="replace")
        return out.stdout if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def git_commit() -> str | None:
    """The commit of the digitlab checkout this code runs from, when it is one."""
    out = _git("rev-parse", "HEAD")
    return out.strip() or None if out is not None else None


@functools.cache
def git_dirty() -> bool | None:
    """Whether that checkout has uncommitted changes (untracked files included); None outside git."""
    out = _git("status", "--porcelain", "--untracked-files=normal")
    return None if out is None else bool(out.strip())


@functools.cache
def uncommitted_changes() -> str | None:
    """The checkout's changes against its commit as one patch (`git apply` takes it back): the tracked files'
    diff, then each untracked file as an added one. None outside git, "" for a clean tree."""
    diff, top = _git("diff", "HEAD", "--binary"), _git("rev-parse", "--show-toplevel")
    if diff is None or top is None:
        return None
    untracked = _git("-C", top.strip(), "ls-files", "--others", "--exclude-standard", "-z") or ""
    for name in filter(None, untracked.split("\0")):
        try:  # `git diff --no-index` exits 1 when the files differ, which they do
            out = subprocess.run(["git", "diff", "--no-index", "--binary", "--", os.devnull, name], cwd=top.strip(),
                                 capture_output=True, text=True, timeout=10, errors="replace")
            diff += out.stdout
        except (OSError, subprocess.SubprocessError):
            continue
    return diff


def versions() -> dict[str, str | None]:
    """The installed version of each of digitlab's runtime dependencies (its install_requires)."""
    return dict(_versions())


@functools.cache
def _versions() -> dict[str, str | None]:
    import re
    from importlib import metadata
    try:
        required = metadata.requires("digitlab") or []
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        required = ["numpy", "click", "pyyaml", "mnist", "matplotlib", "tqdm"]
    names = [re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0] for r in required if "extra ==" not in r]
    found = {}
    for name in sorted(set(names), key=str.lower):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def blas_threads() -> str:
    """The BLAS thread limit this process was started with ('default' when none was set)."""
    return os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default"


def blas_core() -> str:
    """The OpenBLAS kernels asked for (OPENBLAS_CORETYPE: Haswell, SkylakeX...), or "auto" for OpenBLAS's own
    choice by CPU: they change the speed of every product and its last bits."""
    return os.environ.get("OPENBLAS_CORETYPE") or "auto"


def environment() -> dict:
    """What a run's numbers depend on besides its config."""
    import numpy as np
    return {"python": platform.python_version(), "numpy": np.__version__, "digitlab": __version__,
            "git_commit": git_commit(), "git_dirty": git_dirty(), "host": socket.gethostname(),
            "platform": platform.platform(), "blas_threads": blas_threads(), "blas_core": blas_core(),
            "versions": versions()}


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


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict:
    """The machine a benchmark ran on."""
    import numpy as np
    return {"nproc": cpus(), "cpu": cpu_model(), "python": platform.python_version(), "numpy": np.__version__,
            "blas": blas_name(), "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}


def command_line() -> str:
    """The command this process runs, as a shell would take it back (`python -m digitlab` shown as digitlab)."""
    import sys
    argv = list(sys.argv)
    if argv and os.path.basename(argv[0]) in ("digitlab", "__main__.py"):
        argv[0] = "digitlab"
    elif argv:
        argv[0] = os.path.basename(argv[0])
    return " ".join(_shell_quote(a) for a in argv)


def _shell_quote(arg: str) -> str:
    """shlex.quote, or for an argument that is not UTF-8 (Python keeps its bytes as surrogates, which no text
    file can hold) bash's $'...' with each byte that is not plain ASCII as \\xNN."""
    import shlex
    raw = os.fsencode(arg)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "$'" + "".join(chr(b) if 32 <= b < 127 and b not in b"'\\" else f"\\x{b:02x}" for b in raw) + "'"
    return shlex.quote(arg)
