"""Commands on one run: train it (or resume it), score it again, train it again to reproduce it, ask it about
your own digits, and the learning-rate range test that comes before a run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from digitlab.cli import arguments, common
from digitlab.errors import StorageError
from digitlab.options import plural
from digitlab.run import layout
from digitlab.system import threads as system_threads


@click.command(name="train")
@click.argument("config", required=False, type=arguments.Path(dir_okay=False))
@common.overrides()
@common.runs_dir()
@click.option("--name", help="Run name (default: the config's name).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Random seed (overrides the config's).")
@click.option("--resume", "resume_dir", type=arguments.Path(file_okay=False),
              help="Continue a stopped run folder from its last checkpoint (no CONFIG then).")
@click.option("--epochs", type=click.IntRange(1, 100_000),
              help="With --resume: train a complete run on to this many epochs in all (docs/resume-and-failures.md)."
                   " With CONFIG: the config's epochs.")
@common.threads("Threads for matrix products and the optimizer (default: every core). On a machine busy with other "
                "work, 1 is often several times faster.")
@click.option("--quiet", is_flag=True, help="Print only the run folder's path.")
@click.option("--dry-run", is_flag=True, help="Print the model summary, the splits and the memory needed; train "
                                              "nothing and write nothing.")
def train_command(config, overrides, runs_dir, name, seed, resume_dir, epochs, threads, quiet, dry_run):
    """Train CONFIG (a YAML file) into a new folder under --runs-dir; the last line printed is its path.

    Exit code 0 when the run completes, 1 when it diverges or fails, 130/143 when Ctrl-C/SIGTERM stopped it
    (resume it with --resume), 2 for a bad config."""
    warnings: list[str] = []  # about --threads: printed once the resume is sure to train, after any refusal
    if resume_dir is not None:
        threads = resume_threads(resume_dir, threads, warnings)
    system_threads.use(threads)
    from digitlab.config import load_config
    from digitlab.run.lifecycle import resume, start

    if resume_dir is not None:
        if config is not None or overrides or name or seed is not None:
            raise click.UsageError("--resume takes the run folder only: its config.yaml is the config")
        if epochs is not None:
            from digitlab.run.extend import extend
            run = extend(resume_dir, epochs, quiet=quiet, warnings=warnings)
        else:
            run = resume(resume_dir, quiet=quiet, warnings=warnings)
    else:
        if config is None:
            raise click.UsageError("give a CONFIG file, or --resume RUN_DIR")
        extra = tuple(overrides) + ((("--name", f"name={name}"),) if name is not None else ()) + \
            ((("--seed", f"seed={seed}"),) if seed is not None else ()) + \
            ((("--epochs", f"epochs={epochs}"),) if epochs is not None else ())  # a mistake names the option
        cfg = load_config(config, extra)
        with arguments.blaming(config):
            if dry_run:
                from digitlab.run.setup import describe, prepare
                from digitlab.run.transfer import init_weights
                setup = prepare(cfg)
                if cfg.get("init_from"):
                    click.echo(init_weights(setup).line)
                click.echo(describe(setup))
                return
            run = start(cfg, runs_dir, quiet=quiet)
    click.echo(str(run.path))
    info = run.read_json(layout.RUN_JSON)
    if info["status"] == layout.Status.INTERRUPTED:
        sys.exit(128 + int(info.get("signal", 2)))
    if info["status"] != layout.Status.COMPLETE:
        sys.exit(1)


def resume_threads(run_dir: Path, threads: int | None, warnings: list[str] | None = None) -> int | None:
    """The BLAS threads a resumed or reproduced run goes on with: the ones it started with (they change the last bits
    of every sum), unless --threads says otherwise, which is allowed with a warning (printed, or added to
    `warnings` for the caller to print when it trains). The OpenBLAS kernels it started with (OPENBLAS_CORETYPE)
    are asked for again too. Read before numpy loads."""
    def warn(line: str) -> None:
        if warnings is None:
            click.echo(f"warning: {line}", err=True)
        else:
            warnings.append(line)

    try:
        info = json.loads((run_dir / layout.RUN_JSON).read_text(encoding="utf-8"))
        recorded, core = info.get("blas_threads"), info.get("blas_core")
    except (OSError, ValueError, AttributeError, RecursionError):
        return threads  # the command itself reports a missing or damaged run.json
    if isinstance(core, str) and core != (os.environ.get("OPENBLAS_CORETYPE") or "auto"):
        if core == "auto":
            os.environ.pop("OPENBLAS_CORETYPE", None)
        else:
            os.environ["OPENBLAS_CORETYPE"] = core
    recorded = str(recorded) if recorded is not None else None
    if recorded is None:
        return threads
    if threads is None:
        if recorded.isdigit():
            return int(recorded)
        if recorded == "default" and any(os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")):
            warn("the run started with the default BLAS threads and this shell sets "
                 "OPENBLAS_NUM_THREADS/OMP_NUM_THREADS; its results will differ from an uninterrupted run in "
                 "the last digits")
        return None
    if recorded != str(threads):
        started = f"{recorded} BLAS thread{'' if recorded == '1' else 's'}"
        warn(f"--threads {threads}: the run started with {started}; its results will differ from an "
             f"uninterrupted run in the last digits")
    return threads


@click.command(name="evaluate")
@click.argument("run_dirs", nargs=-1, required=True, type=arguments.Path(file_okay=False), metavar="RUN_DIR...")
@common.threads("BLAS threads for scoring the test set (default: every core).")
def evaluate_command(run_dirs, threads):
    """Reload each RUN_DIR's model.npz and recompute its test metrics (a line each, named when there are
    several)."""
    system_threads.use(threads)
    from digitlab.run.view import evaluate_run

    for run_dir in run_dirs:
        result = evaluate_run(run_dir)
        line = f"test_accuracy {result['test_accuracy']:.6f}  test_loss {result['test_loss']:.6f}"
        click.echo(f"{run_dir}: {line}" if len(run_dirs) > 1 else line)


def newest(run_dirs) -> Path:
    """The run folder started last of several (a glob such as runs/tour-* that matched more than one), said in a
    note; the only one when there is one."""
    if len(run_dirs) == 1:
        return run_dirs[0]

    def started(path: Path) -> str:
        try:
            return str(json.loads((path / layout.RUN_JSON).read_text(encoding="utf-8")).get("started") or "")
        except (OSError, ValueError, AttributeError, RecursionError):
            return ""
    chosen = max(run_dirs, key=lambda path: (started(path), str(path)))
    click.echo(f"note: {plural(len(run_dirs), 'run folder')} given; using the newest, {chosen}", err=True)
    return chosen


@click.command(name="reproduce")
@click.argument("run_dirs", nargs=-1, required=True, type=arguments.Path(file_okay=False), metavar="RUN_DIR")
@common.runs_dir("Folder that receives the new run folder.")
@common.threads("BLAS threads (default: those the run started with).")
def reproduce_command(run_dirs, runs_dir, threads):
    """Train RUN_DIR's config.yaml again into a new folder and say whether metrics.csv matches (apart from
    seconds), naming what differs in the environment when it does not. Exit code 0 when it matches, 1 when not.
    Given several run folders (a glob that matched more than one), the newest."""
    run_dir = newest(run_dirs)
    system_threads.use(resume_threads(run_dir, threads))  # the run's own BLAS threads and kernels
    from digitlab.run.reproduce import reproduce_run

    with arguments.blaming(run_dir / layout.CONFIG):  # init_from's run, gone since: named after the run's config
        result = reproduce_run(run_dir, runs_dir)
    click.echo(f"trained {result.original} again: {result.copy}")
    for line in result.lines():
        click.echo(line)
    sys.exit(0 if result.match else 1)


@click.command(name="predict")
@click.argument("run_dir", type=arguments.Path(file_okay=False))
@click.argument("images", nargs=-1, required=True, type=arguments.Path(), metavar="IMAGE...")
@common.output_format(("text", "json"), "text: a line per image with the top three digits; json: a list with every "
                                        "probability.")
@click.option("--explain", "explain_path", type=arguments.Path(dir_okay=False),
              help="Draw each image as read, as the model saw it, and its probabilities into this PNG.")
@common.threads("BLAS threads for the network (default: every core).")
def predict_command(run_dir, images, fmt, explain_path, threads):
    """Classify your own digit images (PNG or JPEG, any size, dark on light or light on dark) with RUN_DIR's
    trained model."""
    system_threads.use(threads)
    from digitlab.run import predict

    runs = [run_dir] + [p for p in images if (p / layout.RUN_JSON).is_file()]  # a glob that matched several runs
    run_dir, images = newest(runs), [p for p in images if p not in runs]
    if not images:
        raise click.UsageError("give an IMAGE after the run folder")
    predictions = predict.predict(run_dir, list(images))
    click.echo(predict.as_json(predictions) if fmt == "json" else predict.as_text(predictions))
    if explain_path is not None:
        try:
            predict.explain(predictions, explain_path)
        except StorageError as exc:
            raise exc.because("the drawing was not written (--explain)", exit_code=2) from None
        click.echo(f"explained: {explain_path}", err=True)


@click.command(name="lr-find")
@click.argument("config", type=arguments.Path(dir_okay=False))
@common.overrides("Override a config key, as for train.")
@common.runs_dir("Folder that receives the lr-find folder.")
@click.option("--start", default=1e-7, show_default=True, type=arguments.Positive(),
              help="The first learning rate.")
@click.option("--end", default=10.0, show_default=True, type=arguments.Positive(),
              help="The last learning rate.")
@click.option("--steps", default=200, show_default=True, type=click.IntRange(10, 100_000),
              help="Batches from --start to --end.")
@common.threads()
def lr_find_command(config, overrides, runs_dir, start, end, steps, threads):
    """The learning-rate range test: train CONFIG's initial weights while the learning rate grows exponentially,
    stop when the loss explodes, plot loss against lr and suggest one."""
    if end <= start:
        raise click.UsageError(f"--end ({end:g}) must be larger than --start ({start:g})")
    system_threads.use(threads)
    from digitlab.config import load_config
    from digitlab.run.lr_find import lr_find

    click.echo(lr_find(load_config(config, tuple(overrides)), runs_dir, start=start, end=end, steps=steps).told())
