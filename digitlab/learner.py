"""The Learner: the training loop, and the callbacks that watch it (Keras-style hooks).

The loop is the algorithm and nothing else: for each batch, forward, loss, backward, step. Everything around
it (metrics, progress, the run folder, checkpoints, stopping on NaN) is a callback. Every callback sees every
event. Setting `learner.stop_training` during an epoch abandons that epoch (it gets no on_epoch_end, so no
half-epoch is ever recorded as complete); setting it in on_epoch_end stops after that epoch.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

from digitlab.metrics import score

if TYPE_CHECKING:
    from digitlab.data import DataLoader
    from digitlab.nn import Loss, Optimizer, Sequential


class Callback:
    """Hooks around the loop. `logs` is the dict of metrics so far for the epoch (train_, val_, test_ keys)."""

    learner: Learner

    def on_train_begin(self, logs: dict) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict) -> None: ...
    def on_batch_begin(self, batch: int, logs: dict) -> None: ...
    def on_batch_end(self, batch: int, logs: dict) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict) -> None: ...
    def on_train_end(self, logs: dict) -> None: ...


class CallbackList:
    """Calls one hook on every callback, in order; return values are ignored, so no callback can turn a hook
    off for the ones after it."""

    def __init__(self, callbacks, learner: Learner):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.learner = learner

    def __getattr__(self, hook):
        def call(*args):
            for cb in self.callbacks:
                getattr(cb, hook)(*args)
        return call


class Learner:
    """Trains `model` on batches from `loader` with `loss_fn` and `optimizer`, epoch by epoch."""

    def __init__(self, model: Sequential, loss_fn: Loss, optimizer: Optimizer, loader: DataLoader,
                 callbacks=()):
        self.model, self.loss_fn, self.optimizer, self.loader = model, loss_fn, optimizer, loader
        self.callbacks = CallbackList(callbacks, self)
        self.stop_training = False
        self.epoch = 0
        self.history: list[dict] = []

    def fit(self, epochs: int, start_epoch: int = 1) -> list[dict]:
        """Epochs start_epoch..epochs (1-based; a resumed run starts later). Returns one logs dict per epoch."""
        self.stop_training = False
        self.callbacks.on_train_begin({})
        for epoch in range(start_epoch, epochs + 1):
            self.epoch = epoch
            logs = {"epoch": epoch}
            self.model.train()
            self.callbacks.on_epoch_begin(epoch, logs)
            started = time.perf_counter()
            for batch, (x, target) in enumerate(self.loader):
                self.callbacks.on_batch_begin(batch, {})
                output = self.model.forward(x)
                loss = self.loss_fn.forward(output, target)
                self.model.backward(self.loss_fn.backward())
                self.optimizer.step()
                self.callbacks.on_batch_end(batch, {"loss": loss, "size": len(x)})
                if self.stop_training:
                    break
            if self.stop_training:  # stopped mid-epoch: the epoch is abandoned, not ended
                break
            logs["train_seconds"] = time.perf_counter() - started
            self.callbacks.on_epoch_end(epoch, logs)
            self.history.append(logs)
            if self.stop_training:
                break
        self.callbacks.on_train_end(self.history[-1] if self.history else {})
        return self.history


class ScoreSplits(Callback):
    """At the end of each epoch, loss and accuracy (in evaluation mode, in large batches) on each named split:
    logs gets <split>_loss and <split>_accuracy, e.g. train_loss, val_accuracy, test_loss."""

    def __init__(self, splits: dict[str, tuple[np.ndarray, np.ndarray]]):
        self.splits = splits

    def on_epoch_end(self, epoch, logs):
        for name, (x, y) in self.splits.items():
            result = score(self.learner.model, self.learner.loss_fn, x, y)
            logs[f"{name}_loss"], logs[f"{name}_accuracy"] = result["loss"], result["accuracy"]


class TerminateOnNaN(Callback):
    """Stops at the first batch whose loss is NaN or infinite, recording where (Keras has the same name)."""

    def __init__(self):
        self.diverged: dict | None = None

    def on_batch_end(self, batch, logs):
        if not math.isfinite(logs["loss"]):
            self.diverged = {"epoch": self.learner.epoch, "batch": batch, "loss": str(logs["loss"])}
            self.learner.stop_training = True


class LRScheduler(Callback):
    """Sets the optimizer's lr before every batch from a schedule of fractional epochs (see nn.schedules)."""

    def __init__(self, schedule):
        self.schedule = schedule

    def on_batch_begin(self, batch, logs):
        self.learner.optimizer.lr = self.schedule(self.learner.epoch - 1 + batch / len(self.learner.loader))

    def on_epoch_end(self, epoch, logs):
        logs["lr"] = self.learner.optimizer.lr


class ProgressBar(Callback):
    """A tqdm bar over the batches of each epoch with the running mean loss (on stderr, only on a terminal)."""

    def __init__(self, epochs: int, enabled: bool = True):
        self.epochs, self.enabled, self.bar = epochs, enabled, None

    def on_epoch_begin(self, epoch, logs):
        if self.enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=len(self.learner.loader), desc=f"epoch {epoch}/{self.epochs}", unit="batch",
                            leave=False, disable=None, dynamic_ncols=True)
        self.seen, self.total = 0, 0.0

    def on_batch_end(self, batch, logs):
        self.seen += logs["size"]
        self.total += logs["loss"] * logs["size"]
        if self.bar is not None:
            self.bar.update(1)
            if batch % 10 == 0:
                self.bar.set_postfix(loss=f"{self.total / self.seen:.4f}", refresh=False)

    def on_epoch_end(self, epoch, logs):
        logs["running_loss"] = self.total / max(self.seen, 1)
        if self.bar is not None:
            self.bar.close()
            self.bar = None
