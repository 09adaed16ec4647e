"""From a resolved config to the objects of one run: the data's splits, the model, the loss and the optimizer,
all drawn from one Generator seeded by the config."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitlab.config import layer_specs
from digitlab.config.memory import available_memory, estimate_memory
from digitlab.data import DigitData, load_data, open_source
from digitlab.nn import LOSSES, OPTIMIZERS, Loss, Optimizer, Sequential, build_model
from digitlab.nn.summary import format_summary


@dataclass
class Setup:
    """Everything a config builds, before training."""

    cfg: dict
    data: DigitData
    model: Sequential
    loss_fn: Loss
    optimizer: Optimizer
    rng: np.random.Generator

    def inputs(self, split) -> np.ndarray:
        """A split's images in the shape the model takes: a view, no copy."""
        return split.x.reshape((len(split),) + self.model.in_shape)


def make_model(cfg: dict, image_shape: tuple[int, ...]) -> tuple[Sequential, Loss]:
    """The model (weights not drawn yet) and the loss of a resolved config, for images of `image_shape`."""
    loss_fn = LOSSES[cfg["loss"]]()
    return build_model(layer_specs(cfg), image_shape, loss_fn.fuses), loss_fn


def make_optimizer(cfg: dict, model: Sequential) -> Optimizer:
    opts = {k: v for k, v in cfg["optimizer"].items() if k not in ("name", "schedule")}
    optimizer = OPTIMIZERS[cfg["optimizer"]["name"]](model.parameters(), **opts)
    optimizer.scale_lr(model.lr_scales())
    return optimizer


def prepare(cfg: dict) -> Setup:
    """Data, model, loss and optimizer of a validated config. One Generator, seeded by the config, draws the
    training pool and the validation split, the initial weights, and (later) every shuffle and dropout mask."""
    rng = np.random.default_rng(cfg["seed"])
    data = load_data(cfg["data"], rng)
    model, loss_fn = make_model(cfg, data.image_shape)
    model.reset_parameters(rng)
    return Setup(cfg, data, model, loss_fn, make_optimizer(cfg, model), rng)


def describe(setup: Setup) -> str:
    """What a run of this setup will be: the model summary, the splits' sizes and class counts, and the memory
    it needs (what `digitlab train --dry-run` prints)."""
    cfg, data, model = setup.cfg, setup.data, setup.model
    source = open_source(cfg["data"])
    sizes = data.sizes()
    lines = [format_summary(model, cfg["name"]), "",
             f"data: {source.describe()}; digits {cfg['data']['digits']}",
             f"splits: {sizes['train']} train / {sizes['val']} val / {sizes['test']} test images"]
    need, _ = estimate_memory(cfg, source, model.layer_shapes,
                              {k: p.shape for k, p in model.parameters().named.items()})
    lines.append(f"memory: about {need / 2**20:,.0f} MB of the {available_memory() / 2**30:.1f} GiB available")
    lines.append(f"training: {cfg['epochs']} epochs of {-(-sizes['train'] // cfg['batch_size'])} batches of "
                 f"{cfg['batch_size']}, {cfg['optimizer']['name']} lr {cfg['optimizer']['lr']:g}, loss {cfg['loss']}")
    return "\n".join(lines)
