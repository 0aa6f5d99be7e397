"""Exclusive folder locks (core): one training per run folder, one generation per GeoSynth
output folder.

:func:`folder_lock` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on a lock file inside the folder and
writes the holder's PID and host name into it; the holder removes the file when it is done. A
second process asking for the same folder fails at once with :class:`FolderLockedError` naming
them. The kernel releases a ``flock`` when its process exits, however it exits (``kill -9``
included), so the lock file such a process leaves behind never blocks a later run: only a live
holder does. The lock is re-entrant within one process (``train_run`` holds it around ``fit``,
which takes it too).

Linux and macOS only (``fcntl``); elsewhere :func:`folder_lock` does not lock. On network file
systems ``flock`` is only as reliable as the file system's lock support.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from geoloc_lib.core.errors import GeolocError, not_writable

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".geoloc.lock"

_held: dict[str, list[int]] = {}  # lock file -> [fd, depth] of the locks this process holds


class FolderLockedError(GeolocError):
    """Another process holds the folder's lock (trains into the run folder, generates there)."""


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another process"
    what = f" ({info['what']})" if info.get("what") else ""
    return f"process {info['pid']} on host {info.get('host', '?')}{what}"


@contextmanager
def folder_lock(folder: str | Path, what: str, lock_name: str = LOCK_FILE) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (created if missing) for the ``with`` block.

    ``what`` describes the holder's work for the message another process gets (``"training"``,
    ``"GeoSynth generation"``). Yields the lock file's path."""
    folder = Path(folder)
    path = folder / lock_name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise not_writable(folder, err, "folder") from None
    key = str(path.resolve())
    if fcntl is None:
        yield path
        return
    if key in _held:
        _held[key][1] += 1
        try:
            yield path
        finally:
            _held[key][1] -= 1
        return
    fd = _acquire(folder, path)
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "what": what}
        try:  # who holds it, for the message another process gets (best effort: disk full)
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps({**info, "since": time.time()}) + "\n").encode())
        except OSError:
            pass
        _held[key] = [fd, 1]
        yield path
    finally:
        _held.pop(key, None)
        try:
            path.unlink(missing_ok=True)  # while still held: see _acquire
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _acquire(folder: Path, path: Path) -> int:
    """Open and lock ``path``; the descriptor of the locked file.

    The holder removes the file before it unlocks. A process that opened the file just before
    that, and locked it just after, holds a removed file: it sees that the path names another
    file (or none) and tries again with a new one."""
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise not_writable(folder, err, "folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise FolderLockedError(
                f"{folder} is in use by {holder}: it holds {path.name} there. Wait for it to "
                "finish or stop it, or use another folder"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise FolderLockedError(f"could not lock {folder}: {path.name} keeps being replaced")
