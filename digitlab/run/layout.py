"""The names of a run folder's files and of a sweep folder's, and the words a run's status can take: the one place
that spells them (as MLflow's FileStore names its files once), so that what writes a folder and what reads it back
can never disagree. Importing this module loads nothing else."""

from __future__ import annotations

from enum import Enum

# A run folder (docs/run-folder.md says what each holds).
RUN_JSON = "run.json"                      # status, heartbeat, command, environment; rewritten atomically
CONFIG = "config.yaml"                     # the resolved config the run trains
METRICS = "metrics.csv"                    # a row per epoch, appended
SUMMARY = "summary.json"                   # the final metrics of a finished run
LOG = "log.txt"                            # what the console printed
CHECKPOINT = "checkpoint.npz"              # weights, optimizer, Generator: where the last epoch ended
MODEL = "model.npz"                        # the trained weights of a finished run
SPLITS = "splits.npz"                      # the rows of the dataset each split took
GIT_DIFF = "git.diff"                      # uncommitted changes of the code the run started from
LOCK = ".lock"                             # held by the process training the run
REPORT = "report.html"                     # the run's page (a sweep folder's page has the same name)
FIGURES_STAMP = ".figures.json"            # which figures digitlab drew, from which files (run/stamp.py)
EMBEDDING_EPOCHS = "embedding_epochs.npz"  # the 2-unit plane at several epochs
LAYER_HEALTH = "layer_health.csv"          # each layer's health per epoch
TAGS = "tags.json"                         # the user's tags and note (digitlab tag, digitlab note)
TAGS_LOCK = ".tags.lock"                   # held while tags.json is rewritten
ONNX_MODEL = "model.onnx"                  # digitlab export --to onnx: the network as an ONNX graph
TORCH_WEIGHTS = "model.safetensors"        # digitlab export --to safetensors/torch: the weights, PyTorch's names
TORCH_MODEL = "model_torch.py"             # digitlab export --to torch: the torch.nn.Sequential that loads them

# Beside the runs: the catalog that lists them fast (runs/catalog.py), a cache of their folders.
CATALOG = ".digitlab-catalog.sqlite"

# Where `digitlab rm` puts a run folder: <the folder it was in>/.trash/<its name>, until restored or emptied.
TRASH = ".trash"

# A sweep folder: its points' run folders, and these.
SWEEP_FILE = "sweep.yaml"                  # the sweep file as run
POINTS = "points.csv"                      # every point's state and metric
COMPARE_PNG = "compare.png"                # every point's curves overlaid
LOCKS = ".locks"                           # a lock per point being trained
REPLACED = "replaced"                      # older folders of points trained again, set aside


class Status(str, Enum):
    """What run.json's `status` says, and what a reader makes of a folder: `crashed` is a `running` run that no
    live process trains, `damaged` a folder with a file digitlab cannot have written."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    DIVERGED = "diverged"
    PRUNED = "pruned"        # stopped early by a sweep's rule; resumable from its checkpoint
    CRASHED = "crashed"
    DAMAGED = "damaged"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    __hash__ = str.__hash__  # a Status and its word are one key in a set or a dict, on every Python version


WRITTEN = tuple(s.value for s in Status if s not in (Status.CRASHED, Status.DAMAGED))  # what run.json may hold
STATUSES = tuple(s.value for s in Status)                                           # what a reader may report
