"""The dashboard's picture of the run folders: every run's row (the catalog's columns), kept current by one background
thread for every open page, and a version number that grows whenever a row changes, so that a page asking "anything
since version V?" gets a tiny answer when nothing did, however many pages ask.

A full look reads every folder through the run catalog (runs/catalog.py), which re-reads only the folders that
changed; it runs at the start and then every FULL_EVERY seconds (longer when a look is slow). Between full looks a
tick, a few times a second, looks only at what moves: the files of the runs that are running (a new epoch, an end,
a death), the folders that hold runs (a run folder made or removed), and new folders that are not run folders yet (a
training writes its run.json a moment after it makes its folder).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from digitlab.errors import UserError
from digitlab.run import layout
from digitlab.runs.collect import is_run_folder, is_sweep_folder

TICK = 0.3          # seconds between two looks at what moves
FULL_EVERY = 15.0   # seconds between full looks, at least; twenty times a look's cost when that is more (between
                    # them the ticks see every new, removed and running run: a full look finds edits of the others)
LIVE_EVERY = 2.0    # seconds between two checks that a running run's process still lives
FRESH = 120.0       # a folder younger than this that is no run folder yet is watched until it becomes one
WATCHED = (layout.RUN_JSON, layout.METRICS, layout.SUMMARY, layout.TAGS)
RUNNING = layout.Status.RUNNING.value


@dataclass
class Entry:
    """One run: its id (the root's index and the folder's path under the root, 'N/name'), folder and row."""

    id: str
    path: Path
    values: dict
    version: int
    stamp: tuple = ()
    checked: float = field(default=0.0)


@dataclass(frozen=True)
class Source:
    """A folder given on the command line: a folder that holds runs (`root` is it), or one run folder (`root` is
    its parent and `only` the run)."""

    index: int
    root: Path
    only: Path | None = None


class Board:
    """The runs under `paths` (run folders, or folders that hold runs and sweeps), current to a tick."""

    def __init__(self, paths, warn=None):
        self.sources = []
        for index, path in enumerate(Path(p) for p in paths):
            if is_run_folder(path):
                self.sources.append(Source(index, path.parent, path))
            else:
                self.sources.append(Source(index, path))
        self.warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr, flush=True))
        self.lock = threading.RLock()
        self.runs: dict[str, Entry] = {}
        self.sweeps: dict[str, Path] = {}
        self.version = 0  # 0 until the first look has ended
        self.containers: dict[Path, int | None] = {}
        self.pending: dict[Path, float] = {}
        self.full_cost = 0.0
        self._quit = threading.Event()
        self._said: set[str] = set()

    # -- ids and folders --------------------------------------------------------------------------------------------
    def ident(self, path: Path) -> str | None:
        """The id of a folder found under a source ('0/quick/lr=0.1-1a2b3c4d'), None outside every source."""
        found = self._locate(path)
        return found[1] if found is not None else None

    def _locate(self, path: Path) -> tuple[Source, str] | None:
        """(the source a folder is found under, its id), None outside every source."""
        text = str(path)
        for source in self.sources:
            if source.only is not None:
                if text == str(source.only):
                    return source, f"{source.index}/{source.only.name}"
            elif text == str(source.root):  # a sweep folder given itself
                return source, str(source.index)
            elif text.startswith(str(source.root) + os.sep):
                return source, f"{source.index}/" + text[len(str(source.root)) + 1:].replace(os.sep, "/")
        return None

    def folder(self, ident: str) -> Path | None:
        """The run or sweep folder of an id the board knows; None for any other text. (A look under way is not
        waited for: one dict lookup is one step for the interpreter.)"""
        entry = self.runs.get(ident)
        return entry.path if entry is not None else self.sweeps.get(ident)

    def snapshot(self) -> tuple[int, list[Entry]]:
        """The version and the runs now, without waiting for a look under way (list() of a dict's values is one
        step for the interpreter; the version is read first, so a change under way shows at the next ask)."""
        version = self.version
        return version, list(self.runs.values())

    # -- the background threads -------------------------------------------------------------------------------------
    def start(self) -> None:
        """The catalogs' rows at once; then, until stop(), the ticks in a thread of their own (so that a full look
        of thousands of folders never holds up a new epoch) and the full looks in this one."""
        try:
            self.preview()
        except Exception as exc:  # a catalog being rebuilt: the full look reads the folders
            self._say(f"the dashboard could not read the run catalog ({type(exc).__name__}: {exc})")
        ticks = threading.Thread(target=self._ticking, name="digitlab-dashboard-ticks", daemon=True)
        if self.runs:  # else the ticks wait for the first look: they would read its folders one by one
            ticks.start()
        while not self._quit.is_set():
            wait = 2.0  # again soon if this look fails
            try:
                self.full()
                wait = max(FULL_EVERY, 20 * self.full_cost)
            except Exception as exc:  # a folder changing under the look: the next look sees it settled
                self._say(f"the dashboard could not look at the run folders ({type(exc).__name__}: {exc})")
            if not ticks.is_alive() and self.version:
                ticks.start()
            self._quit.wait(wait)

    def stop(self) -> None:
        self._quit.set()

    def _ticking(self) -> None:
        while not self._quit.wait(TICK):
            try:
                self.tick()
            except Exception as exc:
                self._say(f"the dashboard could not look at the run folders ({type(exc).__name__}: {exc})")

    def _say(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self.warn(message)

    # -- looking -----------------------------------------------------------------------------------------------------
    def full(self) -> None:
        """Every folder, through the catalog: rows added, changed and removed, containers and sweeps found again.
        What the ticks read while the look went on is newer than the look, and stays."""
        from digitlab.runs.catalog import collect
        began, before = time.monotonic(), self.version
        containers = {s.root: _mtime(s.root) for s in self.sources if s.only is None}
        runs, warnings = collect([s.only or s.root for s in self.sources])
        for warning in warnings:
            if "no run folders in it" not in warning and "without runs yet" not in warning:
                self._say(warning)
        found = {}
        for run in runs:
            located = self._locate(run.path)
            if located is not None:
                source, ident = located
                found[ident] = run
                if run.path.parent not in containers and source.only is None:
                    containers[run.path.parent] = _mtime(run.path.parent)
        with self.lock:  # a new dict, swapped in whole: a page never sees half a look
            version, fresh = self.version, {}
            for ident, run in found.items():
                current = self.runs.get(ident)
                if current is not None and current.version > before:
                    fresh[ident] = current
                    continue
                entry, changed = self._entry(ident, run)
                fresh[ident] = entry
                version += changed
            for ident, current in self.runs.items():
                if ident not in fresh and current.version > before and current.path.is_dir():
                    fresh[ident] = current  # made while the look went on
            version += len(set(self.runs) - set(fresh))
            self.runs, self.version = fresh, version
            for container, seen in self.containers.items():
                containers.setdefault(container, seen)
            self.containers = containers
            self.sweeps = {self.ident(c): c for c in containers if is_sweep_folder(c) and self.ident(c)}
            for container in list(containers):
                self._list(container, only_young=True)
            self.version += self.version == 0  # the first look has ended, even over no runs
        self.full_cost = time.monotonic() - began

    def tick(self) -> None:
        """What moves: containers whose listing changed, new folders, running runs."""
        with self.lock:
            for container, seen in list(self.containers.items()):
                now = _mtime(container)
                if now != seen:
                    self.containers[container] = now
                    self._list(container)
            for path in list(self.pending):
                if is_run_folder(path) and self._reread(path):  # else not whole yet (config.yaml before run.json)
                    del self.pending[path]
                elif is_sweep_folder(path):
                    del self.pending[path]
                    self.containers[path] = None  # listed at the next tick
                    self.sweeps[self.ident(path)] = path
                elif time.time() - self.pending[path] > FRESH:
                    del self.pending[path]
            now = time.monotonic()
            for entry in [e for e in self.runs.values() if e.values.get("status") == RUNNING]:
                stamp = _stamp(entry.path)
                if stamp != entry.stamp:
                    self._reread(entry.path)
                elif now - entry.checked > LIVE_EVERY:
                    entry.checked = now
                    from digitlab.run.folder import RunFolder
                    if RunFolder(entry.path).is_live() is not True:
                        self._reread(entry.path)

    def _list(self, container: Path, only_young: bool = False) -> None:
        """A container's children: new folders watched until they are runs or sweeps, vanished runs dropped."""
        try:
            with os.scandir(container) as listing:
                children = {container / e.name: e for e in listing
                            if not e.name.startswith(".") and e.name != layout.REPLACED and e.is_dir()}
        except OSError:
            children = {}
        for ident, entry in list(self.runs.items()):
            if entry.path.parent == container and entry.path not in children:
                del self.runs[ident]
                self.version += 1
        known = {e.path for e in self.runs.values()} | set(self.containers)
        for path, dirent in children.items():
            if path in known or path in self.pending or self.ident(path) is None:
                continue
            if is_sweep_folder(path):  # a sweep that has no run folder yet
                self.containers[path] = None
                self.sweeps[self.ident(path)] = path
                continue
            try:
                born = dirent.stat().st_mtime
            except OSError:
                continue
            if not only_young or time.time() - born < FRESH:
                self.pending[path] = born

    def _reread(self, path: Path) -> bool:
        """Read one run folder again; False when it is no run folder (any more, or not yet)."""
        from digitlab.runs.collect import read_run
        from digitlab.runs.columns import describe
        ident = self.ident(path)
        if ident is None:
            return False
        try:
            run = read_run(path)
        except UserError:  # removed, or not a run folder any more
            if self.runs.pop(ident, None) is not None:
                self.version += 1
            return False
        describe([run])
        self._put(ident, run)
        return True

    def _put(self, ident: str, run) -> None:
        entry, changed = self._entry(ident, run)
        if changed:
            self.version += 1
            entry.version = self.version
            self.runs[ident] = entry

    def _entry(self, ident: str, run) -> tuple[Entry, bool]:
        """The run's entry: the one the board has when its row is the same (then False), else a new one."""
        values = {k: v for k, v in run.values.items() if k != "path"}
        old = self.runs.get(ident)
        running = values.get("status") == RUNNING
        if old is not None and old.values == values:
            if running:
                old.stamp = _stamp(run.path)
            return old, False
        return Entry(ident, run.path, values, self.version + 1, _stamp(run.path) if running else ()), True

    def preview(self) -> None:
        """The rows the catalogs hold, as last written, shown while the first full look checks every folder: ten
        thousand runs appear in a fraction of a second, and the few that changed since are corrected a moment later."""
        from digitlab.runs.catalog import cached_rows
        fresh = {}
        for source in self.sources:
            if source.only is None:
                for path, values in cached_rows(source.root):
                    ident = self.ident(path)
                    if ident is not None and path != source.root:
                        values.pop("path", None)
                        fresh[ident] = Entry(ident, path, values, 1)
        with self.lock:
            if fresh and self.version == 0:
                self.runs = fresh
                self.version = 1
                for entry in fresh.values():  # the ticks watch these folders from now on
                    self.containers.setdefault(entry.path.parent, _mtime(entry.path.parent))
            for source in self.sources:
                if source.only is None:
                    self.containers.setdefault(source.root, _mtime(source.root))


def _mtime(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _stamp(folder: Path) -> tuple:
    """Size and modification time of the files that change while a run trains."""
    out = []
    for name in WATCHED:
        try:
            st = os.stat(folder / name)
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)
