"""The house rules that keep the package easy to live in: every module imports alone, no import cycle, every
shipped config is valid, and the README's commands run."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from digitlab.config import load_config, read_yaml
from digitlab.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "digitlab"


def modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] != "__main__":
            names.append(".".join(parts))
    return names


def test_every_module_imports_alone_in_a_fresh_interpreter():
    def load(name):
        proc = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, cwd=ROOT)
        return name, proc.returncode, proc.stderr.strip().splitlines()[-1:]

    with ThreadPoolExecutor(4) as pool:
        failed = [(name, err) for name, code, err in pool.map(load, modules()) if code != 0]
    assert not failed, failed
    assert len(modules()) > 40


def test_no_import_cycles_among_modules():
    tool = ROOT.parent / "shared" / "tools" / "import_cycles.py"
    if not tool.exists():
        pytest.skip(f"{tool} is not beside this checkout")
    proc = subprocess.run([sys.executable, str(tool), str(PACKAGE)], capture_output=True, text=True)
    assert proc.returncode == 0 and "0 cycle(s)" in proc.stdout, proc.stdout


def test_modules_stay_small_or_say_why():
    """No module over ~400 lines without a reason written at its top."""
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text().splitlines()
        if len(lines) > 420:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert "lines" in doc, f"{path.relative_to(ROOT)}: {len(lines)} lines, and its docstring does not say why"


SHIPPED = sorted((ROOT / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_every_shipped_config_is_valid(path):
    raw = read_yaml(path)
    if isinstance(raw, dict) and "base" in raw:
        sweep = load_sweep(path)
        assert sweep.points and all(p.cfg["name"] == p.folder for p in sweep.points)
    else:
        cfg = load_config(path)
        assert cfg["name"] == raw.get("name", path.stem)


def test_all_config_folders_are_covered():
    folders = {p.parent.relative_to(ROOT) for p in SHIPPED}
    assert {Path("configs"), Path("configs/sweeps"), Path("configs/bench")} <= folders


def readme_commands() -> list[str]:
    """The digitlab commands in the indented code blocks of the README's tour, in order (comments dropped); the
    results section's commands train full configs for minutes to hours, so they stop the list."""
    commands = []
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("## Results"):
            break
        if line.startswith("    digitlab "):
            commands.append(line.strip().split("  #")[0].strip())
    return commands


def test_every_readme_command_runs(tmp_path):
    """The README's tour, run as written in a fresh folder, train commands on a small slice (300 images, two
    epochs) so that the README cannot drift from the code."""
    import os
    import shlex

    commands = readme_commands()
    assert len(commands) >= 6 and any(c.startswith("digitlab sweep") for c in commands)
    os.symlink(ROOT / "configs", tmp_path / "configs")
    os.symlink(ROOT / "examples", tmp_path / "examples")
    digitlab = Path(sys.executable).with_name("digitlab")
    for command in commands:
        if command.startswith("digitlab train"):
            command += " --set data.limit=300 --set epochs=2"
        shell = command.replace("digitlab", shlex.quote(str(digitlab)), 1)
        proc = subprocess.run(["bash", "-c", shell], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, (command, proc.stderr)
    assert (tmp_path / "tour.png").is_file() and (tmp_path / "runs" / "quick" / "points.csv").is_file()
    assert (tmp_path / "tour.html").is_file() and (tmp_path / "seen.png").is_file()
    tours = list((tmp_path / "runs").glob("tour-*"))
    assert len(tours) >= 2 and all((run / "report.html").is_file() for run in tours)
    assert (tmp_path / "runs" / "quick" / "report.html").is_file()
