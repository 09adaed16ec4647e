"""`digitlab predict RUN IMAGE...`: a trained run classifies a person's own digits. Each image is made into what
the run's dataset holds (digitlab.data.photo), the saved model gives its probabilities, and the top three are
printed, or written as JSON for scripts, or drawn (`--explain`): the image as read, as the model saw it, and the
probabilities as bars. A network trained on some of the digits (3 vs 8) can only answer with those: the text
says so on its first line and the JSON lists them (`classes`), so that a 5 answered with a 3 is understood.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab.config import warn_stderr
from digitlab.data.photo import read_grey, to_digit
from digitlab.errors import DamagedRun, RunError
from digitlab.nn.metrics import class_probabilities
from digitlab.run import layout
from digitlab.run.files import NOT_FINITE
from digitlab.run.folder import RunFolder
from digitlab.run.view import RunView


@dataclass
class Prediction:
    path: Path
    original: np.ndarray  # grey levels as read (H, W)
    seen: np.ndarray  # what the model took (channels, rows, cols)
    probabilities: np.ndarray  # (classes,)
    classes: list

    @property
    def predicted(self) -> int:
        return self.classes[int(np.argmax(self.probabilities))]

    def top(self, k: int = 3) -> list[tuple[int, float]]:
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(self.classes[i], float(self.probabilities[i])) for i in order]


def classifier(run_dir: str | Path) -> RunView:
    """The run's view with its model read and checked: RunError when the run has no model.npz (it did not
    complete), DamagedRun when the file is not this run's."""
    run = RunFolder.open(run_dir)
    view = RunView(run)
    if (run / layout.MODEL).exists() and not (run / layout.MODEL).is_file():
        raise DamagedRun(run / layout.MODEL, "is a folder, not a file")
    if not (run / layout.MODEL).is_file():
        try:
            status = run.status()
        except RunError:
            status = "unknown"
        raise RunError(f"{run / layout.MODEL}: not found (the run is {status}); predict needs a run that completed")
    view.model  # noqa: B018 (read and checked now, before any image is)
    return view


def predict(run_dir: str | Path, images: list[str | Path], warn=warn_stderr) -> list[Prediction]:
    """Every image read and prepared first (a bad one stops everything with one line), then classified; `warn`
    hears about an image whose reading is doubtful (a shadow left along its edge)."""
    view = classifier(run_dir)
    originals = [read_grey(path) for path in images]
    seen = [to_digit(grey, view.image_shape, str(path), warn) for grey, path in zip(originals, images)]
    x = np.stack(seen).reshape((len(seen),) + view.model.in_shape)
    with np.errstate(over="ignore", invalid="ignore"):
        probabilities = class_probabilities(view.model.predict(x))
    if not np.isfinite(probabilities).all():
        raise DamagedRun(view.run / layout.MODEL, NOT_FINITE)
    return [Prediction(Path(p), o, s, pr, view.classes) for p, o, s, pr in zip(images, originals, seen, probabilities)]


def knows_only(classes: list) -> str | None:
    """`this network knows only 3 and 8` for a network trained on some of the ten digits, else None: whatever
    is drawn, its answer is one of those."""
    if set(classes) >= set(range(10)):
        return None
    names = [str(c) for c in classes]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"this network knows only {listed}"


def as_text(predictions: list[Prediction]) -> str:
    """One line per image: its path, then the top three digits with their probabilities; first, for a network
    that knows only some digits, a line naming them."""
    width = max(len(str(p.path)) for p in predictions)
    lines = [f"{str(p.path):<{width}}  " + "  ".join(f"{d} {q:6.1%}" for d, q in p.top(3)) for p in predictions]
    note = knows_only(predictions[0].classes)
    return "\n".join(([note] if note else []) + lines)


def as_json(predictions: list[Prediction]) -> str:
    """A list with one object per image: its path, the predicted digit, every class's probability, and
    `classes`, the digits the network knows (its only possible answers)."""
    return json.dumps([{"image": str(p.path), "predicted": int(p.predicted),
                        "probabilities": {str(c): round(float(q), 6) for c, q in zip(p.classes, p.probabilities)},
                        "classes": [int(c) for c in p.classes]}
                       for p in predictions], indent=2)


def explain(predictions: list[Prediction], out: str | Path) -> Path:
    """One row per image: the file as read, the digit as the model saw it, the probabilities (top one green)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from digitlab.figures.canvas import save_png

    n = len(predictions)
    fig, axes = plt.subplots(n, 3, figsize=(9, 2.4 * n), squeeze=False, gridspec_kw={"width_ratios": [1, 1, 1.6]})
    for row, p in zip(axes, predictions):
        row[0].imshow(p.original, cmap="gray", vmin=0, vmax=1)
        row[0].set_title(_short(p.path.name), fontsize=9)
        row[1].imshow(p.seen[0], cmap="gray_r", vmin=0, vmax=1)
        row[1].set_title(f"as the model saw it ({p.seen.shape[1]}x{p.seen.shape[2]})", fontsize=9)
        for ax in row[:2]:
            ax.set_xticks([])
            ax.set_yticks([])
        best = int(np.argmax(p.probabilities))
        row[2].bar(range(len(p.classes)), p.probabilities,
                   color=["#2ca02c" if i == best else "#9e9e9e" for i in range(len(p.classes))])
        row[2].set_xticks(range(len(p.classes)), [str(c) for c in p.classes])
        row[2].set_ylim(0, 1)
        row[2].set_title(f"predicted {p.predicted} ({p.probabilities[best]:.1%})", fontsize=10)
        row[2].grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_png(out, fig)


def _short(name: str, limit: int = 30) -> str:
    return name if len(name) <= limit else name[:limit - 1] + "…"
