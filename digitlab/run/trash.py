"""`digitlab rm`: a run folder goes to the trash beside it (<its folder>/.trash/<name>), never straight to
deletion, and comes back with `digitlab rm --restore`. Listings skip hidden folders, so a trashed run is out of
`runs`, `compare` and the pages until it is restored; `--empty` deletes what a trash holds, and only then is
anything gone."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from digitlab.errors import RunError, StorageError, os_reason
from digitlab.run import layout
from digitlab.run.folder import RunFolder


def trash_of(path: Path) -> Path:
    return path.parent / layout.TRASH


def remove(path) -> Path:
    """Move the run folder at `path` to its trash; the trash path. A run being trained now is refused."""
    run = RunFolder.open(path)
    if run.is_live():
        raise RunError(f"{run.path}: is being trained right now; stop it first (Ctrl-C, or kill its process)")
    target = trash_of(run.path) / run.path.name
    if target.exists():
        raise RunError(f"{run.path}: the trash already holds a folder named {run.path.name} ({target}); restore or "
                       f"empty it first")
    _move(run.path, target)
    return target


def restore(path) -> Path:
    """Bring back a trashed run: `path` is where the run was (runs/x) or where it is now (runs/.trash/x)."""
    path = Path(path)
    trashed = path if path.parent.name == layout.TRASH else trash_of(path) / path.name
    if not trashed.is_dir():
        raise RunError(f"{path}: not in the trash ({trashed} does not exist)")
    target = trashed.parent.parent / trashed.name
    if target.exists():
        raise RunError(f"{target}: already exists; move it away before restoring its namesake from the trash")
    _move(trashed, target)
    return target


def trashed(folders) -> list[Path]:
    """The run folders in the trash of each of `folders`, by name."""
    found = []
    for folder in map(Path, folders):
        trash = folder / layout.TRASH
        if trash.is_dir():
            found.extend(sorted(p for p in trash.iterdir() if p.is_dir()))
    return found


def empty(folders) -> list[Path]:
    """Delete every run folder in the trash of each of `folders`; what was deleted."""
    gone = trashed(folders)
    for path in gone:
        try:
            shutil.rmtree(path)
        except OSError as exc:
            raise StorageError(path, os_reason(exc)) from None
    return gone


def _move(source: Path, target: Path) -> None:
    """A rename within one file system: the folder is whole in one place or the other, never half-copied."""
    try:
        target.parent.mkdir(exist_ok=True)
        os.rename(source, target)
    except OSError as exc:
        raise StorageError(source, os_reason(exc)) from None
