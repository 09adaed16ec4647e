"""The benchmark's tasks: each is a shipped config (configs/<file>), trained with no validation split, no
schedule and no augmentation, so that every engine does the same work epoch after epoch; and the ratios
digitlab must meet against its peers on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from digitlab.errors import UserError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"  # the source checkout's configs/ folder
BENCH_SET = ("data.validation=0", "data.augment=null", "optimizer.schedule=null")


def configs_dir() -> Path:
    if not CONFIGS.is_dir():
        raise UserError(f"{CONFIGS}: not found; digitlab bench reads its tasks from the configs/ folder of a source "
                        f"checkout (pip install -e .)")
    return CONFIGS


@dataclass(frozen=True)
class Task:
    """A benchmark: a config file and the ratios it must meet. `targets` are (engine, limit, what): digitlab's
    seconds per epoch divided by that engine's must be <= limit."""

    name: str
    config: str  # relative to configs/
    targets: tuple = ()
    sklearn: dict | None = None  # MLPClassifier options when the task maps onto it
    sklearn_note: str = ""

    def resolved(self, seed: int = 0, limit: int | None = None) -> dict:
        """The task's config as every engine trains it: the file with BENCH_SET, one epoch, this seed and limit."""
        from digitlab.config import load_config
        overrides = BENCH_SET + (f"seed={seed}", "epochs=1", f"data.limit={'null' if limit is None else limit}",
                                 f"name=bench-{self.name}")
        return load_config(configs_dir() / self.config, overrides)

    @property
    def description(self) -> str:
        from digitlab.runs.columns import architecture
        cfg = self.resolved()
        opt = cfg["optimizer"]
        arch = architecture(cfg)
        from digitlab.config import loss_name
        return (f"configs/{self.config}: {arch[0] if arch else '?'}, {loss_name(cfg)}, {opt['name']} lr {opt['lr']:g}, "
                f"batch {cfg['batch_size']}")


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    TASKS[task.name] = task
    return task


register(Task(
    "3v8", "3v8.yaml",
    targets=(("torch", 0.4, "<= 0.4 x PyTorch (a lean loop indexing tensors)"),
             ("torch-loader", 0.4, "<= 0.4 x PyTorch (the usual loop, torch.utils.data.DataLoader)"),
             ("numpy", 1.2, "within 1.2x of the minimal numpy loop")),
    sklearn_note="MLPClassifier has one activation for all hidden layers (the 2-unit layer here is linear) "
                 "and no dropout"))

register(Task(
    "mnist10-mlp", "mnist10-mlp.yaml",
    targets=(("torch", 0.8, "<= 0.8 x PyTorch (default Adam)"),
             ("torch-best", 1.2, "<= 1.2 x PyTorch (fused Adam, denormals flushed)"),
             ("sklearn", 1.0, "faster than scikit-learn")),
    sklearn={"hidden_layer_sizes": (1024, 512), "activation": "relu", "solver": "adam", "alpha": 0.0,
             "learning_rate_init": 0.001},
    sklearn_note="no dropout (MLPClassifier has none)"))

register(Task(
    "mnist10-cnn", "bench/mnist10-cnn.yaml",
    targets=(("torch", 1.0, "<= 1.0 x PyTorch (default Adam)"),
             ("torch-best", 1.4, "<= 1.4 x PyTorch (fused Adam, denormals flushed)")),
    sklearn_note="MLPClassifier has no convolutions"))
