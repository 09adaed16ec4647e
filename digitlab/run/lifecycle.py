"""A run's life: start it in a new folder, train it epoch by epoch, stop it cleanly on Ctrl-C or SIGTERM,
resume it from its checkpoint, and record how it ended (complete, diverged, interrupted, pruned or failed) in
run.json. Whatever happens after the folder exists, the status never stays `running` behind a dead process.

A caller may end training early with a `stop` rule (a sweep's pruning, `digitlab reproduce` of a pruned run):
an object whose `check(rows)` is asked after each epoch is recorded (its metrics row and checkpoint written) and
returns why to stop there, or None. The run then ends `pruned` with its config unchanged, so resuming it later
continues the same lr schedule and ends exactly as a run that never paused.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import traceback
from pathlib import Path

import numpy as np

from digitlab.config import dump, load_config
from digitlab.config.memory import OutOfMemory
from digitlab.data import DataLoader, Sampler
from digitlab.data.augment import make_augment
from digitlab.errors import CheckpointError, DamagedRun, RunError, StorageError
from digitlab.learner import EarlyStopping, Learner, LRScheduler, OnePass, ProgressBar, ScoreSplits, TerminateOnNaN
from digitlab.nn import SCHEDULES
from digitlab.nn.summary import format_summary
from digitlab.options import plural
from digitlab.run import checkpoint, layout
from digitlab.run.callbacks import EpochLogger, RunWriter, StopCheck
from digitlab.run.console import Console
from digitlab.run.files import save_git_diff, save_model, save_splits
from digitlab.run.folder import FINISHED_FIELDS, RunFolder, utc_now
from digitlab.run.outputs import AT_START, OUTPUTS, write_outputs
from digitlab.run.page import write_report
from digitlab.run.records import recorders
from digitlab.run.setup import Setup, prepare, start_warnings, train_eval_line, train_eval_rows
from digitlab.run.stamp import Stamp
from digitlab.run.transfer import init_weights
from digitlab.run.view import RunView
from digitlab.system.environment import command_line, environment


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


@contextlib.contextmanager
def failures_recorded(run: RunFolder):
    """Whatever fails inside leaves run.json saying `failed` (as far as it can still be written) instead of
    `running`: a write that failed as one line naming the path, anything else with its traceback in log.txt."""
    try:
        yield
    except StorageError as exc:
        with contextlib.suppress(Exception):
            run.update_status(status="failed", ended=utc_now(), error=f"a write failed: {exc.path}")
        kept = "its last checkpoint is intact" if (run / layout.CHECKPOINT).exists() else "nothing was trained yet"
        raise exc.because(f"the run stopped, {kept}") from None
    except (KeyboardInterrupt, OutOfMemory):  # OutOfMemory: recorded already, where it happened
        raise
    except MemoryError as exc:
        said = f"out of memory in epoch {_epochs_done(run) + 1} ({exc or 'MemoryError'})"
        with contextlib.suppress(Exception):
            run.update_status(status="failed", ended=utc_now(), error=said)
            run.append_log(f"error: {said}")
        raise OutOfMemory(f"{run.path}: {said}; the run is recorded as failed: try a smaller batch_size or "
                          f"model") from None
    except BaseException as exc:
        with contextlib.suppress(Exception):
            run.update_status(status="failed", ended=utc_now(), error=f"{type(exc).__name__}: {exc}")
            run.append_log(traceback.format_exc().rstrip("\n"))
        raise


def _epochs_done(run: RunFolder) -> int:
    try:
        return len(run.read_metrics())
    except Exception:  # noqa: BLE001 (a metrics.csv that cannot be read counts no epoch)
        return 0


def start(cfg: dict, runs_dir: str | Path = "runs", quiet: bool = False, progress: bool = True,
          run_dir: str | Path | None = None, callbacks=(), stop=None, record: dict | None = None) -> RunFolder:
    """Train a validated config into a new run folder and return it: runs_dir/<name>-<UTC time>, or exactly
    `run_dir` when given (a sweep names its points' folders; it must not exist yet). The run's status in
    run.json says how it ended: complete, diverged, interrupted, pruned (by `stop`) or failed. `record` adds
    keys to run.json: a sweep's point says {"sweep": name, "point": id} (both null for a lone run)."""
    console = Console(quiet)
    setup = prepare(cfg)
    transfer = init_weights(setup) if cfg.get("init_from") else None  # refused before any folder is made
    if transfer is not None:
        record = {**(record or {}), "init_from": transfer.record}
    run = RunFolder.create(runs_dir, cfg["name"]) if run_dir is None else RunFolder.create_at(run_dir)
    with run.lock(), failures_recorded(run):
        console.attach(run)
        config_yaml = dump(cfg)
        run.write(layout.CONFIG, config_yaml)
        env = environment()
        run.update_status(status="running", started=utc_now(), command=command_line(), seed=cfg["seed"],
                          **{"sweep": None, "point": None, **(record or {})}, **env)
        save_git_diff(run, env, console)
        save_splits(run, setup.data, cfg)
        sizes = setup.data.sizes()
        console.echo(f"{cfg['name']}: digits {cfg['data']['digits']}, {sizes['train']} train / {sizes['val']} val"
                     f" / {plural(sizes['test'], 'test image', grouped=False)}, "
                     f"{plural(setup.model.num_parameters(), 'parameter')} -> {run.path}")
        for line in format_summary(setup.model, cfg["name"]).splitlines():
            console.echo(line)
        subset = train_eval_line(cfg, sizes)
        if subset:
            console.echo(subset)
        if transfer is not None:
            console.echo(transfer.line)
        for line in start_warnings(setup):
            console.warn(line)
        _fit(run, setup, console, config_yaml, start_epoch=1, progress=progress, callbacks=callbacks, stop=stop)
    return run


def resume(run_dir: str | Path, quiet: bool = False, progress: bool = True, stop=None, warnings=()) -> RunFolder:
    """Continue a stopped run from its last checkpoint. For the same seed, the result equals a run that never
    stopped: same weights, same metrics.csv apart from the seconds column. `warnings`: printed when it trains."""
    run = RunFolder.open(run_dir)
    with run.lock():
        resume_locked(run, quiet, progress, stop, warnings)
    return run


def resume_locked(run: RunFolder, quiet: bool = False, progress: bool = True, stop=None, warnings=()) -> None:
    """resume() of a run folder whose lock this process holds; `warnings` are printed (and logged) once it is
    sure to train."""
    info = run.info()
    refuse_complete(run, info)
    cfg = load_config(run / layout.CONFIG)  # first: it names what is wrong with the file (not UTF-8, ...)
    config_yaml = (run / layout.CONFIG).read_text(encoding="utf-8")
    resume_from(run, info, cfg, config_yaml, checkpoint_of(run, config_yaml), quiet, progress, stop, warnings)


def refuse_complete(run: RunFolder, info: dict) -> None:
    """A complete run (as its run.json, `info`, says) has nothing to resume."""
    if info["status"] == "complete":
        raise RunError(f"{run.path}: is complete already; nothing to resume")


def checkpoint_of(run: RunFolder, config_yaml: str) -> checkpoint.Checkpoint:
    """The run's last checkpoint, refused when it was written for another config than `config_yaml`."""
    state = checkpoint.load(run / layout.CHECKPOINT)
    if state.config_yaml != config_yaml:
        raise CheckpointError(f"{run / layout.CHECKPOINT}: was written for another config (config.yaml changed "
                              f"since, or the checkpoint comes from another run); refusing to resume")
    return state


def resume_from(run: RunFolder, info: dict, cfg: dict, config_yaml: str, state: checkpoint.Checkpoint,
                quiet: bool = False, progress: bool = True, stop=None, warnings=()) -> None:
    """The resume of a locked run folder whose run.json (`info`), config and checkpoint are read and checked."""
    # run.json keeps how the run started; each resume records when, how, from which epoch and where
    resume_record = {"at": utc_now(), "command": command_line(), "from_epoch": state.epoch, **environment()}
    resumes = info.get("resumes", []) + [resume_record]
    continue_from(run, cfg, config_yaml, state, Console(quiet), {"resumes": resumes},
                  f"{cfg['name']}: resuming {run.path} after epoch {state.epoch} of {cfg['epochs']}",
                  progress=progress, stop=stop, warnings=warnings)


def continue_from(run: RunFolder, cfg: dict, config_yaml: str, state: checkpoint.Checkpoint, console: Console,
                  record: dict, said: str, progress: bool = True, stop=None, warnings=()) -> None:
    """Train a locked run folder on from a loaded checkpoint, up to cfg's epochs: the weights, the optimizer,
    the Generator and the stateful callbacks as the checkpoint left them, metrics.csv as it recorded it. `record`
    goes into run.json with the status `running`; `said` is the line the console prints first, after `warnings`."""
    setup = prepare(cfg)
    try:
        setup.model.load_state_dict(state.model)
        setup.optimizer.load_state_dict(state.optimizer)
        setup.rng.bit_generator.state = state.rng_state
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{run / layout.CHECKPOINT}: does not match the run's architecture ({exc})") from None
    damaged = None
    try:
        run.read_metrics()
    except DamagedRun as exc:
        damaged = f"{exc}; rewritten from the checkpoint's copy"
    run.write(layout.METRICS, state.metrics_csv)  # drops a row written after the checkpoint, if any
    console.attach(run)
    for line in [*warnings, *([damaged] if damaged else [])]:
        console.warn(line)
    run.update_status(drop=FINISHED_FIELDS, status="running", **record)
    console.echo(said)
    _fit(run, setup, console, config_yaml, start_epoch=state.epoch + 1, progress=progress, stop=stop,
         callback_states=state.callbacks)


def _learner(run: RunFolder, setup: Setup, console: Console, config_yaml: str, start_epoch: int, progress: bool,
             callbacks, callback_states: dict | None = None) -> Learner:
    """The Learner of a prepared setup, with the callbacks that report and record each epoch. Callback order
    matters at an epoch's end: metrics first (ScoreSplits), then those that print and write them; the records
    of the inside (embedding, layer health) are written before the checkpoint that makes the epoch count."""
    cfg, data = setup.cfg, setup.data
    x_train = setup.inputs(data.train)
    rows = train_eval_rows(cfg, len(data.train), len(data.test))
    splits = {"train": (x_train, data.train.y) if rows is None else (x_train[rows], data.train.y[rows])}
    if data.val is not None:
        splits["val"] = (setup.inputs(data.val), data.val.y)
    if cfg["test_every_epoch"]:
        splits["test"] = (setup.inputs(data.test), data.test.y)
    report = [ScoreSplits(splits), *([EarlyStopping(**cfg["early_stopping"])] if cfg.get("early_stopping") else []),
              EpochLogger(console, cfg["epochs"]), *recorders(run, setup, start_epoch, console),
              RunWriter(run, setup, config_yaml)]
    for cb in report:  # a resumed run's stateful callbacks carry on from the checkpoint
        if hasattr(cb, "load_state_dict") and cb.name in (callback_states or {}):
            cb.load_state_dict(callback_states[cb.name])
    if setup.model.closed_form:  # fitted in one pass: no batches, no optimizer steps
        return OnePass(setup.model, setup.loss_fn, x_train, data.train.y, [*callbacks, *report])
    targets = setup.loss_fn.targets(data.train.y, setup.model.out_shape[0])
    transform = make_augment(cfg["data"]["augment"], setup.rng, data.image_shape)  # training batches only
    loader = DataLoader((x_train, targets), Sampler(len(x_train), cfg["batch_size"], shuffle=True, rng=setup.rng),
                        transform)
    if transform is not None and start_epoch == 1 and drawn(cfg):
        write_outputs(run, RunView(run, cfg=cfg, data=data), names=AT_START)
    hooks = [*callbacks[:1], ProgressBar(cfg["epochs"], progress and not console.quiet), *report, *callbacks[1:]]
    schedule = cfg["optimizer"].get("schedule")
    if schedule:
        opts = {k: v for k, v in schedule.items() if k != "name"}
        hooks.insert(0, LRScheduler(SCHEDULES[schedule["name"]](cfg["optimizer"]["lr"], cfg["epochs"], **opts)))
    return Learner(setup.model, setup.loss_fn, setup.optimizer, loader, hooks)


def _fit(run: RunFolder, setup: Setup, console: Console, config_yaml: str, start_epoch: int,
         progress: bool = True, callbacks=(), stop=None, callback_states: dict | None = None) -> None:
    """Train epochs start_epoch.. of a prepared setup into `run`, write its final files, and record how it ended.
    Whatever fails after the folder exists leaves the status `failed` (or `interrupted`), never `running`."""
    cfg = setup.cfg
    signals: list[int] = []
    nan_guard = TerminateOnNaN()
    stop_check = StopCheck(run, stop, cfg["epochs"])  # after RunWriter: the epoch it stops at is recorded
    view = None
    with reported_on_failure(run, console, drawn(cfg)), failures_recorded(run):
        try:
            learner = _learner(run, setup, console, config_yaml, start_epoch, progress,
                               [nan_guard, *callbacks, stop_check], callback_states)
            # Overflow on the way to a NaN loss is reported once, as divergence, not as numpy warnings.
            with stop_on_signals(learner) as signals, np.errstate(over="ignore", invalid="ignore"):
                learner.fit(cfg["epochs"], start_epoch=start_epoch)
            if not signals and not nan_guard.diverged and not stop_check.reason:
                stopper = next((cb for cb in learner.callbacks.callbacks if isinstance(cb, EarlyStopping)), None)
                if stopper is not None and stopper.stopped_epoch:
                    console.echo(f"early stop after epoch {stopper.stopped_epoch}: {stopper.monitor} did not improve "
                                 f"for {plural(stopper.patience, 'epoch')}; best epoch {stopper.best_epoch}")
                view = finish(run, setup, stopper.weights_epoch if stopper is not None else None)
        except KeyboardInterrupt:
            signals = signals or [signal.SIGINT]
    done = len(run.read_metrics())
    if signals:
        run.update_status(status="interrupted", ended=utc_now(), epoch=done, signal=signals[0])
        console.echo(f"interrupted after epoch {done} of {cfg['epochs']}; resume with: "
                     f"digitlab train --resume {run.path}")
    elif nan_guard.diverged:
        d = nan_guard.diverged
        run.update_status(status="diverged", ended=utc_now(), diverged=d, hint="lower optimizer.lr")
        console.echo(f"diverged: the loss became {d['loss']} at epoch {d['epoch']}, batch {d['batch']}; "
                     f"try a lower optimizer.lr (now {cfg['optimizer']['lr']})")
    elif stop_check.reason:
        run.update_status(status="pruned", ended=utc_now(), epoch=done, pruned=stop_check.reason)
        console.echo(f"pruned after epoch {done} of {cfg['epochs']}: {stop_check.reason}")
    else:
        run.update_status(status="complete", ended=utc_now(), epoch=done)  # a resume may have trained no epoch
        console.echo(f"test accuracy {run.read_json(layout.SUMMARY)['test_accuracy']:.4f}")
    if drawn(cfg):
        _report(run, console, view)


def finish(run: RunFolder, setup: Setup, weights_epoch: int | None = None) -> RunView:
    """model.npz, then every end-of-run output (summary.json last), from the weights training ended with: those
    of the last epoch, or of `weights_epoch` when early stopping restored its best. Returns the view they were
    made from (the report uses its figures)."""
    epoch = weights_epoch or len(run.read_metrics())
    save_model(run, setup.model, setup.cfg, epoch=epoch)
    view = RunView(run, cfg=setup.cfg, data=setup.data, model=setup.model, model_meta={"epoch": epoch},
                   loss_fn=setup.loss_fn)
    names = (set(OUTPUTS) - AT_START) | {n for n in AT_START if not (run / n).exists()}  # and those not drawn
    stamp = Stamp(run, redraw=True) if drawn(setup.cfg) else None  # the folder's files the figures are drawn from
    written = write_outputs(run, view, names=names, figures=stamp is not None)
    if stamp is not None:  # `digitlab report` shows these without drawing them again
        stamp.wrote([n for n in names if OUTPUTS[n].figure], written)
        stamp.save()
    return view


def drawn(cfg: dict) -> bool:
    """Whether a run draws its figures and report.html when it ends (`outputs: full`), or leaves them to
    `digitlab report` (`outputs: light`)."""
    return cfg.get("outputs", "full") != "light"


def _report(run: RunFolder, console: Console, view: RunView | None) -> None:
    """report.html, however the run ended: from the outputs just written (`view`, a complete run), or made from
    what the folder has. A report that cannot be written is a warning; the run's own files stand."""
    try:
        write_report(run, view, remake=view is None)
    except Exception as exc:  # noqa: BLE001 (the run is recorded already; the page is a view of it)
        with contextlib.suppress(Exception):  # a full disk may refuse log.txt the warning too
            console.warn(f"{run / layout.REPORT} was not written ({type(exc).__name__}: {exc})")


@contextlib.contextmanager
def reported_on_failure(run: RunFolder, console: Console, report: bool = True):
    """A run that fails (run.json already says so, see failures_recorded) still gets its report.html (when it
    draws one), unless a write failed: the disk is then no place for more files."""
    try:
        yield
    except StorageError:
        raise
    except Exception:
        if report:
            _report(run, console, None)
        raise
