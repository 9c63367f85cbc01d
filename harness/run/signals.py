"""Ctrl-C (SIGINT) and SIGTERM as clean stops. The first becomes a KeyboardInterrupt (``Terminated`` for SIGTERM) and
the command ends with 130 or 143; later ones are only noted: a terminal's Ctrl-C reaches every process of the group
and a sweep passes it on, so a second must not cut short the cleanup of the first. A worker raises only while it
runs a cell (``raising``) and stops when its sweep dies (``die_with_parent``)."""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from harness.core import processes

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PR_SET_PDEATHSIG = 1  # linux/prctl.h

received: int | None = None  # the first stop signal this process got
_raising = True  # whether a stop signal raises now (a worker raises only while it runs a cell)
_parent: int | None = None  # a worker's sweep process (die_with_parent)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run is marked KILLED."""


class Preempted(KeyboardInterrupt):
    """SIGUSR2 in a Slurm task: the signal Slurm sends before the time limit or a preemption (``--signal``). The run is
    closed as preempted, and the sweep submits the cell again, which resumes in the same run (harness.sweep.slurm)."""


preempted = False  # whether this process got the preemption signal (a Slurm task: harness.sweep.slurm)


def on_preempt(signum, frame) -> None:
    global preempted
    if preempted:
        return
    preempted = True
    raise Preempted(f"preempted (signal {signum}: Slurm's warning before the time limit or a preemption)")


def name(signum: int | None) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"


def exit_status(signum: int | None) -> int:
    """The exit status of a command stopped by ``signum``: 128 + its number (130 Ctrl-C, 143 SIGTERM)."""
    return 128 + int(signum or signal.SIGINT)


def signal_of(err: BaseException) -> int:
    return signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT


def interrupt(signum: int) -> KeyboardInterrupt:
    """The exception a stop signal becomes; its text is what the run's error and the console say."""
    if signum == signal.SIGTERM:
        if _parent_gone():
            return Terminated(f"signal {signum}: the sweep's process {_parent} died")
        return Terminated(f"signal {signum}")
    return KeyboardInterrupt("Ctrl-C")


def _parent_gone() -> bool:
    """Whether a worker's sweep process has died. The death signal can come before the worker is re-parented, so a
    parent that is still our parent counts as gone once it is a zombie or no longer exists (Linux /proc)."""
    if _parent is None:
        return False
    for _ in range(20):  # re-parenting follows within moments
        if os.getppid() != _parent:
            return True
        time.sleep(0.01)
    parent = processes.state(_parent)
    if parent is None:
        return not os.path.exists("/proc/self")  # no /proc: only the parent pid decides (it did not change)
    return parent in ("Z", "X")


def note(signum: int) -> bool:
    """Record a stop signal; True for the first one."""
    global received
    if received is not None:
        return False
    received = signum
    return True


def _on_signal(signum, frame) -> None:
    if note(signum) and _raising:
        raise interrupt(signum)


def install() -> None:
    """Handle SIGINT and SIGTERM as described above (a no-op outside the main thread, where Python allows none)."""
    try:
        for signum in STOP_SIGNALS:
            signal.signal(signum, _on_signal)
    except ValueError:
        pass


def stop_raising() -> None:
    """From now on stop signals are only noted: for a worker between cells, and for a process that is ending (its
    atexit handlers, torch's among them, must not be cut short by a traceback)."""
    global _raising
    _raising = False


@contextmanager
def raising(on: bool) -> Iterator[None]:
    """Stop signals raise inside the block (``on``) or are only noted (``received``)."""
    global _raising
    before, _raising = _raising, on
    try:
        yield
    finally:
        _raising = before


@contextmanager
def blocked() -> Iterator[None]:
    """Stop signals held back (pending, not lost) inside the block; a process started in it begins with them held
    back too (the signal mask is inherited), until it installs its handlers and calls ``unblock``."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def unblock() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def die_with_parent(parent_pid: int) -> None:
    """SIGTERM to this process when its parent (the sweep) dies, however it dies: Linux's PR_SET_PDEATHSIG, else a
    thread that polls ``os.getppid()`` each second. A parent already gone sends it at once."""
    global _parent
    _parent = parent_pid
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux
        ok = False
    if not ok:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


@contextmanager
def handled() -> Iterator[None]:
    """``install()`` for the block, the previous handlers back after it."""
    try:
        previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        install()
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
