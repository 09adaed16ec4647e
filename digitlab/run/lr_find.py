"""`digitlab lr-find CONFIG`: Leslie Smith's learning-rate range test (fastai's `lr_find`). From the config's
initial weights, train while the learning rate grows exponentially, one step per batch, over a few hundred
batches; stop when the loss explodes. The loss falls fastest somewhat below the learning rate where it is
lowest: the suggestion is that minimum's learning rate divided by 10 (fastai's `lr_min`).

It writes its own folder under --runs-dir (<name>-lr-find-<time>/: lr_find.yaml, lr_find.csv, lr_find.png,
lr_find.json) and touches nothing else. The folder is not a run folder: compare and sweeps pass it by.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

import numpy as np

from digitlab.config import dump
from digitlab.data import DataLoader, Sampler
from digitlab.data.augment import make_augment
from digitlab.errors import RunError, UserError
from digitlab.figures.canvas import png
from digitlab.options import plural
from digitlab.run.folder import RunFolder

SMOOTHING = 0.98  # the exponential moving average of the loss (bias-corrected), as fastai
EXPLODED = 4.0  # stop once the smoothed loss is this many times its lowest
WARMUP = 10  # batches before the explosion test applies


@dataclass
class Search:
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    stopped: str = ""
    folder: RunFolder | None = None

    @property
    def minimum(self) -> int:
        return int(np.nanargmin(self.smoothed))

    @property
    def suggested(self) -> float:
        return self.lrs[self.minimum] / 10

    def told(self) -> str:
        """What the command prints: the range gone through and why it stopped, the lowest loss, the plot, and
        last the line `suggested lr: X`."""
        return "\n".join([f"{plural(len(self.lrs), 'batch', 'batches')}, lr {self.lrs[0]:.3g} to "
                          f"{self.lrs[-1]:.3g}: {self.stopped}",
                          f"lowest smoothed loss {self.smoothed[self.minimum]:.4f} at lr {self.lrs[self.minimum]:.3g}",
                          f"plot: {self.folder.path / 'lr_find.png'}", f"suggested lr: {self.suggested:.3g}"])


def search(setup, start: float, end: float, steps: int) -> Search:
    """Run the range test on a prepared setup (digitlab.run.setup.prepare): `steps` batches (the training data
    is gone through again when it is shorter) with lr from `start` to `end`, stopping early on an explosion."""
    cfg, data, model = setup.cfg, setup.data, setup.model
    x = data.train.x.reshape((len(data.train),) + model.in_shape)
    targets = setup.loss_fn.targets(data.train.y, model.out_shape[0])
    transform = make_augment(cfg["data"]["augment"], setup.rng, data.image_shape)
    loader = DataLoader((x, targets), Sampler(len(x), cfg["batch_size"], shuffle=True, rng=setup.rng), transform)
    found, average, best = Search(), 0.0, math.inf
    growth = (end / start) ** (1 / max(steps - 1, 1))
    model.train()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while len(found.lrs) < steps and not found.stopped:
            for xb, tb in loader:
                lr = start * growth ** len(found.lrs)
                setup.optimizer.lr = lr
                loss = setup.loss_fn.forward(model.forward(xb), tb)
                model.backward(setup.loss_fn.backward())
                setup.optimizer.step()
                if not math.isfinite(loss):
                    found.stopped = f"the loss became {loss} at lr {lr:.3g}"
                    break
                average = SMOOTHING * average + (1 - SMOOTHING) * loss
                smooth = average / (1 - SMOOTHING ** (len(found.lrs) + 1))
                found.lrs.append(lr)
                found.losses.append(loss)
                found.smoothed.append(smooth)
                best = min(best, smooth)
                if len(found.lrs) > WARMUP and smooth > EXPLODED * best:
                    found.stopped = (f"the loss exploded at lr {lr:.3g} (smoothed {smooth:.3g}, over {EXPLODED:g} "
                                     f"x its lowest {best:.3g})")
                    break
                if len(found.lrs) >= steps:
                    break
    if not found.stopped:
        found.stopped = f"reached the last lr, {found.lrs[-1]:.3g}, without an explosion" if found.lrs else "no batch"
    return found


def figure(found: Search, title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.plot(found.lrs, found.losses, color="tab:blue", alpha=0.3, lw=1, label="loss per batch")
    ax.plot(found.lrs, found.smoothed, color="tab:blue", lw=2, label="smoothed")
    low = found.minimum
    ax.plot([found.lrs[low]], [found.smoothed[low]], "o", color="grey", label=f"lowest at lr {found.lrs[low]:.2g}")
    ax.axvline(found.suggested, color="tab:red", ls="--", lw=1.5, label=f"suggested lr {found.suggested:.2g}")
    cap = max(found.smoothed[:low + 1]) * 1.25 if low else max(found.smoothed) * 1.25
    floor = min(min(found.losses), min(found.smoothed))
    ax.set_ylim(floor - 0.05 * (cap - floor), cap)
    ax.set(xscale="log", xlabel="learning rate (log scale)", ylabel="training loss",
           title=f"{title}: learning-rate range test")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def lr_find(cfg: dict, runs_dir, start: float = 1e-7, end: float = 10.0, steps: int = 200) -> Search:
    """The range test of a validated config, written into a new folder under runs_dir."""
    from digitlab.run.setup import prepare

    setup = prepare(cfg)
    if setup.model.closed_form:
        raise UserError(f"{cfg['name']}: the model is fitted in one pass (class means), without a learning rate; "
                        f"lr-find has nothing to search")
    folder = RunFolder.create(runs_dir, f"{cfg['name']}-lr-find")
    folder.write("lr_find.yaml", dump(cfg))
    found = search(setup, start, end, steps)
    found.folder = folder
    if not found.lrs:
        raise RunError(f"{folder.path}: the loss was not finite from the first batch at lr {start:g} "
                       f"({found.stopped}); check the config")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["step", "lr", "loss", "smoothed"])
    writer.writerows([i + 1, f"{lr:.6g}", f"{loss:.6g}", f"{smooth:.6g}"]
                     for i, (lr, loss, smooth) in enumerate(zip(found.lrs, found.losses, found.smoothed)))
    folder.write("lr_find.csv", buffer.getvalue())
    folder.write("lr_find.png", png(figure(found, cfg["name"])))
    folder.write_json("lr_find.json", {"suggested_lr": found.suggested, "lowest_loss_lr": found.lrs[found.minimum],
                                       "steps": len(found.lrs), "stopped": found.stopped, "start": start, "end": end})
    return found
