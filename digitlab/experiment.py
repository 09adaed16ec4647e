"""One experiment, from a resolved config to a complete run folder.

`prepare` turns a config into data, model, loss and optimizer, all drawn from one seeded Generator;
`train` runs the Learner with the callbacks that report progress and write the run folder as it goes, then
writes the final summary, confusion matrix, plots and weights.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab import __version__, checkpoint, plots
from digitlab.config import IMAGE_SHAPE, dump, layer_specs, load_config, validate
from digitlab.data import DataLoader, DigitData, Sampler, augment, load_digits
from digitlab.errors import CheckpointError, RunError, StorageError
from digitlab.metrics import confusion_matrix, evaluate, precision_recall
from digitlab.nn import LOSSES, OPTIMIZERS, Loss, Optimizer, Sequential, build_model
from digitlab.nn.conv import Conv2d
from digitlab.nn.schedules import SCHEDULES
from digitlab.runs import RunFolder, command_line, environment, storage_error, utc_now
from digitlab.train import Callback, Evaluate, Learner, LRScheduler, ProgressBar, TerminateOnNaN


class Console:
    """Lines for the user: printed to stdout (unless quiet) and kept in the run's log.txt."""

    def __init__(self, quiet: bool = False):
        self.quiet, self.log_path = quiet, None
        self.pending: list[str] = []

    def attach(self, run: RunFolder) -> None:
        self.log_path = run / "log.txt"
        for line in self.pending:
            self._log(line)
        self.pending.clear()

    def echo(self, line: str) -> None:
        if not self.quiet:
            print(line, flush=True)
        if self.log_path is None:
            self.pending.append(line)
        else:
            self._log(line)

    def _log(self, line: str) -> None:
        try:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as exc:
            raise storage_error(self.log_path, exc) from None


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


def make_optimizer(cfg: dict, model: Sequential) -> Optimizer:
    opts = {k: v for k, v in cfg["optimizer"].items() if k not in ("name", "schedule")}
    if "betas" in opts:
        opts["betas"] = tuple(opts["betas"])
    return OPTIMIZERS[cfg["optimizer"]["name"]](model.parameters(), **opts)


def prepare(cfg: dict) -> Setup:
    """Data, model, loss and optimizer of a validated config. One Generator, seeded by the config, draws the
    validation split, the training subset, the initial weights, and (later) every shuffle and dropout mask."""
    rng = np.random.default_rng(cfg["seed"])
    data_cfg = cfg["data"]
    data = load_digits(data_cfg["digits"], data_cfg["validation"], data_cfg["limit"], data_cfg["path"], rng)
    loss_fn = LOSSES[cfg["loss"]]()
    model = build_model(layer_specs(cfg), IMAGE_SHAPE, loss_fn.fuses)
    model.reset_parameters(rng)
    return Setup(cfg, data, model, loss_fn, make_optimizer(cfg, model), rng)


class EpochLogger(Callback):
    """One line per epoch: losses and accuracies of each split, and the epoch's seconds."""

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
        if not (self.run / checkpoint.NAME).exists():
            self.save_checkpoint(0)  # so that a run stopped during its first epoch can resume too

    def on_batch_end(self, batch, logs):
        if time.monotonic() - self.beat > self.HEARTBEAT:
            self.run.update_status()
            self.beat = time.monotonic()

    def on_epoch_end(self, epoch, logs):
        self.run.append_metrics(logs)
        self.save_checkpoint(epoch)
        self.run.update_status(epoch=epoch)
        self.beat = time.monotonic()

    def save_checkpoint(self, epoch: int) -> None:
        metrics = self.run / "metrics.csv"
        state = checkpoint.Checkpoint(
            epoch=epoch, model=self.setup.model.state_dict(), optimizer=self.setup.optimizer.state_dict(),
            rng_state=self.setup.rng.bit_generator.state,
            metrics_csv=metrics.read_text(encoding="utf-8") if metrics.exists() else "",
            config_yaml=self.config_yaml)
        self.run.save_npz(checkpoint.NAME, checkpoint.to_arrays(state))


