"""One process computes a cell at a time: two sweeps of the same cells started together (or a rerun while the first
is still going) never do the same work twice.

A job holds its cell's claim, ``fcntl.flock`` on ``<output_root>/cells/<key>.busy`` (a part: ``<key>.part<p>.busy``),
from before it opens its run until the run is closed. A job that finds the claim held says so on one line and waits
for it; then, as the runner does before any cell, it skips the cell if the other process finished it, and computes
it otherwise (the other failed or was killed). The claim is the kernel's: it ends with its process however that
ends (``kill -9`` too), so a stale claim never blocks. Between machines it works where ``output_root`` is on a file
system with locks (NFSv4, Lustre mounted with ``flock``, GPFS), like the parts' lock (harness.run.parts).
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.run.cell import Cell


def claim_path(cell: Cell) -> Path:
    name = cell.key if cell.part is None else f"{cell.key}.part{cell.part}"
    return cell.output_root / "cells" / f"{name}.busy"


@contextmanager
def claimed(cell: Cell, label: str) -> Iterator[bool]:
    """Hold the cell's claim for the block; yields whether it had to wait for another process first."""
    path = claim_path(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        waited = False
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            print(f"[wait] {label}: {holder} is computing this cell; waiting for it to end", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
            waited = True
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield waited
