"""Stopping a running run from the dashboard (--allow-stop): SIGINT, as Ctrl-C in its terminal would, so it ends
`interrupted` after its current batch and can be resumed. The signal goes only to a process proven to be training
that run: the run's lock (<run>/.lock, system/locks.py) is held, it names a pid on this host, that pid lives, and the
kernel's table of locks (/proc/locks) says that very pid holds the lock on that very file. Anything else is refused
with the reason, and nothing is sent."""

from __future__ import annotations

import os
import re
import signal
import socket

from digitlab.errors import RunError
from digitlab.run import layout
from digitlab.system.locks import held_elsewhere

HOLDER = re.compile(r"^pid (\d+) on (\S+)$")
PROC_LOCKS = "/proc/locks"


def stop_run(board, ident: str) -> str:
    """Send SIGINT to the process training the run `ident`; what was done, in words. RunError when refused."""
    entry = board.runs.get(ident)
    if entry is None:
        raise RunError(f"no run {ident!r} in the folders this dashboard shows")
    lock = entry.path / layout.LOCK
    holder = held_elsewhere(lock)
    if holder is None:
        raise RunError(f"{entry.path.name}: no process is training it")
    match = HOLDER.match(holder)
    if match is None:
        raise RunError(f"{entry.path.name}: its lock does not say which process holds it ({holder!r})")
    pid, host = int(match.group(1)), match.group(2)
    if host != socket.gethostname():
        raise RunError(f"{entry.path.name}: it is trained on {host}, not on this machine")
    if pid == os.getpid() or not _alive(pid):
        raise RunError(f"{entry.path.name}: process {pid} is not running")
    if not holds_lock(pid, lock):
        raise RunError(f"{entry.path.name}: process {pid} does not hold the run's lock; nothing sent")
    os.kill(pid, signal.SIGINT)
    return f"sent SIGINT to process {pid}, which trains {entry.path.name}"


def holds_lock(pid: int, lock) -> bool:
    """True when the kernel lists a lock of `pid` on the file `lock` (its device and inode); where the kernel has
    no such list, the lock's own record of its holder (checked by the caller) is taken as it is."""
    try:
        st = os.stat(lock)
        with open(PROC_LOCKS, encoding="ascii", errors="replace") as table:
            lines = table.read().splitlines()
    except FileNotFoundError:
        return os.path.exists(lock) and not os.path.exists(PROC_LOCKS)
    except OSError:
        return False
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in lines:  # "1: FLOCK  ADVISORY  WRITE 12345 08:01:123456 0 EOF"
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            if int(fields[4]) == pid and (int(major, 16), int(minor, 16), int(inode)) == wanted:
                return True
        except ValueError:
            continue
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
