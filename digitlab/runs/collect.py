"""Reading run folders for many-run views: find the run folders under some paths (a sweep folder or runs/
stands for its runs), read each one whatever its state, every file checked, so that a damaged folder is a row
marked `damaged` with the file and the reason, never a traceback."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from digitlab.errors import ConfigError, DamagedRun, RunError, UserError
from digitlab.run import layout

# A listing read from the catalog reads no folder: the modules that read one (numpy, YAML, the config schema) are
# imported when a folder is read (read_run, Run.metrics), not with this module.

SWEEP_FILES = {layout.SWEEP_FILE, layout.POINTS, layout.COMPARE_PNG, layout.REPORT, layout.REPLACED, layout.LOCKS}


class Run:
    """What many-run views know about one run folder. `damage` names the first file that is not what digitlab
    writes and why (the run's status is then `damaged`); what could be read is still shown. `metrics` (the rows
    of metrics.csv) are read when first asked for, when the run came from the catalog without them."""

    def __init__(self, path: Path, status: str, cfg: dict | None, summary: dict, metrics: list[dict] | None = None,
                 damage: str | None = None, values: dict | None = None, info: dict | None = None,
                 tags: dict | None = None):
        self.path, self.status, self.cfg, self.summary, self.damage = Path(path), status, cfg, summary, damage
        self._metrics = metrics
        self.values = values or {}  # the row: column -> value
        self.info = info or {}      # run.json
        self.tags = tags or {}      # tags.json: {"tags": {...}, "note": "..."}

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def metrics(self) -> list[dict]:
        if self._metrics is None:
            from digitlab.run.folder import RunFolder
            try:
                self._metrics = RunFolder(self.path).read_metrics()
            except UserError:  # changed since it was catalogued: the next listing reads it again
                self._metrics = []
        return self._metrics

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, {self.status!r})"


def is_sweep_folder(path: Path) -> bool:
    return (path / layout.SWEEP_FILE).is_file()


def is_run_folder(path: str | os.PathLike) -> bool:
    return _holds_file(path, layout.RUN_JSON) or _holds_file(path, layout.CONFIG)


def find_runs(folder: Path, depth: int = 3) -> list[Path]:
    """The run folders inside `folder` (a runs folder, a sweep folder, a folder of sweeps), by name, at most
    `depth` levels down; set-aside runs (replaced/) and hidden folders (the trash) are left out."""
    found = []
    try:
        with os.scandir(folder) as entries:
            children = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())
    except OSError:
        return []
    base = f"{folder}{os.sep}"
    for name in children:
        if is_run_folder(base + name):  # as text: find_runs asks it of every folder
            found.append(folder / name)
        elif depth > 1 and name != layout.REPLACED:
            found.extend(find_runs(folder / name, depth - 1))
    return found


def _holds_file(folder: str | os.PathLike, name: str) -> bool:
    """(Path(folder) / name).is_file(), without the Path objects."""
    try:
        return stat.S_ISREG(os.stat(f"{folder}{os.sep}{name}").st_mode)
    except (OSError, ValueError):
        return False


def collect(paths) -> tuple[list[Run], list[str]]:
    """The runs of `paths` (run folders, and any folder that holds runs, such as a sweep folder or runs/,
    expanded to them), each once, in the order given, and one warning per path that holds none. Every folder is
    read; runs.catalog.collect gives the same from its cache."""
    runs, warnings = [], []
    for _, candidates, warning in expand(paths):
        warnings.extend(warning)
        for candidate in candidates:
            try:
                runs.append(read_run(candidate))
            except UserError as exc:
                warnings.append(f"{exc}; skipped")
    return runs, warnings


def expand(paths) -> list[tuple[Path | None, list[Path], list[str]]]:
    """(root, run folders, warnings) for each of `paths`: a folder that holds runs is their root and stands for
    them; a run folder (or anything else, which read_run then refuses) stands for itself, with no root. A folder
    reached twice is given once."""
    out, seen = [], set()
    for path in map(Path, paths):
        if path.name in SWEEP_FILES and is_sweep_folder(path.parent):
            continue  # runs/<sweep>/* lists the sweep's own files next to its runs
        warnings, root = [], None
        if path.is_dir() and not is_run_folder(path):
            root, candidates = path, find_runs(path)
            if not candidates:
                kind = "sweep folder without runs yet" if is_sweep_folder(path) else "no run folders in it"
                warnings.append(f"{path}: {kind}, skipped")
        else:
            candidates = [path]
        fresh = []
        real = os.path.realpath(root if root is not None else path)
        for candidate in candidates:  # found under the root: its real path is the root's and the names below it
            key = real + str(candidate)[len(str(root)):] if root is not None else real
            if key not in seen:
                seen.add(key)
                fresh.append(candidate)
        out.append((root, fresh, warnings))
    return out


def read_run(path: Path) -> Run:
    """One run folder, whatever its status, each file checked: a damaged file makes the run `damaged` (with the
    file and the reason) instead of stopping the comparison. RunError when `path` is not a run folder."""
    from digitlab.run import tags as run_tags
    from digitlab.run.agreement import check_agreement
    from digitlab.run.folder import RunFolder
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


def _read_config(folder) -> dict:
    from digitlab.config import read_run_config
    return read_run_config(folder / layout.CONFIG)


def default_plot_path(paths) -> Path | None:
    """compare.png inside the sweep folder when the one folder compared is a sweep folder."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and paths[0].is_dir() and is_sweep_folder(paths[0]):
        return paths[0] / layout.COMPARE_PNG
    return None
