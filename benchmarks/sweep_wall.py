"""How long a real sweep takes, end to end: not a test, a measurement.

    .venv/bin/python benchmarks/sweep_wall.py --points 60 1000 [--workers 2] [--epochs 3] [--json out.json]

For each size N it writes a random-search sweep file over configs/seeds/digits8x8-mlp.yaml (its epochs set to
--epochs; the learning rate, the hidden width and the weight decay drawn at random, seed 0) into a temporary
folder, runs `digitlab sweep FILE --workers W --runs-dir TMP` as a user does, and reads every line the sweep prints
as it comes, with the time it came. Printed per sweep:

- wall: the whole command, from start to exit; and its parts: until the first point is reported (imports, the
  sweep file, the first look at the folder, the workers starting), the points, and the end (points.csv,
  compare.png and report.html of the sweep);
- training: the seconds of every epoch of every point (metrics.csv's `seconds` column, the epochs' own timers);
- overhead per point: W x (the points' part of the wall) / N less a point's mean training seconds, i.e. what a
  point costs beyond its epochs, the sweep's own bookkeeping included (the workers wait for it when the machine's
  cores are busy);
- CPU seconds of the sweep and its workers (getrusage of the children), also a point, and the load average
  before and after (on a shared machine the CPU seconds say more than the wall time).

Then, on the finished sweep folder, `digitlab report` of one point (a light point: every figure is drawn then):
its time, the images its report.html shows and the figures now in the folder.

    .venv/bin/python benchmarks/sweep_wall.py --worker 40 [--repeat 3]

does what one worker process does instead, in this process: the same sweep's first N points one after the other
(digitlab.sweep.point.run_point, after one point to warm up), and prints per point its wall time, its epochs'
seconds and the difference: the fixed cost of a point in a worker. Run it with PYTHONPATH pointing at another
checkout of digitlab to measure that code (e.g. the commit before a change).

    .venv/bin/python benchmarks/sweep_wall.py --end FOLDER

times the end of a finished sweep in FOLDER (a --keep folder of an earlier run): the look at every point,
points.csv, compare.png and report.html, as the sweep writes them when it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "configs" / "seeds" / "digits8x8-mlp.yaml"


def sweep_file(folder: Path, points: int, epochs: int) -> Path:
    path = folder / f"wall{points}.yaml"
    path.write_text(f"name: wall{points}\nbase: {BASE}\nset: {{epochs: {epochs}}}\n"
                    f"random:\n  n: {points}\n  seed: 0\n  params:\n"
                    f"    optimizer.lr: {{loguniform: [0.001, 0.1]}}\n"
                    f"    model.0.linear: {{choice: [8, 16, 32, 64]}}\n"
                    f"    optimizer.weight_decay: {{loguniform: [0.00001, 0.001]}}\n"
                    f"select: val_accuracy\n")
    return path


def loads() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_sweep(path: Path, runs: Path, workers: int) -> dict:
    """Run the sweep as a user does; the time each printed line came, and the CPU its processes used. Run from the
    sweep file's folder, not this checkout: `python -m` puts its working folder first on the path, and PYTHONPATH
    must be able to choose the digitlab measured."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = loads()
    errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: a full pipe would stop the sweep
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "digitlab", "sweep", str(path), "--workers", str(workers),
                             "--runs-dir", str(runs)], cwd=path.parent, stdout=subprocess.PIPE, stderr=errors,
                            text=True, bufsize=1)
    first = last = None
    lines = 0
    for line in proc.stdout:
        now = time.perf_counter() - began
        if re.match(r"\[\d+/\d+\] ", line):
            first = now if first is None else first
            last = now
            lines += 1
    proc.wait()
    errors.seek(0)
    stderr = errors.read()
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"sweep exit {proc.returncode}: {stderr[-800:]}")
    return {"wall_s": wall, "first_point_s": first, "last_point_s": last, "points_reported": lines,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "load_before": load_before, "load_after": loads(), "stderr_lines": len(stderr.splitlines())}


def training_seconds(sweep_dir: Path) -> list[float]:
    """Each point's training: the sum of its epochs' seconds in metrics.csv."""
    return [training_seconds_of(metrics.parent) for metrics in sweep_dir.glob("*/metrics.csv")]


def point_report(sweep_dir: Path) -> dict:
    """`digitlab report` of one point of the finished sweep, and whether every figure its page shows is there."""
    point = sorted(p for p in sweep_dir.iterdir() if (p / "run.json").is_file())[0]
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "digitlab", "report", str(point)], cwd=sweep_dir, capture_output=True,
                          text=True)
    took = time.perf_counter() - began
    page = point / "report.html"
    images = page.read_text().count("<img") if page.is_file() else 0
    return {"report_s": round(took, 2), "exit": proc.returncode, "images_on_page": images,
            "pngs": sorted(p.name for p in point.glob("*.png"))}


