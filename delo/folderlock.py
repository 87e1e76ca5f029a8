"""One writer per output folder: an exclusive ``flock`` on ``<folder>/.delo.lock`` for a run's (or a sweep's)
whole life, with the holder's pid, host and start time written inside so that a refused second writer can say
who holds it.

Why ``flock``: the kernel drops the lock when its holder dies, even by SIGKILL, so a stale lock is simply one
that can be taken although the file still names a holder; that is reported as a warning and taken over. The
file is never deleted (only emptied on release): unlinking a lock file lets two processes lock two different
inodes under one name.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from delo.config import ConfigError

LOCK_FILE = ".delo.lock"


class FolderBusyError(ConfigError):
    """Another live process holds the folder's lock; the message names the folder and the holder."""


def _describe(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"


class FolderLock:
    """``with FolderLock(folder, "run", "use another --out"):`` creates the folder, takes the lock or raises
    FolderBusyError at once (never waits), and releases it on exit."""

    def __init__(self, folder: str | Path, what: str = "run", remedy: str = "use another output folder"):
        self.folder, self.what, self.remedy = Path(folder), what, remedy
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise FolderBusyError(
                f"{self.folder}: another {holder.get('what', self.what)} is writing to this folder "
                f"({_describe(holder)}); wait for it to end, or {self.remedy}"
            ) from None
        previous = _read(fd)
        if previous:  # its holder died without releasing (kill -9, a lost node): the kernel freed the lock
            print(
                f"warning: {self.path}: taking over the stale lock of a {previous.get('what', 'run')} that is "
                f"gone ({_describe(previous)})",
                file=sys.stderr,
                flush=True,
            )
        me = {
            "what": self.what,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # empty = released cleanly, so the next holder warns about nothing
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> dict[str, Any]:
    """The holder recorded in an open lock file ({} when empty or unreadable: a crash mid-write)."""
    try:
        data = json.loads(os.pread(fd, 65536, 0).decode() or "{}")
    except (OSError, ValueError):
        return {"pid": "?", "host": "?", "started": "?"} if os.fstat(fd).st_size else {}
    return data if isinstance(data, dict) else {}


def remove_if_only_lock(folder: str | Path) -> None:
    """Remove a folder that holds nothing but its lock file: what a run or sweep refused after taking the lock
    would otherwise leave behind. A folder with anything else in it is left as it is."""
    folder = Path(folder)
    if folder.is_dir() and [p.name for p in folder.iterdir()] == [LOCK_FILE]:
        (folder / LOCK_FILE).unlink()
        folder.rmdir()
