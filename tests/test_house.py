"""The house rules that keep the package easy to live in: every module imports alone, no import cycle, every
shipped config is valid, and the README's commands run."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
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


# One interpreter loads the libraries every module shares, then forks a child per module: each child holds no module
# of the package when it imports its one, which is what "imports alone" asks, without paying numpy's and
# matplotlib's import a hundred times over.
IMPORT_EACH = """
import json, os, sys, traceback
import click, numpy, yaml, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot
assert not [m for m in sys.modules if m.split(".")[0] == "digitlab"]
failed = []
for name in json.loads(sys.argv[1]):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            __import__(name)
            code = 0
        except BaseException:
            os.write(write, traceback.format_exc().strip().splitlines()[-1].encode())
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        error = pipe.read()
    if os.waitpid(pid, 0)[1] != 0:
        failed.append([name, error])
print(json.dumps(failed))
"""


def test_every_module_imports_alone_in_a_fresh_interpreter():
    """A package's __init__ runs alone, first, on the way to any module inside it: so an interpreter that holds no
    module of the package, importing one leaf module, imports every module on its way alone."""
    import json

    names = modules()
    leaves = [name for name in names if not any(other.startswith(name + ".") for other in names)]
    proc = subprocess.run([sys.executable, "-c", IMPORT_EACH, json.dumps(leaves)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "MPLBACKEND": "Agg"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == []
    assert len(leaves) > 40


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


def test_shipped_notebook_configs_name_the_notebook_number():
    configs = sorted((ROOT / "configs" / "seeds").glob("*.yaml"))
    assert {p.stem for p in configs} >= {"kudzu-3v8-mse", "kudzu-3v8-logreg", "scratch-mlp", "keras-logreg",
                                         "keras-mlp", "keras-cnn", "digits8x8-average", "digits8x8-mlp"}
    for path in configs:
        assert "notebook" in path.read_text().splitlines()[0].lower(), path
        load_config(path)


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


@pytest.mark.slow  # the README's tour: trainings, a sweep and reports, each in a fresh process
def test_every_readme_command_runs_in_a_fresh_clone_and_leaves_it_clean(tmp_path):
    """The README's tour, run as written in a fresh clone of the repository (its tracked files, committed),
    train commands on a small slice (300 images, two epochs) so that the README cannot drift from the code; what
    the tour writes goes where git ignores it, so the clone's `git status` stays clean (a run started from a
    dirty tree would record a git.diff, and reproduce would name the difference)."""
    import shlex
    import shutil

    commands = readme_commands()
    assert len(commands) >= 6 and any(c.startswith("digitlab sweep") for c in commands)
    clone = tmp_path / "clone"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True).stdout
    if not tracked:
        pytest.skip("not a git checkout")
    for name in tracked.split("\0"):
        if name and (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    git = ["git", "-c", "user.name=digitlab tests", "-c", "user.email=tests@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "clone"]):
        subprocess.run(git + args, cwd=clone, check=True, capture_output=True)
    digitlab = Path(sys.executable).with_name("digitlab")
    for command in commands:
        if command.startswith("digitlab train"):
            command += " --set data.limit=300 --set epochs=2"
        shell = command.replace("digitlab", shlex.quote(str(digitlab)), 1)
        proc = subprocess.run(["bash", "-c", shell], cwd=clone, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, (command, proc.stderr)
    runs = clone / "runs"
    assert (runs / "tour.png").is_file() and (runs / "tour.html").is_file() and (runs / "seen.png").is_file()
    assert (runs / "quick" / "points.csv").is_file() and (runs / "quick" / "report.html").is_file()
    tours = list(runs.glob("tour-*")) + list(runs.glob("lr-tour-*"))
    assert len(tours) >= 2 and all((run / "report.html").is_file() for run in tours)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout
    assert status == "", status


def test_at_most_six_modules_sit_directly_in_the_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 6, top


def _strings_outside_docstrings(tree: ast.AST):
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    parts = {id(value) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for value in node.values}
    for node in ast.walk(tree):  # an f-string's literal parts are text around a value, not a name on their own
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings | parts:
            yield node


def test_the_folders_file_names_are_spelled_in_one_module():
    from digitlab.run import layout
    names = {value for key, value in vars(layout).items() if key.isupper() and isinstance(value, str)}
    assert {"run.json", "config.yaml", "metrics.csv", "model.npz", "report.html"} <= names
    spelled = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "layout.py" and path.parent.name == "run":
            continue
        for node in _strings_outside_docstrings(ast.parse(path.read_text())):
            if node.value in names:
                spelled.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not spelled, spelled


def test_the_engine_page_maps_every_module():
    text = (ROOT / "docs" / "engine.md").read_text()
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        folders = path.relative_to(PACKAGE).parts[:-1]
        if path.name not in text or any(f"{folder}/" not in text for folder in folders):
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"docs/engine.md does not name {missing}"


def test_listing_and_comparing_runs_load_no_matplotlib(tiny_run):
    code = ("import sys\nfrom digitlab.cli import main\n"
            "for args in (['runs', sys.argv[1]], ['compare', sys.argv[1], sys.argv[1]]):\n"
            "    try:\n        main(args, standalone_mode=False)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    proc = subprocess.run([sys.executable, "-c", code, str(tiny_run)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout
