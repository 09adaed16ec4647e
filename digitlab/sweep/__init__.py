"""Sweeps: a base config and what varies (a grid, random samples, seeds), each point a normal run folder under
`<runs dir>/<sweep name>/`, run unattended, here, in processes or on a Dask cluster.

A point is identified by a hash of its resolved config, so running a sweep again finds what is done: complete
points are skipped, crashed and interrupted ones run again (resumed from their checkpoint), failed and diverged
ones only with `retry_failed`. The process that trains a point holds its lock (digitlab.system.locks), so two sweeps at
once never train the same point. A sweep with `prune:` stops unpromising points early (digitlab.sweep.prune).
"""

from digitlab.sweep.files import epochs_line, summary_rows
from digitlab.sweep.runner import SweepResult, run_sweep
from digitlab.sweep.spec import Point, Sweep, load_sweep

__all__ = ["epochs_line", "summary_rows", "SweepResult", "run_sweep", "Point", "Sweep", "load_sweep"]
