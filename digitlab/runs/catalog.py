"""The run catalog: every run folder's row kept in an SQLite file beside the runs
(`<folder>/.digitlab-catalog.sqlite`, WAL), so that listing, filtering and comparing thousands of runs reads an
index instead of every folder.

It is a cache, never the truth. A row is keyed by the folder's path under the catalog's folder and stamped with
the size, modification and change times and inode of each file it was read from; a folder whose stamp differs
(changed, damaged, edited by hand), a new folder, and a run whose run.json says `running` (whether its process
still lives is in no file) are read again, and a folder that is gone loses its row. A stamp taken within a second
of a file's last change is not trusted next time (git's "racy clean" rule: a write in the same clock tick keeps
the times). A damaged or foreign catalog file is rebuilt with one warning; writers (sweeps, trainings, listings at
once) meet in SQLite's locking, and one that cannot get the lock in time just does not cache. A runs folder that
cannot be written keeps its catalog in the user's cache folder instead; where neither can be written, every
folder is read, as without a catalog.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import heapq
import json
import os
import sqlite3
import time
from pathlib import Path
from stat import S_ISREG

from digitlab.errors import UserError
from digitlab.run import layout
from digitlab.runs.collect import Run, expand, is_sweep_folder, read_run
from digitlab.runs.columns import CONFIG_COLUMNS, METRIC_COLUMNS, describe

APPLICATION_ID = 0x64676C62  # "dglb": marks the file as a digitlab catalog (PRAGMA application_id)
STAMPED = (layout.RUN_JSON, layout.CONFIG, layout.METRICS, layout.SUMMARY, layout.MODEL, layout.CHECKPOINT,
           layout.TAGS)
RUNS_TABLE = ("CREATE TABLE runs (path TEXT PRIMARY KEY, stamp TEXT NOT NULL, status TEXT NOT NULL, row TEXT NOT NULL, "
              "record TEXT NOT NULL, started TEXT)")
FORMAT = "4:" + ",".join(CONFIG_COLUMNS + METRIC_COLUMNS) + ";" + RUNS_TABLE  # rows of another kind: read again
RACY_NS = 1_000_000_000  # a file changed this close to the reading may change again unseen within the tick
BUSY_SECONDS = 5.0
RUNNING = layout.Status.RUNNING.value


def collect(paths, newest: int | None = None) -> tuple[list[Run], list[str]]:
    """runs.collect.collect's runs and warnings, each run's row (`values`) filled, read through the catalog of
    each folder given (a run folder's is its parent's): only folders changed since they were catalogued are
    read. A catalog file that had to be rebuilt is one more warning. With `newest`, only the `newest` runs
    latest started (run.json's `started`, then the folder's path, as `digitlab runs` orders them), newest first:
    every folder is still looked at, but only those runs' rows are decoded."""
    runs, warnings = [], []
    with few_collections():
        for root, candidates, said in expand(paths):
            warnings.extend(said)
            base = root if root is not None else (candidates[0].parent if candidates else None)
            with Catalog.open(home(base) if base is not None else None, warnings.append) as catalog:
                found = catalog.runs(candidates, warnings, within=base if root is not None else None,
                                     newest=newest)
            runs.extend(found)
    if newest is not None:
        runs = heapq.nlargest(newest, runs, key=lambda run: (_started(run.values.get("started")), run.values["path"]))
    return runs, warnings


def cached_rows(folder: Path) -> list[tuple[Path, dict]]:
    """(run folder, row) for every run the catalog of `folder` lists, as last written, without looking at any run
    folder: a first picture a live view can show while collect() checks the folders. Rows of folders outside
    `folder` are left out; [] where there is no catalog of this version, or it cannot be read."""
    base = home(folder)
    for location in _locations(base):
        if not location.is_file():
            continue
        try:
            with contextlib.closing(sqlite3.connect(location, timeout=BUSY_SECONDS)) as db:
                version = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
                rows = db.execute("SELECT path, row FROM runs").fetchall() if version == (FORMAT,) else []
        except sqlite3.Error:
            continue
        out, inside = [], "" if base == folder else f"{folder.name}/"
        for key, row in rows:
            if key != "." and key.startswith(inside):
                path = base.joinpath(*key.split("/"))
                values = _object(row)
                if values is not None:  # a damaged row waits for the full look, which reads its folder again
                    values.update(path=str(path), name=path.name)
                    out.append((path, values))
        return out
    return []


