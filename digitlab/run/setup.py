"""From a resolved config to the objects of one run: the data's splits, the model, the loss and the optimizer,
all drawn from one Generator seeded by the config."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitlab.config import layer_specs, loss_name
from digitlab.config.memory import OutOfMemory, available_memory, estimate_memory
from digitlab.data import DigitData, load_data, open_source
from digitlab.nn import LOSSES, OPTIMIZERS, Loss, Optimizer, Sequential, build_model
from digitlab.nn.optim import NoOptimizer
from digitlab.nn.summary import format_summary
from digitlab.options import plural, size_text
from digitlab.run.console import Console


@dataclass
class Setup:
    """Everything a config builds, before training."""

    cfg: dict
    data: DigitData
    model: Sequential
    loss_fn: Loss
    optimizer: Optimizer | NoOptimizer
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


def make_optimizer(cfg: dict, model: Sequential) -> Optimizer | NoOptimizer:
    """The config's optimizer over the model's parameters; a model fitted in one pass has none (its config says
    null)."""
    if cfg["optimizer"] is None:
        return NoOptimizer()
    opts = {k: v for k, v in cfg["optimizer"].items() if k not in ("name", "schedule")}
    optimizer = OPTIMIZERS[cfg["optimizer"]["name"]](model.parameters(), **opts)
    optimizer.scale_lr(model.lr_scales())
    if not optimizer.decay_all:
        optimizer.mask_decay(model.decay_mask())
    return optimizer


def prepare(cfg: dict) -> Setup:
    """Data, model, loss and optimizer of a validated config. One Generator, seeded by the config, draws the
    training pool and the validation split, the initial weights, and (later) every shuffle and dropout mask.
    Memory that runs out on the way, although the config's estimate fitted, is one line (OutOfMemory)."""
    rng = np.random.default_rng(cfg["seed"])
    try:
        data = load_data(cfg["data"], rng)
        model, loss_fn = make_model(cfg, data.image_shape)
        model.reset_parameters(rng)
        return Setup(cfg, data, model, loss_fn, make_optimizer(cfg, model), rng)
    except MemoryError as exc:
        raise OutOfMemory(f"{cfg['name']}: out of memory while loading the data and building the model "
                          f"({exc or 'MemoryError'}); nothing was written: try a smaller model or data.limit") from None


def start_warnings(setup: Setup) -> list[str]:
    """The warnings a run of this setup gives as it starts, about the config and its data (the batch larger than
    the training set). `digitlab train --dry-run` prints them, and with them `health_warning`'s."""
    cfg, train = setup.cfg, len(setup.data.train)
    if cfg["batch_size"] is not None and cfg["batch_size"] > train:
        return [f"batch_size {cfg['batch_size']} is larger than the {plural(train, 'training image')}: every "
                f"epoch is one batch of {train}"]
    return []


def health_warning(setup: Setup) -> str | None:
    """The layer-health warning a run gives at its start (HealthRecorder measures epoch 0 on the same probe
    images), or None."""
    from digitlab.inside.health import PROBE, alarm, layer_health

    rows = layer_health(setup.model, setup.loss_fn, setup.inputs(setup.data.train)[:PROBE],
                        setup.data.train.y[:PROBE])
    message = alarm(rows, fused_output=setup.model.output_activation is not None)
    return f"at the start: {message}" if message else None


def train_eval_line(cfg: dict, sizes: dict) -> str | None:
    """What a run says when its per-epoch train metrics are scored on a subset, or None."""
    rows = train_eval_rows(cfg, sizes["train"], sizes["test"])
    if rows is None:
        return None
    return f"train metrics on a fixed {len(rows):,} of the {plural(sizes['train'], 'training image')} (train_eval)"


def describe(setup: Setup, warn=None) -> str:
    """What a run of this setup will be: the model summary, the splits' sizes and class counts, and the memory
    it needs (what `digitlab train --dry-run` prints). The warnings the run would give at its start go to
    `warn(line)` (by default to stderr, as the run prints them)."""
    cfg, data, model = setup.cfg, setup.data, setup.model
    warn = warn or Console().warn
    for line in start_warnings(setup) + [health_warning(setup)]:
        if line:
            warn(line)
    source = open_source(cfg["data"])
    sizes = data.sizes()
    lines = [format_summary(model, cfg["name"]), "",
             f"data: {source.describe()}; digits {cfg['data']['digits']}",
             f"splits: {sizes['train']} train / {sizes['val']} val / "
             f"{plural(sizes['test'], 'test image', grouped=False)}"]
    subset = train_eval_line(cfg, sizes)
    if subset:
        lines.append(subset)
    need, _ = estimate_memory(cfg, source, model.layer_shapes,
                              {k: p.shape for k, p in model.parameters().named.items()}, model.layers)
    have = available_memory()
    lines.append(f"memory: about {size_text(need)} of the {size_text(have.bytes)} this process may allocate "
                 f"({have.source})")
    if cfg["optimizer"] is None:
        lines.append(f"training: one pass over the training data, no optimizer, loss {loss_name(cfg)}")
    else:
        batches = -(-sizes["train"] // cfg["batch_size"])
        lines.append(f"training: {plural(cfg['epochs'], 'epoch')} of {plural(batches, 'batch', 'batches')} of "
                     f"{cfg['batch_size']}, {cfg['optimizer']['name']} lr {cfg['optimizer']['lr']:g}, loss "
                     f"{loss_name(cfg)}")
    return "\n".join(lines)
