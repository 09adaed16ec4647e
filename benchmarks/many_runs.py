"""How `digitlab runs` holds up with many run folders: N copies of one real run folder (each a run digitlab
wrote: run.json, config.yaml, metrics.csv, summary.json, model.npz...), then the listing cold (no catalog), warm,
with --where, and after a folder is damaged, added and removed behind its back. Not a test: it prints wall times
(median of --repeat) and the CPU seconds of those processes, with the load average beside them.

    python benchmarks/many_runs.py --runs 10000            # trains configs/3v8-logreg.yaml for 1 epoch first
    python benchmarks/many_runs.py --runs 2000 --source runs/3v8-logreg-20261206-...
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


CPU: list[float] = []  # CPU seconds (user + system) of each digitlab process run, in order


def digitlab(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "digitlab", *args], capture_output=True, text=True, cwd=ROOT)
    took = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return took, proc


def timed(label: str, repeat: int, *args: str, before=None) -> dict:
    seconds, proc = [], None
    for _ in range(repeat):
        if before is not None:
            before()
        took, proc = digitlab(*args)
        if proc.returncode != 0:
            raise SystemExit(f"{label}: exit {proc.returncode}: {proc.stderr[-500:]}")
        seconds.append(took)
    rows = len(proc.stdout.strip().splitlines()) - 1
    cpu = statistics.median(CPU[-repeat:])
    result = {"what": label, "median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3),
              "max_s": round(max(seconds), 3), "cpu_s": round(cpu, 3), "rows": rows, "load": os.getloadavg()[0]}
    print(f"{label:<44} median {result['median_s']:7.3f} s  (min {result['min_s']:.3f}, max {result['max_s']:.3f}; "
          f"CPU {cpu:.3f} s; {rows} rows; load {result['load']:.2f})", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--source", type=Path, help="a run folder to copy (default: train one)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="digitlab-many-"))
    try:
        source = args.source
        if source is None:
            _, proc = digitlab("train", "configs/3v8-logreg.yaml", "--set", "epochs=1", "--runs-dir",
                               str(work / "source"), "--quiet", "--threads", "1")
            source = Path(proc.stdout.strip().splitlines()[-1])
        runs = work / "runs"
        began = time.perf_counter()
        for n in range(args.runs):
            shutil.copytree(source, runs / f"{source.name}-{n:05d}")
        print(f"{args.runs} copies of {source.name} in {time.perf_counter() - began:.1f} s", flush=True)
        catalog = runs / ".digitlab-catalog.sqlite"

        def forget():
            for suffix in ("", "-wal", "-shm"):
                Path(f"{catalog}{suffix}").unlink(missing_ok=True)

        results = [timed(f"runs, cold ({args.runs} folders, no catalog)", 1, "runs", str(runs), before=forget)]
        results.append(timed("runs, warm", args.repeat, "runs", str(runs)))
        results.append(timed("runs --where test_acc>0.9, warm", args.repeat, "runs", str(runs), "--where",
                             "test_acc>0.9"))
        first = runs / f"{source.name}-00000"
        (first / "summary.json").write_text("{")
        shutil.copytree(source, runs / f"{source.name}-new")
        shutil.rmtree(runs / f"{source.name}-00001")
        took, proc = digitlab("runs", str(runs), "--format", "json")
        listed = {row["name"]: row["status"] for row in json.loads(proc.stdout)}
        seen = (listed.get(first.name) == "damaged" and f"{source.name}-new" in listed
                and f"{source.name}-00001" not in listed)
        print(f"after a folder damaged, one added, one removed: {took:.3f} s; all three seen: {seen}", flush=True)
        results.append({"what": "runs after damage, addition, removal", "seconds": round(took, 3), "seen": seen,
                        "load": os.getloadavg()[0]})
        if args.json:
            args.json.write_text(json.dumps({"runs": args.runs, "cpus": os.cpu_count(), "results": results},
                                            indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
