"""The benchmark's report: a Markdown table of every task and engine, the machine it ran on, and the JSON file."""

from __future__ import annotations

import json
import math

from digitlab.options import plural


def fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def results_table(results: dict) -> str:
    """A Markdown table: one row per task and engine, then the targets with met / not met."""
    head = ["task", "engine", "s/epoch", "samples/s", "peak MB", "test acc", "digitlab/engine", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for name, task in results["tasks"].items():
        for engine, row in task["engines"].items():
            if "skipped" in row or "error" in row:
                cells = [name, engine, "-", "-", "-", "-", "-", row.get("skipped") or row.get("error")]
            else:
                acc = row.get("accuracy")
                cells = [name, engine, fmt(row["seconds_per_epoch"], 3),
                         fmt(row.get("samples_per_second"), 0),
                         "-" if engine == "matmul" else fmt(row.get("peak_mb"), 0),
                         "-" if acc is None else f"{100 * acc:.2f}%",
                         fmt(row.get("ratio"), 2) if engine != "digitlab" else "1",
                         row.get("note", "")]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    data = results.get("data", {})
    lines += ["", f"Warm MNIST load (ten digits, validation 0.1, fresh process): "
                  f"{fmt(data.get('load_seconds'), 3)} s (target < 0.5 s)."]
    targets = [(name, t) for name, task in results["tasks"].items() for t in task.get("targets", [])]
    if targets:
        lines += ["", "| task | target | digitlab/engine | met |", "| --- | --- | --- | --- |"]
        for name, t in targets:
            met = "-" if t["met"] is None else ("met" if t["met"] else "NOT met")
            lines.append(f"| {name} | {t['what']} | {fmt(t['ratio'], 2)} | {met} |")
    return "\n".join(lines)


def format_machine(results: dict) -> str:
    m = results["machine"]
    parts = [f"{m['nproc']} CPUs ({m['cpu']})", f"Python {m['python']}", f"numpy {m['numpy']} ({m['blas']})"]
    if "torch" in m:
        parts.append(f"torch {m['torch']} ({m.get('torch_backends', '')}, {m.get('torch_cpu_capability', '')})")
    if "scikit-learn" in m:
        parts.append(f"scikit-learn {m['scikit-learn']}")
    if m.get("openblas_thread_timeout"):
        parts.append(f"OPENBLAS_THREAD_TIMEOUT={m['openblas_thread_timeout']}")
    return (", ".join(parts) + f"; {plural(results['threads'], 'thread')}, {plural(results['epochs'], 'epoch')}; "
            f"load average {results['load_before']} before, {results.get('load_after')} after")


def write_json(results: dict, path) -> None:
    from digitlab.system.storage import atomic_write  # a bad path is a one-line StorageError, never a half-written file
    atomic_write(path, json.dumps(results, indent=2) + "\n")
