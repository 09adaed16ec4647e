"""From a resolved config to the objects of one run: the data's splits, the model, the loss and the optimizer,
all drawn from one Generator seeded by the config."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitlab.config import layer_specs, loss_name
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
    loss_fn = make_loss(cfg)
    return build_model(layer_specs(cfg), image_shape, loss_fn.fuses), loss_fn


def make_loss(cfg: dict) -> Loss:
    opts = {} if isinstance(cfg["loss"], str) else {k: v for k, v in cfg["loss"].items() if k != "name"}
    return LOSSES[loss_name(cfg)](**opts)


def train_eval_rows(cfg: dict, n_train: int, n_test: int) -> np.ndarray | None:
    """The training images the per-epoch train metrics are scored on: a fixed subset, drawn from a Generator of
    its own (so it changes nothing else the seed draws), as many as `train_eval` says (default: as many as the
    test split has); None for all of them. Scoring all 54,000 MNIST training images took a fifth of a CNN's
    epoch; 10,000 give the same curve to within a tenth of a point."""
    size = cfg.get("train_eval")
    size = n_test if size is None else size
    if size == "all" or size >= n_train:
        return None
    return np.sort(np.random.default_rng([cfg["seed"], 7]).choice(n_train, size=size, replace=False))


def make_optimizer(cfg: dict, model: Sequential) -> Optimizer:
    opts = {k: v for k, v in cfg["optimizer"].items() if k not in ("name", "schedule")}
    optimizer = OPTIMIZERS[cfg["optimizer"]["name"]](model.parameters(), **opts)
    optimizer.scale_lr(model.lr_scales())
    if not optimizer.decay_all:
        optimizer.mask_decay(model.decay_mask())
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
    batches = -(-sizes["train"] // cfg["batch_size"])
    lines.append(f"training: {cfg['epochs']} epochs of {batches} batches of {cfg['batch_size']}, "
                 f"{cfg['optimizer']['name']} lr {cfg['optimizer']['lr']:g}, loss {loss_name(cfg)}")
    return "\n".join(lines)
