"""The callbacks that report a run and write its folder as it trains: a line per epoch, the metrics row, the
checkpoint and the heartbeat."""

from __future__ import annotations

import time

from digitlab.learner import Callback
from digitlab.run import checkpoint, layout
from digitlab.run.console import Console
from digitlab.run.folder import RunFolder
from digitlab.run.setup import Setup


class EpochLogger(Callback):
    """One line per epoch: losses and accuracies of each split, and the epoch's seconds (which it also puts in
    the logs, so it comes before RunWriter)."""

    def __init__(self, console: Console, epochs: int):
        self.console, self.epochs = console, epochs

    def on_epoch_begin(self, epoch, logs):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs):
        logs["seconds"] = time.perf_counter() - self.started
        parts = [f"epoch {epoch:>{len(str(self.epochs))}}/{self.epochs}"]
        for split in ("train", "val", "test"):
            if f"{split}_loss" in logs:
                parts.append(f"{split} loss {logs[f'{split}_loss']:.4f} acc {logs[f'{split}_accuracy']:.4f}")
        parts.append(f"{logs['seconds']:.1f}s")
        self.console.echo("  ".join(parts))


class RunWriter(Callback):
    """Writes each epoch's metrics row, then the checkpoint, and keeps run.json's heartbeat fresh (at every
    epoch end and every HEARTBEAT seconds within an epoch)."""

    HEARTBEAT = 30.0

    def __init__(self, run: RunFolder, setup: Setup, config_yaml: str):
        self.run, self.setup, self.config_yaml = run, setup, config_yaml
        self.beat = time.monotonic()

    def on_train_begin(self, logs):
        if not (self.run / layout.CHECKPOINT).exists():
            self.save_checkpoint(0)  # so that a run stopped during its first epoch can resume too

    def on_batch_end(self, batch, logs):
        if time.monotonic() - self.beat > self.HEARTBEAT:
            self.run.update_status()
            self.beat = time.monotonic()

    def on_epoch_end(self, epoch, logs):
        lr = logs.get("lr", self.setup.optimizer.lr)  # the last batch's (a schedule's too); None without optimizer
        self.run.append_metrics({**logs, "lr": lr})
        self.save_checkpoint(epoch)
        self.run.update_status(epoch=epoch)
        self.beat = time.monotonic()

    def save_checkpoint(self, epoch: int) -> None:
        metrics = self.run / layout.METRICS
        state = checkpoint.Checkpoint(
            epoch=epoch, model=self.setup.model.state_dict(), optimizer=self.setup.optimizer.state_dict(),
            rng_state=self.setup.rng.bit_generator.state,
            metrics_csv=metrics.read_text(encoding="utf-8") if metrics.exists() else "",
            config_yaml=self.config_yaml,
            callbacks={cb.name: cb.state_dict() for cb in self.learner.callbacks.callbacks
                       if hasattr(cb, "state_dict")})
        self.run.save_npz(layout.CHECKPOINT, checkpoint.to_arrays(state))


class StopAfter:
    """A stop rule: end training after `epoch` (a sweep's rung), whatever the config's epochs say."""

    def __init__(self, epoch: int, reason: str = ""):
        self.epoch, self.reason = int(epoch), reason

    def check(self, rows: list[dict]) -> str | None:
        return (self.reason or f"stopped after epoch {self.epoch}") if len(rows) >= self.epoch else None

    def __repr__(self) -> str:
        return f"StopAfter({self.epoch})"


class StopCheck(Callback):
    """Asks a stop rule (see digitlab.run.lifecycle) after each epoch is recorded whether to end training there;
    `reason` says why it did. Never at the config's last epoch: a run that trained every epoch is complete."""

    def __init__(self, run: RunFolder, rule, epochs: int):
        self.run, self.rule, self.epochs = run, rule, epochs
        self.reason: str | None = None

    def on_epoch_end(self, epoch, logs):
        if self.rule is None or epoch >= self.epochs:
            return
        self.reason = self.rule.check(self.run.read_metrics())
        if self.reason:
            self.learner.stop_training = True
