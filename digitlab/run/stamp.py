"""The figures' stamp (.figures.json): which figures digitlab drew into a run folder, from which files, with which
code, so that `digitlab report` shows a figure again without drawing it when nothing it was drawn from changed.

It records the content hash (and size) of every file the figures are drawn from (SOURCES, a missing one as
null), of every figure written (null for a figure that does not apply to the run), and the code that drew them
(digitlab's version and the size and mtime of each of its modules). A figure is reused only when the stamp
reads cleanly, its sources and code are those of now, and the figure's file holds exactly the bytes recorded;
anything else (no stamp, a damaged or foreign one, a file changed, edited or copied in) means drawing it again.
Hashes rather than modification times: a copy of a run folder keeps its figures, a same-sized rewrite within
a clock tick does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from pathlib import Path

import digitlab
from digitlab.errors import StorageError
from digitlab.run import layout
from digitlab.run.folder import RunFolder

STAMP = layout.FIGURES_STAMP
SOURCES = (layout.CONFIG, layout.METRICS, layout.SPLITS, layout.MODEL, layout.EMBEDDING_EPOCHS,
           layout.LAYER_HEALTH)  # what the figures are drawn from, besides the dataset that config.yaml names
FORMAT = 1
MAX_STAMP_BYTES = 1 << 20  # a stamp is a few kB; anything larger is not one digitlab wrote
_code: list[str] = []  # the code's fingerprint, taken once per process


def digest(content: bytes) -> list:
    """[size, hash] of a file's bytes, as the stamp records them."""
    return [len(content), hashlib.blake2b(content, digest_size=16).hexdigest()]


def sources(run: RunFolder) -> dict:
    """The digest of each file the figures are drawn from, None for one that is not there (or cannot be read)."""
    found = {}
    for name in SOURCES:
        try:
            found[name] = digest((run / name).read_bytes())
        except OSError:
            found[name] = None
    return found


def code() -> str:
    """digitlab's version and the size and modification time of each of its modules: a new version, or a module
    edited in a checkout, draws the figures again."""
    if not _code:
        package = Path(digitlab.__file__).parent
        stats = []
        for path in sorted(package.rglob("*.py")):
            with contextlib.suppress(OSError):
                found = path.stat()
                stats.append(f"{path.relative_to(package)}:{found.st_size}:{found.st_mtime_ns}")
        _code.append(f"{digitlab.__version__} " + hashlib.blake2b("\n".join(stats).encode(), digest_size=8).hexdigest())
    return _code[0]


class Stamp:
    """A run folder's figures as drawn: take it before drawing (`Stamp(run)`), ask `reused(name)` for each figure,
    tell `drew(name, content)` of each one drawn and written, then `save()`. `redraw`: reuse nothing."""

    def __init__(self, run: RunFolder, redraw: bool = False):
        self.run = run
        self.now = {"format": FORMAT, "code": code(), "sources": sources(run)}  # before anything is drawn
        self.read = None if redraw else _read(run)
        fits = self.read is not None and all(self.read.get(k) == v for k, v in self.now.items())
        self.kept: dict = dict(self.read["figures"]) if fits else {}
        self.figures: dict = {}  # what the stamp will say: name -> digest, or None (the figure does not apply)

    def reused(self, name: str) -> tuple[bool, bytes | None]:
        """(True, the figure's bytes, or None when it does not apply to the run) when it can be shown as drawn
        before; (False, None) when it must be drawn."""
        if name not in self.kept:
            return False, None
        recorded = self.kept[name]
        if recorded is None:
            self.figures[name] = None
            return True, None
        try:
            content = (self.run / name).read_bytes()
        except OSError:
            return False, None
        if digest(content) != recorded:
            return False, None
        self.figures[name] = recorded
        return True, content

    def drew(self, name: str, content: bytes | None) -> None:
        """`name` was drawn from the sources as they were when the stamp was taken, and written (or does not
        apply: None)."""
        self.figures[name] = None if content is None else digest(content)

    def wrote(self, names, written) -> None:
        """The figures among `names` drawn into the folder (those in `written`; the others did not apply), as
        write_outputs leaves them."""
        for name in names:
            try:
                self.drew(name, (self.run / name).read_bytes() if name in written else None)
            except OSError:
                self.figures.pop(name, None)

    def save(self) -> None:
        """Write the stamp, when it says something new; a stamp that cannot be written is left (the next report
        draws again)."""
        stamp = {**self.now, "figures": self.figures}
        if stamp != self.read:
            with contextlib.suppress(StorageError):
                self.run.write_json(STAMP, stamp)


def _read(run: RunFolder) -> dict | None:
    """The stamp as written, or None for a missing, unreadable, damaged or malformed one."""
    try:
        stamp = json.loads(_read_capped(run / STAMP))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(stamp, dict) or not isinstance(stamp.get("figures"), dict):
        return None
    figures = stamp["figures"]
    if not all(isinstance(n, str) and (d is None or _is_digest(d)) for n, d in figures.items()):
        return None
    return stamp


def _read_capped(path: Path) -> bytes:
    """A regular file's bytes, up to MAX_STAMP_BYTES; ValueError for anything else (a device such as /dev/zero, a
    FIFO, a file too large), so that a stamp pointing anywhere costs no more than reading 1 MB."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the report
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        content = file.read(MAX_STAMP_BYTES + 1)
    if len(content) > MAX_STAMP_BYTES:
        raise ValueError("too large")
    return content


def _is_digest(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], int) and isinstance(value[1], str)
