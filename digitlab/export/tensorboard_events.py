"""Runs as TensorBoard event files, written with tensorboardX (no TensorFlow).

Each run is a folder of the log folder, `<label>` (a sweep's point: `<sweep>/<point>`), with `train/`,
`validation/` and `test/` inside: every metrics.csv column becomes a scalar per epoch (the epoch is the step),
`train_loss` as `loss` in `<label>/train`, `val_accuracy` as `accuracy` in `<label>/validation`, so TensorBoard
draws one `loss` chart and one `accuracy` chart where train, validation and test of a run, and the runs of a sweep,
lie over each other. `lr` is `learning_rate` and `seconds` is `seconds` in `<label>` itself, with the final
metrics (`final/test_accuracy`...), the figures (the confusion matrix, the curves) as images, and the HParams
plugin's session: the flattened config and the status, so that TensorBoard's HParams table and parallel
coordinates show a sweep, with each scalar's last value as a metric. Scalars are float32, as TensorBoard keeps
them: a reader gets metrics.csv's numbers back as np.float32 of them. Exporting a run again replaces its folder.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
from pathlib import Path

from digitlab.errors import UserError
from digitlab.export.reading import Exportable, flat_config, timestamp, unique_destinations
from digitlab.system.storage import make_folder

DEFAULT = "tensorboard"
FOLDERS = {"train_": "train", "val_": "validation", "test_": "test"}
RENAMED = {"lr": "learning_rate"}
FINAL = ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "val_accuracy", "val_loss",
         "best_val_accuracy", "params")
EVENTS = "events.out.tfevents."  # how every event file's name starts (tensorboardX names them)


def load_tensorboardx() -> None:
    """Import tensorboardX without the torch it would import at once where torch is installed (seconds; it uses
    torch only for torch tensors and graphs, which digitlab never hands it)."""
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        return
    sys.modules["torch"] = None  # import torch raises ImportError, which tensorboardX expects without torch
    try:
        import tensorboardX  # noqa: F401
    finally:
        del sys.modules["torch"]


def place(column: str) -> tuple[str, str]:
    """(folder inside the run's, tag) of a metrics.csv column: train_loss -> ("train", "loss")."""
    for prefix, folder in FOLDERS.items():
        if column.startswith(prefix):
            return folder, column[len(prefix):]
    return "", RENAMED.get(column, column)


def scalar(tag: str, value: float):
    """A Summary holding one scalar. TensorBoard keeps scalars as float32 (its data server reads no float64
    tensors), which holds metrics.csv's 6 decimals to float32's 7 significant digits."""
    from tensorboardX.summary import scalar as make
    return make(tag, float(value))


def image(tag: str, png: bytes):
    """A Summary holding a PNG as it is (its size read from the PNG header)."""
    from tensorboardX.proto.summary_pb2 import Summary
    width, height = struct.unpack(">II", png[16:24])
    return Summary(value=[Summary.Value(tag=tag, image=Summary.Image(height=height, width=width, colorspace=4,
                                                                     encoded_image_string=png))])


def _times(item: Exportable) -> list[float]:
    """Each epoch's wall time: the run's start plus the seconds of the epochs up to it."""
    start = timestamp(item.run.info.get("started"))
    if start is None:
        start = item.run.path.stat().st_mtime
    return [start + elapsed for elapsed in item.elapsed]


def _figures(item: Exportable) -> dict[str, bytes]:
    """The confusion matrix and the curves by tag: the run folder's own PNGs, or drawn from its files as `digitlab
    report` draws them (the confusion matrix only for a complete run, which has its final model)."""
    from digitlab.run.outputs import OUTPUTS, confusion_png, curves_png
    out = {}
    for tag, make in (("figures/confusion", confusion_png), ("figures/curves", curves_png)):
        path = item.run.path / next(o.name for o in OUTPUTS.values() if o.make is make)
        if path.is_file():
            out[tag] = path.read_bytes()
        elif make is curves_png or item.run.status == "complete":
            try:
                out[tag] = make(item.view)
            except UserError:  # a model.npz or splits.npz that cannot be read: the figure is left out
                continue
    return out


def hparams(item: Exportable) -> list:
    """The HParams plugin's session start (the config, the status) and end."""
    from tensorboardX.summary import hparams as make
    values = {k: v for k, v in flat_config(item.run.cfg).items() if v != "null"}
    values.pop("name", None)  # the session's folder names the run
    values["status"] = str(item.run.status)
    _, start, end = make(values, {})
    return [start, end]


def write_run(item: Exportable, folder: Path) -> None:
    from tensorboardX.writer import FileWriter
    writers: dict[str, FileWriter] = {}

    def writer(name: str) -> FileWriter:
        if name not in writers:
            writers[name] = FileWriter(str(folder / name) if name else str(folder), flush_secs=3600)
        return writers[name]

    times = _times(item)
    for row, time in zip(item.metrics, times):
        for column, value in row.items():
            if column != "epoch" and value is not None:
                sub, tag = place(column)
                writer(sub).add_summary(scalar(tag, value), row["epoch"], time)
    last, end = item.metrics[-1], times[-1]
    final = {**{k: v for k, v in last.items() if k != "epoch"}, **(item.run.summary or {})}
    for key in FINAL:
        if isinstance(final.get(key), (int, float)):
            writer("").add_summary(scalar(f"final/{key}", final[key]), last["epoch"], end)
    for tag, png in _figures(item).items():
        writer("").add_summary(image(tag, png), last["epoch"], end)
    for summary in hparams(item):
        writer("").add_summary(summary, last["epoch"], end)
    for w in writers.values():
        w.close()


def _replace(target: Path, written: Path) -> None:
    """`written` in the place of `target`, which may hold an earlier export of the run (event files only)."""
    if target.exists():
        foreign = [p for p in target.rglob("*") if p.is_file() and not p.name.startswith(EVENTS)]
        if foreign or not target.is_dir():
            shutil.rmtree(written, ignore_errors=True)
            raise UserError(f"{target}: already holds files other than TensorBoard events "
                            f"({foreign[0].name if foreign else 'a file'}); choose another --out")
        shutil.rmtree(target)
    os.replace(written, target)


def export(items: list[Exportable], out: str | None, say) -> None:
    """Each run into the log folder `out` (default: tensorboard), replacing an earlier export of it; two runs of
    one label (a/r and b/r) are refused before anything is written, as the second would replace the first."""
    root = Path(out or DEFAULT)
    unique_destinations([root / item.label for item in items], "folder")
    load_tensorboardx()
    make_folder(root)
    for item in items:
        target = root / item.label
        make_folder(target.parent)
        scratch = target.parent / f".{target.name}.export-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            write_run(item, scratch)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        _replace(target, scratch)
        say(str(target))
    say(f"see them: tensorboard --logdir {root}")
