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

from digitlab.nn.metrics import score
from digitlab.options import Boolean, Choice, Integer, Number

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
            if self.stop_training:  # a callback decided before this epoch (an early stop carried over a resume)
                break
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


class OnePass:
    """The Learner of a model fitted in one pass (class means, see nn.means): the same callbacks around a single
    epoch in which the model sees all the training data once and fits itself."""

    def __init__(self, model: Sequential, loss_fn: Loss, x: np.ndarray, y: np.ndarray, callbacks=()):
        self.model, self.loss_fn, self.x, self.y = model, loss_fn, x, y
        self.callbacks = CallbackList(callbacks, self)
        self.stop_training = False
        self.epoch = 0
        self.history: list[dict] = []

    def fit(self, epochs: int = 1, start_epoch: int = 1) -> list[dict]:
        self.callbacks.on_train_begin({})
        if start_epoch == 1:
            self.epoch = 1
            logs = {"epoch": 1}
            self.callbacks.on_epoch_begin(1, logs)
            started = time.perf_counter()
            self.model.fit(self.x, self.y)
            logs["train_seconds"] = time.perf_counter() - started
            self.callbacks.on_epoch_end(1, logs)
            self.history.append(logs)
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


class EarlyStopping(Callback):
    """Keras' EarlyStopping: stop when `monitor` has not improved by more than `min_delta` for `patience`
    epochs in a row; with `restore_best`, the model ends with the weights of its best epoch. Accuracies must
    rise, losses fall. Only training and validation metrics can be monitored: choosing by the test set would
    make its score meaningless.

    Its state (best value and epoch, epochs waited, whether it stopped, the best weights) is a state_dict that
    the run's checkpoints keep, so a resumed run stops exactly where an uninterrupted one would."""

    options = {"monitor": Choice(["val_accuracy", "val_loss", "train_accuracy", "train_loss"]),
               "patience": Integer(1), "min_delta": Number(0), "restore_best": Boolean()}
    name = "early_stopping"

    def __init__(self, monitor: str = "val_accuracy", patience: int = 5, min_delta: float = 0.0,
                 restore_best: bool = True):
        self.monitor, self.patience, self.min_delta, self.restore_best = monitor, int(patience), float(min_delta), \
            bool(restore_best)
        self.sign = 1.0 if monitor.endswith("accuracy") else -1.0  # larger is better after the sign
        self.best, self.best_epoch, self.wait, self.stopped_epoch = -math.inf, 0, 0, 0
        self.best_weights: dict[str, np.ndarray] | None = None

    def on_train_begin(self, logs):
        if self.stopped_epoch:
            self.learner.stop_training = True

    def on_epoch_end(self, epoch, logs):
        value = self.sign * logs[self.monitor]
        if value > self.best + self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_weights = self.learner.model.state_dict()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch
                self.learner.stop_training = True

    def on_train_end(self, logs):
        if self.restore_best and self.best_weights is not None:
            self.learner.model.load_state_dict(self.best_weights)

    @property
    def weights_epoch(self) -> int | None:
        """The epoch whose weights the model ends with when it restores the best ones."""
        return self.best_epoch if self.restore_best and self.best_weights is not None else None

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {"best": np.array(self.best), "best_epoch": np.array(self.best_epoch), "wait": np.array(self.wait),
                 "stopped_epoch": np.array(self.stopped_epoch)}
        for key, value in (self.best_weights or {}).items():
            state[f"weights/{key}"] = value
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.wait, self.stopped_epoch = int(state["wait"]), int(state["stopped_epoch"])
        weights = {k.split("/", 1)[1]: v for k, v in state.items() if k.startswith("weights/")}
        self.best_weights = weights or None
