"""Whether a process runs, from its pid: ``os.kill(pid, 0)`` and, on Linux, its state in ``/proc/<pid>/stat``."""

from __future__ import annotations

import os


def state(pid: int) -> str | None:
    """The process's one-letter state from ``/proc/<pid>/stat`` ("R", "S", "Z" for a zombie, ...); None where it
    cannot be read (no such process, or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:  # "pid (comm) state ...": comm may hold spaces and parentheses
            return f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Whether the process runs. A zombie (exited, not yet reaped by its parent: an orphaned worker in a container
    whose init does not reap) holds its pid but runs nothing, so it counts as gone; without /proc the pid decides."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return state(pid) != "Z"