def worker(points: int, epochs: int, repeat: int) -> None:
    """`points` points of the sweep trained in this process as a pool worker trains them."""
    import statistics

    from digitlab.sweep import load_sweep
    from digitlab.sweep.point import run_point
    from digitlab.sweep.schedule import Job
    work = Path(tempfile.mkdtemp(prefix="digitlab-worker-"))
    try:
        sweep = load_sweep(sweep_file(work, points + 1, epochs))
        for attempt in range(repeat):
            folder = sweep.folder(work / f"runs{attempt}")
            folder.mkdir(parents=True)
            run_point(str(folder), Job(sweep.points[0], epochs), False)  # imports, caches: a worker's first point
            walls = []
            for point in sweep.points[1:]:
                began = time.perf_counter()
                run_point(str(folder), Job(point, epochs), False)
                walls.append(time.perf_counter() - began)
            trained = [training_seconds_of(folder / p.folder) for p in sweep.points[1:]]
            fixed = [w - t for w, t in zip(walls, trained)]
            print(f"worker: {points} points: wall {statistics.median(walls):.3f} s a point (median), epochs "
                  f"{statistics.median(trained):.3f} s, fixed cost {statistics.median(fixed):.3f} s (median; mean "
                  f"{statistics.mean(fixed):.3f}); load {loads()}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def training_seconds_of(point: Path) -> float:
    rows = (point / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("seconds")
    return sum(float(r.split(",")[column]) for r in rows[1:])


def end(keep: Path) -> None:
    """The end of each finished sweep under `keep`, part by part."""
    from digitlab.runs.page import write_sweep_report
    from digitlab.sweep import load_sweep
    from digitlab.sweep.files import write_compare_png, write_points_csv
    from digitlab.sweep.runner import _final_outcomes
    from digitlab.sweep.schedule import Schedule
    for path in sorted(keep.glob("wall*.yaml")):
        sweep = load_sweep(path)
        folder = sweep.folder(keep / f"runs{path.stem[4:]}")
        if not folder.is_dir():
            continue
        times = [time.perf_counter()]
        outcomes = _final_outcomes(sweep, folder, Schedule(sweep, folder).look(settle=False))
        times.append(time.perf_counter())
        write_points_csv(sweep, folder, outcomes)
        times.append(time.perf_counter())
        png = write_compare_png(sweep, folder, outcomes)
        times.append(time.perf_counter())
        try:
            write_sweep_report(folder, sweep.select, curves=png.read_bytes())
        except TypeError:  # a digitlab that draws the page's curves itself
            write_sweep_report(folder, sweep.select)
        times.append(time.perf_counter())
        parts = dict(zip(["look", "points.csv", "compare.png", "report.html"],
                         (round(b - a, 2) for a, b in zip(times, times[1:]))))
        print(f"end of {len(sweep.points)} points: {round(times[-1] - times[0], 2)} s {parts}; load {loads()}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, nargs="+", default=[60, 1000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="run the sweeps under this folder and keep them")
    parser.add_argument("--json", type=Path, help="append the figures to this JSON file (a list)")
    parser.add_argument("--worker", type=int, metavar="N", help="train N points in this process instead (see above)")
    parser.add_argument("--repeat", type=int, default=1, help="with --worker: how many times")
    parser.add_argument("--end", type=Path, metavar="FOLDER", help="time the end of the sweeps kept in FOLDER")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.epochs, args.repeat)
    if args.end:
        return end(args.end)
    work = args.keep or Path(tempfile.mkdtemp(prefix="digitlab-sweep-wall-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for n in args.points:
            path = sweep_file(work, n, args.epochs)
            runs = work / f"runs{n}"
            shutil.rmtree(runs, ignore_errors=True)
            timed = run_sweep(path, runs, args.workers)
            sweep_dir = runs / f"wall{n}"
            trained = training_seconds(sweep_dir)
            middle = timed["last_point_s"] - timed["first_point_s"]
            per_point = args.workers * (timed["last_point_s"] or 0) / n
            training = sum(trained) / len(trained)
            result = {"points": n, "workers": args.workers, "epochs": args.epochs, **timed,
                      "points_s": middle, "end_s": timed["wall_s"] - timed["last_point_s"],
                      "train_mean_s": training, "per_point_s": per_point, "overhead_per_point_s": per_point - training,
                      "report": point_report(sweep_dir), "commit": _commit(),
                      "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            results.append(result)
            print(f"{n} points, --workers {args.workers}, {args.epochs} epochs: wall {timed['wall_s']:.1f} s "
                  f"(first point at {timed['first_point_s']:.1f} s, last at {timed['last_point_s']:.1f} s, end "
                  f"{result['end_s']:.1f} s); training {training:.3f} s a point, {args.workers} x wall until the "
                  f"last point / N = {per_point:.3f} s, overhead {result['overhead_per_point_s']:.3f} s a point; "
                  f"CPU {timed['cpu_s']:.0f} s ({timed['cpu_s'] / n:.3f} s a point); "
                  f"load {timed['load_before']} -> {timed['load_after']}; "
                  f"{timed['stderr_lines']} stderr lines; one point's report {result['report']}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        old = json.loads(args.json.read_text()) if args.json.is_file() else []
        args.json.write_text(json.dumps(old + results, indent=1) + "\n")


def _commit() -> str:
    """The digitlab measured: this checkout's commit, or PYTHONPATH's when it points elsewhere."""
    if os.environ.get("PYTHONPATH"):
        return f"PYTHONPATH={os.environ['PYTHONPATH']}"
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return out.stdout.strip() + ("+changes" if dirty else "")


if __name__ == "__main__":
    main()
