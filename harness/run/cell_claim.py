"""A cell's claim, so that one process computes a cell at a time: a kernel file lock on
``<output_root>/cells/<key>.busy`` (a part: ``<key>.part<p>.busy``), held from before its run opens until it closes.
A process that finds it held waits, then skips or computes the cell (docs/reliability.md: concurrent sweeps)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.core.locks import file_lock
from harness.run.cell import Cell


def claim_path(cell: Cell) -> Path:
    name = cell.key if cell.part is None else f"{cell.key}.part{cell.part}"
    return cell.output_root / "cells" / f"{name}.busy"


@contextmanager
def claimed(cell: Cell, label: str) -> Iterator[bool]:
    """Hold the cell's claim for the block; yields whether it had to wait for another process first."""
    path = claim_path(cell)
    with file_lock(path, wait=False) as handle:
        if handle is not None:
            _hold(handle)
            yield False
            return
    holder = path.read_text().strip() or "another process"
    print(f"[wait] {label}: {holder} is computing this cell; waiting for it to end", flush=True)
    with file_lock(path) as handle:
        _hold(handle)
        yield True


def _hold(handle) -> None:
    """Write who holds the claim into its file, for the process that waits for it."""
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {socket.gethostname()}")
    handle.flush()
