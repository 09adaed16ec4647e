"""The machine and software a result depends on besides its config: Python, numpy and BLAS, the digitlab
commit, the host, the number of BLAS threads (which changes the last bits of sums). Recorded in every run's
run.json and every benchmark, from this one place.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path

from digitlab import __version__
from digitlab.threads import cpus


def git_commit() -> str | None:
    """The commit of the digitlab checkout this code runs from, when it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


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
            "git_commit": git_commit(), "host": socket.gethostname(), "platform": platform.platform(),
            "blas_threads": blas_threads(), "blas_core": blas_core()}


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
    import shlex
    import sys
    argv = list(sys.argv)
    if argv and os.path.basename(argv[0]) in ("digitlab", "__main__.py"):
        argv[0] = "digitlab"
    elif argv:
        argv[0] = os.path.basename(argv[0])
    return " ".join(shlex.quote(a) for a in argv)
