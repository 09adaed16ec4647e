"""digitlab bench: the engine's speed, memory and accuracy next to its peers, task by task.

Tasks are shipped configs (tasks.py); engines are digitlab's own, a minimal numpy loop, the matmul limit and the
optional peers PyTorch and scikit-learn (engines/); each (task, engine) pair runs in a fresh process
(worker.py); suite.py runs them and computes the ratios; report.py prints them. Every trained engine starts from
the same initial weights and is scored on the real test set after the timed epochs. Seconds per epoch are the
median of the epochs after the first.
"""

from digitlab.bench.report import format_machine, results_table, write_json
from digitlab.bench.suite import run
from digitlab.bench.tasks import TASKS

__all__ = ["format_machine", "results_table", "write_json", "run", "TASKS"]