@contextlib.contextmanager
def few_collections(every: int = 100_000):
    """The cyclic garbage collector run every `every` new objects instead of every 700: the rows of thousands of
    runs are dicts, lists and strings in no cycle, and its passes over them (a tenth of a warm listing's CPU at
    10,000 runs) find nothing. Garbage in cycles is still collected, later."""
    before = gc.get_threshold()
    gc.set_threshold(max(every, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def home(folder: Path) -> Path:
    """The folder whose catalog lists `folder`'s runs: a sweep's points are in the catalog of the folder that holds
    the sweep (runs/, which `digitlab runs` reads), so a sweep folder holds only the sweep's own files."""
    return folder.parent if is_sweep_folder(folder) else folder


class Catalog:
    """One folder's catalog; `Catalog.open(folder)` gives one that may be a no-op (nothing writable)."""

    def __init__(self, folder: Path, connection: sqlite3.Connection | None):
        self.folder, self.db = folder, connection

    @classmethod
    @contextlib.contextmanager
    def open(cls, folder: Path | None, warn=None):
        connection = None
        if folder is not None:
            for path in _locations(folder):
                connection = _connect(path, warn)
                if connection is not None:
                    break
        try:
            yield cls(folder, connection)
        finally:
            if connection is not None:
                connection.close()

    def runs(self, candidates: list[Path], warnings: list[str], within: Path | None = None,
             newest: int | None = None) -> list[Run]:
        """The Run of each candidate folder, from its row where its stamp still holds, else read (and its row
        written). With `within` (the candidates are every run under that folder), rows of folders under it that
        are gone are dropped. With `newest`, only the `newest` latest started, newest first (see collect)."""
        cached = self._rows() if self.db is not None else {}
        entries, fresh, keys = [], [], []  # entries: ((started, path text), path, Run or its row, key, stamp)
        now = time.time_ns()
        for path in candidates:
            text = str(path)
            key = self._key(path)
            keys.append(key)
            stamp, changed = _stamp(text)
            trusted = None if stamp is None else stamp if now - changed > RACY_NS else "racy"
            row = cached.get(key)
            if row is not None and stamp is not None and row[0] == stamp and row[1] != RUNNING:
                entries.append(((row[4] or "", text), path, row, key, trusted))  # its row decoded below
                continue
            run = self._read(path, key, trusted, fresh, warnings)
            if run is not None:
                entries.append(((_started(run.values.get("started")), text), path, run, key, trusted))
        if newest is not None:
            entries = heapq.nlargest(newest, entries, key=lambda entry: entry[0])
        decoded = iter(_decode([entry[2][2] for entry in entries if not isinstance(entry[2], Run)]))
        runs = []
        for (_, text), path, item, key, trusted in entries:
            if not isinstance(item, Run):
                values = next(decoded)
                item = CataloguedRun(path, text, item[1], values, item[3]) if values is not None else \
                    self._read(path, key, trusted, fresh, warnings)  # a row that is no JSON object: read again
            if item is not None:
                runs.append(item)
        if self.db is not None:
            prefix = self._key(within) if within is not None else None
            inside = (lambda k: True) if prefix == "." else (lambda k: k.startswith(f"{prefix}/"))
            gone = set(cached).difference(keys)
            gone = [k for k in gone if inside(k)] if prefix is not None else []
            self._write(fresh, gone)
        return runs

    @staticmethod
    def _read(path: Path, key: str | None, trusted: str | None, fresh: list, warnings: list[str]) -> Run | None:
        """The folder read (read_run) and its row queued in `fresh` with the stamp `trusted`; None, with a warning,
        when it is no run folder."""
        try:
            run = read_run(path)
        except UserError as exc:
            warnings.append(f"{exc}; skipped")
            return None
        describe([run])
        if trusted is not None and key is not None:
            values = json.dumps({k: v for k, v in run.values.items() if k != "path"}, default=str)
            fresh.append((key, trusted, str(run.status), values, json.dumps(_record(run), default=str),
                          _started(run.values.get("started")) or None))
        return run

    def _key(self, path: Path) -> str | None:
        """The path of a run folder under the catalog's folder, as text ('sweep/point'); '.' for the folder."""
        if self.folder is None:
            return None
        text, base = str(path), str(self.folder)
        if text.startswith(base + os.sep):  # found under the folder: the names below it, without a system call
            return text[len(base) + 1:].replace(os.sep, "/")
        try:
            return Path(os.path.relpath(path, self.folder)).as_posix()
        except ValueError:
            return None

    def _rows(self) -> dict[str, tuple[str, str, str, str, str | None]]:
        try:
            return {key: rest for key, *rest in
                    self.db.execute("SELECT path, stamp, status, row, record, started FROM runs")}
        except sqlite3.Error:
            self.db = None
            return {}

    def _write(self, fresh: list[tuple[str, str, str]], gone: list[str]) -> None:
        if not fresh and not gone:
            return
        try:
            with _transaction(self.db):
                self.db.executemany("INSERT OR REPLACE INTO runs (path, stamp, status, row, record, started) "
                                    "VALUES (?, ?, ?, ?, ?, ?)", fresh)
                self.db.executemany("DELETE FROM runs WHERE path = ?", [(k,) for k in gone])
        except sqlite3.Error:  # busy past the timeout, disk full, read-only: the listing stands, uncached
            pass


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection):
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error): one writer at a time, all of a batch or none."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _decode(rows: list) -> list[dict | None]:
    """Each row's JSON object, all decoded in one call (a call a row costs a third more); None for a row that is
    no JSON object, as a damaged catalog may hold (then each row is decoded alone)."""
    try:
        decoded = json.loads(f"[{','.join(rows)}]")
        if len(decoded) == len(rows) and all(type(value) is dict for value in decoded):
            return decoded
    except (ValueError, TypeError):  # not JSON, or not text (SQLite gives what a damaged file holds)
        pass
    return [_object(row) for row in rows]


