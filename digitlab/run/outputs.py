"""The end-of-run outputs, as a registry: each is a function of a RunView (what a run folder holds) that gives
the file's contents, or None when it does not apply to the run (no 2-unit layer, no convolution...).

`write_outputs` writes them all when a run ends, and again for any saved run folder, so an output added later
can be made for old runs too. Adding one is a function here (or in digitlab.run.inside) with
`@output("name.png", section=..., caption=...)`: what report.html shows of it is declared there, with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from digitlab.data.augment import make_augment
from digitlab.figures.canvas import png
from digitlab.nn.metrics import confusion_matrix, precision_recall
from digitlab.run import layout
from digitlab.run.folder import RunFolder
from digitlab.run.inside import INSIDE
from digitlab.run.setup import train_eval_rows
from digitlab.run.view import RunView

FIGURE_KINDS = (".png", ".gif")  # what report.html can embed


@dataclass(frozen=True)
class Output:
    """One output of a run folder: `make` gives the file's contents from a RunView. A figure with a `caption`
    is shown on report.html in the page's `section` of that name (one the page does not lay out: under "More
    figures"); `narrow` figures sit side by side there. An output without a caption is not shown as a figure.
    `at_start`: made when training starts, from the config and the data alone."""

    name: str
    make: Callable[[RunView], bytes | str | dict | None]
    section: str = ""
    caption: str = ""
    narrow: bool = False
    at_start: bool = False

    def __call__(self, view: RunView) -> bytes | str | dict | None:
        return self.make(view)

    @property
    def figure(self) -> bool:
        """A picture, drawn from the folder's other files: what a light run leaves for `digitlab report` to draw
        when someone looks (and keeps in the folder once drawn)."""
        return self.name.endswith(FIGURE_KINDS)


OUTPUTS: dict[str, Output] = {}
AT_START: set[str] = set()  # outputs made when training starts (from the config and data alone)


def output(name: str, section: str = "", caption: str = "", narrow: bool = False, at_start: bool = False):
    """Register the decorated function of a RunView as the output `name`, with what report.html shows of it."""
    if caption and not name.endswith(FIGURE_KINDS):
        raise ValueError(f"{name}: only a figure ({', '.join(FIGURE_KINDS)}) has a caption")
    if (section or narrow) and not caption:
        raise ValueError(f"{name}: a figure in a section needs a caption")

    def register(fn):
        OUTPUTS[name] = Output(name, fn, section, caption, narrow, at_start)
        if at_start:
            AT_START.add(name)
        return fn
    return register


def captioned() -> list[Output]:
    """The outputs report.html shows as figures (those with a caption), in the order they were registered."""
    return [o for o in OUTPUTS.values() if o.caption]


def write_outputs(run: RunFolder, view: RunView, names=None, figures: bool = True) -> list[str]:
    """Write the outputs named (default: all, summary.json last, so that its presence means the rest are
    there) into `run`, the figures among them only with `figures`; returns the names written."""
    written = []
    for name in [n for n in OUTPUTS if n != layout.SUMMARY] + [layout.SUMMARY]:
        if (names is not None and name not in names) or (not figures and OUTPUTS[name].figure):
            continue
        content = OUTPUTS[name](view)
        if content is None:
            continue
        if isinstance(content, dict):
            run.write_json(name, content)
        else:
            run.write(name, content)
        written.append(name)
    return written


def _confusion(view: RunView):
    return confusion_matrix(view.data.test.y, view.test["predictions"], len(view.classes))


@output("confusion.csv")
def confusion_csv(view: RunView) -> str:
    header = "true\\predicted," + ",".join(str(c) for c in view.classes)
    lines = [header] + [f"{c}," + ",".join(str(int(v)) for v in row) for c, row in zip(view.classes, _confusion(view))]
    return "\n".join(lines) + "\n"


@output("confusion.png")
def confusion_png(view: RunView) -> bytes:
    """The confusion matrix as a figure (report.html shows it as a table, shaded by row)."""
    from digitlab.figures import run as plots
    return png(plots.confusion(_confusion(view), view.classes))


def train_eval(view: RunView) -> dict:
    """How many training images the train metrics were scored on, of how many."""
    sizes = view.data.sizes()
    rows = train_eval_rows(view.cfg, sizes["train"], sizes["test"])
    return {"images": sizes["train"] if rows is None else len(rows), "of": sizes["train"]}


def chance(view: RunView) -> dict:
    """What guessing scores on the test split: always the most common class, and a uniform random class."""
    import numpy as np
    counts = np.bincount(view.data.test.y, minlength=len(view.classes))
    return {"majority": float(counts.max() / max(counts.sum(), 1)), "uniform": 1 / len(view.classes)}


@output("curves.png", section="curves", caption="Loss, accuracy and error rate (log scale, with the chance level) "
        "per epoch: train dashed, validation dash-dot, test solid.")
def curves_png(view: RunView) -> bytes:
    from digitlab.figures import run as plots
    return png(plots.curves(view.rows, title=view.cfg["name"], chance=chance(view)["majority"]))


@output("augment.png", section="augmentation", caption="Training images before and after augmentation.",
        at_start=True)
def augment_png(view: RunView) -> bytes | None:
    """32 training images before and after augmentation, drawn from a Generator of their own (seeded as the
    run), so the figure never changes what training draws."""
    import numpy as np

    from digitlab.figures import run as plots
    transform = make_augment(view.cfg["data"].get("augment"), np.random.default_rng(view.cfg["seed"]),
                             view.data.image_shape)
    if transform is None:
        return None
    before = view.data.train.x[:32]
    return png(plots.augmentation(before, transform(before)))


@output(layout.SUMMARY)
def summary_json(view: RunView) -> dict:
    """Final test metrics of the saved model; train and validation metrics of the epoch that made it (from
    metrics.csv); sizes, classes, per-class precision and recall, the best epoch by validation accuracy."""
    rows, classes, test = view.rows, view.classes, view.test
    model = view.model  # reads model.npz, and with it the epoch whose weights it holds
    epoch = getattr(view, "model_meta", {}).get("epoch") or len(rows)
    last = rows[epoch - 1] if 0 < epoch <= len(rows) else (rows[-1] if rows else {})
    precision, recall = precision_recall(_confusion(view))
    summary = {
        "name": view.cfg["name"], "test_accuracy": test["accuracy"], "test_loss": test["loss"],
        "train_accuracy": last.get("train_accuracy"), "train_loss": last.get("train_loss"),
        "epochs": len(rows), "seconds": round(sum(r["seconds"] or 0 for r in rows), 3),
        "params": model.num_parameters(), "weights_epoch": epoch,
        "dataset_sizes": view.data.sizes(), "classes": classes, "chance": chance(view),
        "train_eval": train_eval(view),
        "precision": {str(c): round(float(p), 6) for c, p in zip(classes, precision)},
        "recall": {str(c): round(float(r), 6) for c, r in zip(classes, recall)},
    }
    if view.data.val is not None:
        summary["val_accuracy"], summary["val_loss"] = last.get("val_accuracy"), last.get("val_loss")
        scored = [r for r in rows if r.get("val_accuracy") is not None]
        if scored:
            best = max(scored, key=lambda r: r["val_accuracy"])
            summary["best_epoch"], summary["best_val_accuracy"] = best["epoch"], best["val_accuracy"]
    return summary


def _register(declared: dict) -> None:
    """Outputs declared in another module (name -> (function, facts)) into the registry, in their order."""
    for name, (make, facts) in declared.items():
        output(name, **facts)(make)


_register(INSIDE)  # the figures of the network's inside (digitlab.run.inside)
