"""Reading run folders for many-run views: find the run folders under some paths (a sweep folder or runs/
stands for its runs), read each one whatever its state, every file checked, so that a damaged folder is a row
marked `damaged` with the file and the reason, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from digitlab.errors import ConfigError, DamagedRun, RunError, UserError
from digitlab.run import layout
from digitlab.run import tags as run_tags
from digitlab.run.agreement import check_agreement
from digitlab.run.folder import RunFolder

SWEEP_FILES = {layout.SWEEP_FILE, layout.POINTS, layout.COMPARE_PNG, layout.REPORT, layout.REPLACED, layout.LOCKS}


@dataclass
class Run:
    """What compare knows about one run folder. `damage` names the first file that is not what digitlab writes
    and why (the run's status is then `damaged`); what could be read is still shown."""

    path: Path
    status: str
    cfg: dict | None
    summary: dict
    metrics: list[dict]
    damage: str | None = None
    values: dict = field(default_factory=dict)  # the row: column -> value
    info: dict = field(default_factory=dict)  # run.json
    tags: dict = field(default_factory=dict)  # tags.json: {"tags": {...}, "note": "..."}

    @property
    def name(self) -> str:
        return self.path.name

def is_sweep_folder(path: Path) -> bool:
    return (path / layout.SWEEP_FILE).is_file()

def is_run_folder(path: Path) -> bool:
    return (path / layout.RUN_JSON).is_file() or (path / layout.CONFIG).is_file()

def find_runs(folder: Path, depth: int = 3) -> list[Path]:
    """The run folders inside `folder` (a runs folder, a sweep folder, a folder of sweeps), by name, at most
    `depth` levels down; set-aside runs (replaced/) and hidden folders are left out."""
    found = []
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    for child in children:
        if is_run_folder(child):
            found.append(child)
        elif depth > 1 and child.name != layout.REPLACED:
            found.extend(find_runs(child, depth - 1))
    return found

def collect(paths) -> tuple[list[Run], list[str]]:
    """The runs of `paths` (run folders, and any folder that holds runs, such as a sweep folder or runs/,
    expanded to them), each once, in the order given, and one warning per path that holds none."""
    runs, warnings, seen = [], [], set()
    for path in map(Path, paths):
        if path.name in SWEEP_FILES and is_sweep_folder(path.parent):
            continue  # runs/<sweep>/* lists the sweep's own files next to its runs
        if path.is_dir() and not is_run_folder(path):
            candidates = find_runs(path)
            if not candidates:
                kind = "sweep folder without runs yet" if is_sweep_folder(path) else "no run folders in it"
                warnings.append(f"{path}: {kind}, skipped")
        else:
            candidates = [path]
        for candidate in candidates:
            key = candidate.resolve()
            if key in seen:
                continue
            try:
                run = read_run(candidate)
            except UserError as exc:
                warnings.append(f"{exc}; skipped")
                continue
            seen.add(key)
            runs.append(run)
    return runs, warnings

def read_run(path: Path) -> Run:
    """One run folder, whatever its status, each file checked: a damaged file makes the run `damaged` (with the
    file and the reason) instead of stopping the comparison. RunError when `path` is not a run folder."""
    folder = RunFolder.open(path)
    damage: list[str] = []

    def read(what, default):
        try:
            return what()
        except DamagedRun as exc:
            damage.append(str(exc))
        except (ConfigError, RunError) as exc:
            damage.append(str(exc))
        return default

    status = read(folder.status, "damaged")
    info = read(folder.info, {}) if not damage else {}
    cfg = read(lambda: _read_config(folder), None)
    summary = read(lambda: folder.read_summary(cfg["name"] if cfg else None), {}) \
        if (folder / layout.SUMMARY).is_file() else {}
    metrics = read(folder.read_metrics, [])
    if cfg and not damage:
        read(lambda: check_agreement(folder, cfg, info, metrics), None)
    tags = read(lambda: run_tags.read(folder), {})
    return Run(path, "damaged" if damage else status, cfg, summary, metrics, damage[0] if damage else None,
               info=info, tags=tags)

def _read_config(folder: RunFolder) -> dict:
    from digitlab.config import load_config
    return load_config(folder / layout.CONFIG)

def default_plot_path(paths) -> Path | None:
    """compare.png inside the sweep folder when the one folder compared is a sweep folder."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and paths[0].is_dir() and is_sweep_folder(paths[0]):
        return paths[0] / layout.COMPARE_PNG
    return None
