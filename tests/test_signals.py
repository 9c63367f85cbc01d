"""Issue 20, case 5: sweeps under real signals, sent to real processes.

Ctrl-C (SIGINT to the process group, as a terminal sends it) and SIGTERM end a sweep with exit status 130 / 143, a
line per running cell and one for the sweep, no traceback and no leaked semaphore; every cell's run and the parent
run are KILLED and nothing is left RUNNING. ``kill -9`` of the sweep's process stops its workers (they notice their
parent is gone), which mark their runs KILLED; the next sweep marks the parent run KILLED."""

from __future__ import annotations

import os
import signal
import subprocess
import threading

import pytest
from clitools import HANG, process_state, runs, shards, start_harness, wait_until

from harness.run import signals
from harness.core.processes import alive as _pid_alive

SLOW_CELLS = ["N=200", "repeats=1", "batch_size=8", "S=20"]  # long enough to be stopped mid-sampling


class Sweep:
    """``python -m harness -m ...`` in its own process group, its output read as it comes."""

    def __init__(self, tmp_path, *args):
        self.tmp_path = tmp_path
        self.proc = start_harness(tmp_path, "-m", *args, start_new_session=True)
        self.out, self.err = [], []
        self.threads = [threading.Thread(target=self._read, args=(s, lines), daemon=True)
                        for s, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self.threads:
            t.start()

    @staticmethod
    def _read(stream, lines):
        for line in stream:
            lines.append(line)

    def wait_until(self, ready, what):
        wait_until(lambda: ready() or self.proc.poll() is not None, what)
        assert ready(), f"ended before {what}: {''.join(self.out + self.err)}"

    def wait_for_shard(self, cells: int = 1):
        """Until ``cells`` cells have written a shard (each is then running, past its run's start)."""
        self.wait_until(lambda: len({p.parent for p in shards(self.tmp_path)}) >= cells, f"shards of {cells} cell(s)")

    def stop(self, signum: int, status: int) -> tuple[str, str]:
        """``signum`` to every process of the sweep; its output once it ended with ``status``, checked clean."""
        os.killpg(self.proc.pid, signum)
        ended_with, out, err = self.end()
        print(out, err)
        assert ended_with == status
        clean(out, err)
        return out, err

    def end(self, timeout=HANG):
        """The exit status and the whole output (stdout, stderr) once every process writing to it has ended."""
        status = self.proc.wait(timeout=timeout)
        for t in self.threads:
            t.join(timeout=timeout)
        return status, "".join(self.out), "".join(self.err)


def wait_ended(pid: int) -> None:
    """Until process ``pid`` has ended: gone, or a zombie (an orphan whose new parent, the container's init, may never
    reap it)."""
    wait_until(lambda: process_state(pid) in ("", "Z"), f"the end of process {pid}")


def clean(out: str, err: str) -> None:
    assert "Traceback" not in out + err and "leaked semaphore" not in out + err and "Error" not in out + err


def by_kind(tmp_path):
    df = runs(tmp_path)
    return df[df["tags.kind"] == "cell"], df[df["tags.kind"] == "sweep"], df


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_with_130(tmp_path):
    """Ctrl-C to the group mid-sampling, two workers: each running cell KILLED with one line, the third never
    started, the parent KILLED, one line for the sweep, exit 130."""
    sweep = Sweep(tmp_path, "seed=0,1,2", *SLOW_CELLS, "hydra.launcher.n_jobs=2")
    sweep.wait_for_shard(cells=2)  # both workers mid-sampling (under load the second may start late)
    out, err = sweep.stop(signal.SIGINT, 130)
    assert len(err.splitlines()) <= 3 and err.count("[killed]") == 2 and "interrupted (Ctrl-C)" in err
    assert "sweep stopped (Ctrl-C) after" in err and "3 cells, 0 finished, 0 skipped, 3 killed or not started" in err
    cells, sweep_run, df = by_kind(tmp_path)
    assert "RUNNING" not in set(df["status"]) and set(cells["status"]) == {"KILLED"}
    assert sweep_run["status"].item() == "KILLED" and f"parent run {sweep_run['run_id'].item()} marked KILLED" in err


@pytest.mark.slow
def test_sigterm_to_the_group_while_the_sweep_starts(tmp_path):
    """SIGTERM to every process of the sweep as soon as it has said it starts (its workers are being started): exit
    143, no traceback, nothing left RUNNING, the parent KILLED, each cell reported as not started or killed."""
    sweep = Sweep(tmp_path, "seed=0,1", *SLOW_CELLS, "hydra.launcher.n_jobs=2")
    sweep.wait_until(lambda: any(line.startswith("sweep ") for line in sweep.out), "start line")
    out, err = sweep.stop(signal.SIGTERM, 143)
    cells, sweep_run, df = by_kind(tmp_path)
    parent = sweep_run["run_id"].item()
    # The signal lands before the launcher has taken over (the sweep stops where it is) or while it starts the
    # workers (each cell is then reported): one line either way, apart from a [killed] line per cell begun.
    (line,) = [line for line in err.splitlines() if not line.startswith("[killed]")]
    assert line == f"stopped (SIGTERM); parent run {parent} marked KILLED" or (
        line.startswith("sweep stopped (SIGTERM) after") and line.endswith(f"parent run {parent} marked KILLED")
        and "2 cells, 0 finished, 0 skipped, 2 killed or not started" in line), line
    assert "RUNNING" not in set(df["status"]) and sweep_run["status"].item() == "KILLED"
    assert set(cells["status"]) <= {"KILLED"}


@pytest.mark.slow
def test_kill_9_of_the_sweep_stops_its_workers(tmp_path):
    """kill -9 of the sweep's process mid-cell: its worker notices, marks its run KILLED and exits (no traceback);
    the next sweep marks the parent run, left RUNNING by the killed process, KILLED."""
    sweep = Sweep(tmp_path, "seed=0,1", *SLOW_CELLS, "hydra.launcher.n_jobs=1")
    sweep.wait_for_shard()
    cells, _, _ = by_kind(tmp_path)
    worker = int(cells["tags.pid"].item())
    assert worker != sweep.proc.pid and _pid_alive(worker)
    sweep.proc.kill()
    status, out, err = sweep.end()  # the output ends when the worker has ended too
    print(out, err)
    assert status == -9
    wait_ended(worker)
    clean(out, err)
    assert f"interrupted (signal 15: the sweep's process {sweep.proc.pid} died)" in err
    cells, sweep_run, _ = by_kind(tmp_path)
    assert cells["status"].item() == "KILLED"
    assert cells["tags.error"].item().startswith(f"interrupted (signal 15: the sweep's process {sweep.proc.pid} died)")
    assert sweep_run["status"].item() == "RUNNING"  # its process could not close it

    nxt = Sweep(tmp_path, "seed=5", "N=8", "repeats=1", "batch_size=4", "S=3", "job.grid_images=8")
    status, out, err = nxt.end()
    assert status == 0, out + err
    assert "note: 1 run(s) left RUNNING by processes that no longer exist were marked KILLED" in out
    _, sweeps, df = by_kind(tmp_path)
    assert sorted(sweeps["status"]) == ["FINISHED", "KILLED"] and "RUNNING" not in set(df["status"])


@pytest.mark.slow
def test_sigterm_just_after_the_cells_finished(tmp_path):
    """SIGTERM to the group as soon as the last cell says it is done: the cell stays FINISHED (never reported as
    killed), exit 143, one line, no traceback, no leaked semaphore, nothing RUNNING."""
    sweep = Sweep(tmp_path, "seed=0", "N=8", "repeats=1", "batch_size=4", "S=3", "job.grid_images=8")
    sweep.wait_until(lambda: any(line.startswith("[done]") for line in sweep.out), "[done] line")
    out, err = sweep.stop(signal.SIGTERM, 143)
    (line,) = err.splitlines()
    assert line.startswith(("sweep stopped (SIGTERM) after", "stopped (SIGTERM)")), line
    cells, sweep_run, df = by_kind(tmp_path)
    assert cells["status"].item() == "FINISHED" and "RUNNING" not in set(df["status"])
    assert "marked KILLED" not in out and cells["run_id"].item() not in err


def test_the_first_stop_signal_raises_and_later_ones_are_ignored(monkeypatch):
    """Real signals to this process: SIGTERM becomes Terminated (exit status 143); a Ctrl-C after it, as a terminal's
    reaches every process of a sweep that passes SIGTERM on, is only ignored, so the cleanup is not cut short."""
    monkeypatch.setattr(signals, "received", None)
    with signals.handled():
        with pytest.raises(signals.Terminated, match="signal 15"):
            os.kill(os.getpid(), signal.SIGTERM)  # a signal to itself is handled before kill returns
            raise AssertionError("SIGTERM did not raise")
        os.kill(os.getpid(), signal.SIGINT)  # ignored: nothing raised here
    assert signals.received == signal.SIGTERM and signals.exit_status(signals.received) == 143


def test_a_worker_between_cells_notes_a_signal_without_raising(monkeypatch):
    monkeypatch.setattr(signals, "received", None)
    with signals.handled(), signals.raising(False):
        os.kill(os.getpid(), signal.SIGINT)
        wait_until(lambda: signals.received is not None, "the signal noted")
    assert signals.received == signal.SIGINT and signals.exit_status(signals.received) == 130


def test_a_zombie_counts_as_gone():
    """An exited process its parent has not reaped (a zombie: an orphaned worker in a container whose init does not
    reap) keeps its pid but runs nothing: its runs are orphans, so _pid_alive says it is gone."""
    import subprocess

    child = subprocess.Popen(["sleep", "30"])
    try:
        assert _pid_alive(child.pid)
        child.kill()  # exited, not yet reaped: a zombie
        wait_until(lambda: process_state(child.pid) == "Z", "a zombie")
        assert not _pid_alive(child.pid)
    finally:
        child.wait()
    assert not _pid_alive(child.pid)