def _object(row) -> dict | None:
    try:
        value = json.loads(row)
    except (ValueError, TypeError):
        return None
    return value if type(value) is dict else None


def _started(value) -> str:
    """run.json's `started` as the newest-first order compares it: its text, '' when there is none."""
    return value if isinstance(value, str) else ""


def _record(run: Run) -> dict:
    return {"cfg": run.cfg, "summary": run.summary, "damage": run.damage, "info": run.info, "tags": run.tags}


class CataloguedRun(Run):
    """A Run from its catalog row: the row (`values`) decoded at once, the rest of what was read (config,
    summary, run.json, tags) only when a view asks for it, and the metrics from the folder when asked for."""

    def __init__(self, path: Path, text: str, status: str, values: dict, record: str):
        # Run.__init__'s attributes, set here without it: cfg, summary, info and tags stay unset until asked for
        values["path"], values["name"] = text, path.name
        self.path, self.status, self.damage, self._metrics, self.values = path, status, values.get("damage"), None, \
            values
        self._record = record

    def __getattr__(self, name):  # cfg, summary, info, tags: set on first use from the record
        if name in ("cfg", "summary", "info", "tags") and "_record" in self.__dict__:
            self.__dict__.update(json.loads(self.__dict__.pop("_record")))
            return self.__dict__[name]
        raise AttributeError(name)


def _stamp(folder: str) -> tuple[str | None, int]:
    """The size, mtime, ctime and inode of each file a row is read from ('-' for a missing one), and the newest
    of those times; None when a file cannot be looked at. The ctime catches a file rewritten in place whose mtime
    was set back. checkpoint.npz is read (runs.collect.read_run) only where model.npz is not a file: beside a
    model.npz it is not stamped ('+'), so that a finished run costs one look fewer."""
    parts, newest, stat, prefix, model = [], 0, os.stat, folder + os.sep, ""
    for name in STAMPED:  # model.npz before checkpoint.npz
        if name == layout.CHECKPOINT and model:
            parts.append("+")
            continue
        try:
            st = stat(prefix + name)
        except FileNotFoundError:
            parts.append("-")
            continue
        except OSError:
            return None, 0
        mtime, ctime = st.st_mtime_ns, st.st_ctime_ns
        if name == layout.MODEL and S_ISREG(st.st_mode):
            model = "+"
        parts.append(f"{st.st_size}:{mtime}:{ctime}:{st.st_ino}")
        newest = max(newest, mtime, ctime)
    return "|".join(parts), newest


def _locations(folder: Path):
    """Beside the runs, else in the user's cache folder under a name made from the runs folder's real path (made
    only when the first will not do)."""
    yield folder / layout.CATALOG
    from digitlab.data.idx import cache_dir
    digest = hashlib.sha256(os.path.realpath(folder).encode("utf-8", "surrogateescape")).hexdigest()[:20]
    yield cache_dir() / "catalogs" / f"{digest}.sqlite"


def _connect(path: Path, warn) -> sqlite3.Connection | None:
    """An open catalog at `path`, made or rebuilt as needed; None where it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return None
    for attempt in (1, 2):
        try:
            connection = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
            return _prepare(connection)
        except _Foreign as exc:
            reason = str(exc)
        except sqlite3.DatabaseError as exc:
            reason = str(exc)
        except (sqlite3.Error, OSError):
            return None
        with contextlib.suppress(Exception):
            connection.close()
        if attempt == 2:
            return None
        if warn is not None:
            warn(f"{path}: not a digitlab catalog ({reason}); rebuilt it (it is only a cache of the run folders)")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError, OSError):
                os.unlink(f"{path}{suffix}")
    return None


class _Foreign(Exception):
    pass


def _prepare(connection: sqlite3.Connection) -> sqlite3.Connection:
    """WAL, the tables, and the checks that the file is this version's catalog (else _Foreign)."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    with _transaction(connection):  # one process at a time looks at a new file and makes its tables
        app = connection.execute("PRAGMA application_id").fetchone()[0]
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if app not in (0, APPLICATION_ID) or (app == 0 and tables):
            raise _Foreign("another program's SQLite file")
        if app == 0:
            connection.execute(f"PRAGMA application_id={APPLICATION_ID}")
            connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            connection.execute(RUNS_TABLE)
            connection.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
        elif not {"meta", "runs"} <= tables:
            raise _Foreign("its tables are missing")
        else:
            row = connection.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if row is None or row[0] != FORMAT:  # another version's rows: the cache starts afresh, quietly
                connection.execute("DROP TABLE runs")
                connection.execute(RUNS_TABLE)
                connection.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (FORMAT,))
    return connection