@contextlib.contextmanager
def stop_on_signals(learner: Learner):
    """Ctrl-C or SIGTERM: stop after the current batch (the epoch is abandoned; the last checkpoint stands).
    A second signal stops at once. Yields the list of signals received. Only the main thread can do this."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        learner.stop_training = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def train(cfg: dict, runs_dir: str | Path = "runs", quiet: bool = False, progress: bool = True,
          run_dir: str | Path | None = None, callbacks=()) -> RunFolder:
    """Train a validated config into a new run folder and return it: runs_dir/<name>-<UTC time>, or exactly
    `run_dir` when given (a sweep names its points' folders; it must not exist yet). The run's status in
    run.json says how it ended: complete, diverged, interrupted or failed."""
    console = Console(quiet)
    setup = prepare(cfg)
    run = RunFolder.create(runs_dir, cfg["name"]) if run_dir is None else RunFolder.create_at(run_dir)
    with run.lock():
        console.attach(run)
        config_yaml = dump(cfg)
        run.write("config.yaml", config_yaml)
        run.update_status(status="running", started=utc_now(), command=command_line(), seed=cfg["seed"],
                          **environment())
        sizes = setup.data.sizes()
        console.echo(f"{cfg['name']}: digits {cfg['data']['digits']}, {sizes['train']} train / {sizes['val']} val"
                     f" / {sizes['test']} test images, {setup.model.num_parameters()} parameters -> {run.path}")
        _fit(run, setup, console, config_yaml, start_epoch=1, progress=progress, callbacks=callbacks)
    return run


def resume(run_dir: str | Path, quiet: bool = False, progress: bool = True) -> RunFolder:
    """Continue a stopped run from its last checkpoint. For the same seed, the result equals a run that never
    stopped: same weights, same metrics.csv apart from the seconds column."""
    run = RunFolder.open(run_dir)
    with run.lock():
        status = run.status()
        if status == "complete":
            raise RunError(f"{run.path}: is complete already; nothing to resume")
        config_yaml = (run / "config.yaml").read_text(encoding="utf-8")
        cfg = load_config(run / "config.yaml")
        state = checkpoint.load(run / checkpoint.NAME)
        if state.config_yaml != config_yaml:
            raise CheckpointError(f"{run / 'config.yaml'}: changed since the checkpoint was written; refusing to resume")
        setup = prepare(cfg)
        try:
            setup.model.load_state_dict(state.model)
            setup.optimizer.load_state_dict(state.optimizer)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{run / checkpoint.NAME}: does not match the run's architecture ({exc})") from None
        setup.rng.bit_generator.state = state.rng_state
        run.write("metrics.csv", state.metrics_csv)  # drops a row written after the checkpoint, if any
        console = Console(quiet)
        console.attach(run)
        info = run.read_json("run.json")
        run.update_status(status="running", resumed=info.get("resumed", []) + [utc_now()], error=None,
                          command=command_line(), **environment())
        console.echo(f"{cfg['name']}: resuming {run.path} after epoch {state.epoch} of {cfg['epochs']}")
        _fit(run, setup, console, config_yaml, start_epoch=state.epoch + 1, progress=progress)
    return run


def _learner(run: RunFolder, setup: Setup, console: Console, config_yaml: str, start_epoch: int, progress: bool,
             callbacks) -> tuple[Learner, dict]:
    """The Learner of a prepared setup, with the callbacks that report and record each epoch, and the splits.
    Callback order matters at an epoch's end: metrics first (Evaluate), then those that print and write them."""
    cfg = setup.cfg
    splits = {"train": (setup.inputs(setup.data.train), setup.data.train.y)}
    if setup.data.val is not None:
        splits["val"] = (setup.inputs(setup.data.val), setup.data.val.y)
    splits["test"] = (setup.inputs(setup.data.test), setup.data.test.y)
    x_train = splits["train"][0]
    targets = setup.loss_fn.targets(setup.data.train.y, setup.model.out_shape[0])
    transform = augment.from_config(cfg, setup.rng, IMAGE_SHAPE)  # training batches only, the run's Generator
    loader = DataLoader((x_train, targets), Sampler(len(x_train), cfg["batch_size"], shuffle=True, rng=setup.rng),
                        transform)
    if transform is not None and start_epoch == 1:  # drawn from its own Generator: training stays as seeded
        before = x_train[:32]
        shown = augment.from_config(cfg, np.random.default_rng(cfg["seed"]), IMAGE_SHAPE)(before)
        run.save_figure("augment.png", plots.augmentation(before, shown))
    hooks = [*callbacks[:1], Evaluate(splits), ProgressBar(cfg["epochs"], progress and not console.quiet),
             EpochLogger(console, cfg["epochs"]), RunWriter(run, setup, config_yaml), *callbacks[1:]]
    schedule = cfg["optimizer"].get("schedule")
    if schedule:
        opts = {k: v for k, v in schedule.items() if k != "name"}
        hooks.insert(0, LRScheduler(SCHEDULES[schedule["name"]](cfg["optimizer"]["lr"], cfg["epochs"], **opts)))
    return Learner(setup.model, setup.loss_fn, setup.optimizer, loader, hooks), splits


def _fit(run: RunFolder, setup: Setup, console: Console, config_yaml: str, start_epoch: int,
         progress: bool = True, callbacks=()) -> None:
    """Train epochs start_epoch.. of a prepared setup into `run`, write its final files, and record how it ended.
    Whatever fails after the folder exists leaves the status `failed` (or `interrupted`), never `running`."""
    cfg = setup.cfg
    signals: list[int] = []
    nan_guard = TerminateOnNaN()
    summary = None
    try:
        learner, splits = _learner(run, setup, console, config_yaml, start_epoch, progress, [nan_guard, *callbacks])
        # Overflow on the way to a NaN loss is reported once, as divergence, not as numpy warnings.
        with stop_on_signals(learner) as signals, np.errstate(over="ignore", invalid="ignore"):
            learner.fit(cfg["epochs"], start_epoch=start_epoch)
        if not signals and not nan_guard.diverged:
            summary = finish(run, setup, splits, learner.history[-1] if learner.history else None)
    except KeyboardInterrupt:
        signals = signals or [signal.SIGINT]
    except StorageError:
        with contextlib.suppress(Exception):
            run.update_status(status="failed", ended=utc_now(), error="a write failed")
        raise
    except BaseException as exc:
        with contextlib.suppress(Exception):
            run.update_status(status="failed", ended=utc_now(), error=f"{type(exc).__name__}: {exc}")
            with open(run / "log.txt", "a", encoding="utf-8") as log:
                log.write(traceback.format_exc())
        raise
    done = len(run.read_metrics())
    if signals:
        run.update_status(status="interrupted", ended=utc_now(), epoch=done, signal=signals[0])
        console.echo(f"interrupted after epoch {done} of {cfg['epochs']}; resume with: "
                     f"digitlab train --resume {run.path}")
        return
    if nan_guard.diverged:
        d = nan_guard.diverged
        run.update_status(status="diverged", ended=utc_now(), diverged=d, hint="lower optimizer.lr")
        console.echo(f"diverged: the loss became {d['loss']} at epoch {d['epoch']}, batch {d['batch']}; "
                     f"try a lower optimizer.lr (now {cfg['optimizer']['lr']})")
        return
    run.update_status(status="complete", ended=utc_now())
    console.echo(f"test accuracy {summary['test_accuracy']:.4f}")


def finish(run: RunFolder, setup: Setup, splits: dict, last: dict | None = None) -> dict:
    """The final artefacts: summary.json, confusion.csv/png, curves, failures, embedding, model.npz.
    `last` is the final epoch's logs: its train and validation scores are those of these very weights, so they
    are not computed again (a resumed run with no epoch left to train passes None)."""
    cfg, model, classes = setup.cfg, setup.model, setup.data.classes
    rows = run.read_metrics()
    x_test, y_test = splits["test"]
    test = evaluate(model, setup.loss_fn, x_test, y_test)

    def scores(split: str) -> dict:
        if last is not None and f"{split}_accuracy" in last:
            return {"accuracy": last[f"{split}_accuracy"], "loss": last[f"{split}_loss"]}
        return evaluate(model, setup.loss_fn, *splits[split])

    train = scores("train")
    cm = confusion_matrix(y_test, test["predictions"], len(classes))
    precision, recall = precision_recall(cm)
    summary = {
        "name": cfg["name"], "test_accuracy": test["accuracy"], "test_loss": test["loss"],
        "train_accuracy": train["accuracy"], "train_loss": train["loss"],
        "epochs": len(rows), "seconds": round(sum(r["seconds"] or 0 for r in rows), 3),
        "params": model.num_parameters(),
        "dataset_sizes": setup.data.sizes(), "classes": classes,
        "precision": {str(c): round(float(p), 6) for c, p in zip(classes, precision)},
        "recall": {str(c): round(float(r), 6) for c, r in zip(classes, recall)},
    }
    if "val" in splits:
        val = scores("val")
        summary["val_accuracy"], summary["val_loss"] = val["accuracy"], val["loss"]
        scored = [r for r in rows if r.get("val_accuracy") is not None]
        if scored:
            best = max(scored, key=lambda r: r["val_accuracy"])
            summary["best_epoch"], summary["best_val_accuracy"] = best["epoch"], best["val_accuracy"]
    header = "true\\predicted," + ",".join(str(c) for c in classes)
    lines = [header] + [f"{c}," + ",".join(str(int(v)) for v in row) for c, row in zip(classes, cm)]
    run.write("confusion.csv", "\n".join(lines) + "\n")
    run.save_figure("confusion.png", plots.confusion(cm, classes))
    run.save_figure("curves.png", plots.curves(rows, title=cfg["name"]))
    run.save_figure("failures.png", plots.failures(x_test, y_test, test["predictions"], classes))
    figure = plots.embedding(model, x_test, y_test, classes)
    if figure is not None:
        run.save_figure("embedding.png", figure)
    conv = next((layer for layer in model.layers if isinstance(layer, Conv2d)), None)
    if conv is not None:
        run.save_figure("filters.png", plots.filters(conv.weight.data))
    save_model(run, model, cfg)
    run.write_json("summary.json", summary)
    return summary


def save_model(run: RunFolder, model: Sequential, cfg: dict, name: str = "model.npz") -> None:
    meta = {"layers": model.architecture(), "in_shape": list(model.in_shape), "loss": cfg["loss"],
            "classes": cfg["data"]["digits"], "digitlab": __version__}
    run.save_npz(name, {**model.state_dict(), "__architecture__": np.array(json.dumps(meta))})


def load_model(path: Path, cfg: dict) -> Sequential:
    """The model saved in a model.npz, checked against the config it was trained from."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(str(arrays.pop("__architecture__")))
        layers = meta["layers"]
    except FileNotFoundError:
        raise RunError(f"{path}: file not found") from None
    except Exception as exc:  # zip, JSON or key errors all mean the same thing to a user
        raise RunError(f"{path}: not a digitlab model file or damaged ({type(exc).__name__}: {exc})") from None
    spec_cfg = validate({**cfg, "model": layers}, str(path))
    model = build_model(layer_specs(spec_cfg), IMAGE_SHAPE, LOSSES[cfg["loss"]].fuses)
    try:
        model.load_state_dict(arrays)
    except ValueError as exc:
        raise RunError(f"{path}: {exc}") from None
    return model


def evaluate_run(run_dir: str | Path) -> dict:
    """Recompute a finished run's test metrics from its model.npz and config.yaml."""
    run = RunFolder.open(run_dir)
    cfg = load_config(run / "config.yaml")
    setup_data = load_digits(cfg["data"]["digits"], 0.0, None, cfg["data"]["path"])
    model = load_model(run / "model.npz", cfg)
    x = setup_data.test.x.reshape((len(setup_data.test),) + model.in_shape)
    result = evaluate(model, LOSSES[cfg["loss"]](), x, setup_data.test.y)
    return {"test_accuracy": result["accuracy"], "test_loss": result["loss"]}
