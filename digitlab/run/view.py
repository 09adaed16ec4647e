"""A run folder as its outputs see it: the config, run.json, the metrics, the splits of the data, the model and
its scores on the test split, each read (and checked) when first asked for.

Every end-of-run output (digitlab.run.outputs) is a function of a RunView, so any of them can be made again from
a saved run folder, as MLflow or Guild show any past run from its files. A live run hands the view the objects
it already holds (the same values the files have), so finishing a run reads nothing back.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from digitlab.config import read_run_config
from digitlab.data import DigitData, load_data, open_source
from digitlab.errors import DamagedRun
from digitlab.nn import Loss, Sequential
from digitlab.nn.metrics import score
from digitlab.run import layout
from digitlab.run.files import NOT_FINITE, load_model, load_splits
from digitlab.run.folder import RunFolder
from digitlab.run.setup import make_loss


class RunView:
    def __init__(self, run: RunFolder, **known):
        self.run = run
        self.__dict__.update(known)  # cfg, data, model... that a live run already has

    @cached_property
    def cfg(self) -> dict:
        return read_run_config(self.run / layout.CONFIG)

    @cached_property
    def info(self) -> dict:
        return self.run.info()

    @cached_property
    def rows(self) -> list[dict]:
        return self.run.read_metrics()

    @cached_property
    def data(self) -> DigitData:
        """The recorded splits; for a run older than splits.npz, the splits its seed draws again."""
        recorded = load_splits(self.run, self.cfg)
        if recorded is not None:
            return recorded
        return load_data(self.cfg["data"], np.random.default_rng(self.cfg["seed"]))

    @cached_property
    def image_shape(self) -> tuple[int, int, int]:
        return self.data.image_shape if "data" in self.__dict__ else open_source(self.cfg["data"]).image_shape

    @cached_property
    def model(self) -> Sequential:
        model, self.model_meta = load_model(self.run / layout.MODEL, self.cfg, self.image_shape)
        return model

    @cached_property
    def loss_fn(self) -> Loss:
        return make_loss(self.cfg)

    @property
    def classes(self) -> list[int]:
        return self.cfg["data"]["digits"]

    def inputs(self, split: str) -> np.ndarray:
        """A split's images in the shape the model takes (a view)."""
        dataset = getattr(self.data, split)
        return dataset.x.reshape((len(dataset),) + self.model.in_shape)

    @cached_property
    def test(self) -> dict:
        """The model's loss, accuracy, probabilities and predictions on the test split."""
        with np.errstate(over="ignore", invalid="ignore"):  # weights that overflow are reported below, once
            result = score(self.model, self.loss_fn, self.inputs("test"), self.data.test.y)
        if not (np.isfinite(result["loss"]) and np.isfinite(result["probabilities"]).all()):
            raise DamagedRun(self.run / layout.MODEL, NOT_FINITE)
        return result


def evaluate_run(run_dir) -> dict:
    """Recompute a finished run's test metrics from its model.npz, config.yaml and recorded splits."""
    view = RunView(RunFolder.open(run_dir))
    return {"test_accuracy": view.test["accuracy"], "test_loss": view.test["loss"]}
