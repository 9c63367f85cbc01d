"""The file lock between processes: ``fcntl.flock`` on a lock file, the kernel's lock, released when the file closes
or its process ends however it ends (``kill -9`` too), so a stale lock never blocks. Between machines it needs a file
system with locks (NFSv4, Lustre mounted with ``flock``, GPFS)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def file_lock(path: Path, *, wait: bool = True) -> Iterator[IO[str] | None]:
    """Hold the lock on ``path`` (made, with its folder, if missing) for the block, yielding the open lock file;
    ``wait=False``: yield None at once when another process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle = None
        yield handle
