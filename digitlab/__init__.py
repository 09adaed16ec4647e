"""digitlab: neural-network experiments on handwritten digits, with a from-scratch numpy engine."""

import os

# OpenBLAS's idle threads spin for about 0.1 s after every matrix product before they sleep. On a small machine
# that spinning takes the core that the optimizer's second thread (digitlab.system.threads) and other processes need;
# sleeping at once costs only microseconds of wake-up per product. Read when numpy loads OpenBLAS, so it is set
# here, before any numpy import; a value already in the environment wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

__version__ = "0.1.0"
