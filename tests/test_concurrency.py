"""Issue 20, cases 3 and 4: processes starting together on a new store, and two identical sweeps at once.

Real processes, started together: a new SQLite store is created and migrated once, under its lock (no
``_alembic_tmp_*`` error or leftover table); two sweeps of the same cells compute each cell once, the second waiting
for the first and then skipping it, with one line saying so."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import threading

import pytest
from clitools import ROOT, cells, new_store, runs, start_harness, wait_until

from harness.tracking import store as tracking
from harness.run.cell_claim import claim_path

# Each process imports the harness, says it is ready, waits for the file ``go`` and then opens the store as a
# sweep's start does (prepare_store).
OPEN_STORE = """
import os, sys, time
from pathlib import Path
from harness.tracking import store as tracking
import mlflow.store.tracking.sqlalchemy_store
Path(sys.argv[3]).touch()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.002)
print(tracking.prepare_store(sys.argv[1], "ddim-harness"))
"""


@pytest.mark.slow
def test_processes_starting_together_create_a_new_store_once(tmp_path):
    db = tmp_path / "store" / "mlflow.db"
    go = tmp_path / "go"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_STORE, f"sqlite:///{db}", str(go), str(tmp_path / f"ready{i}")],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    wait_until(lambda: all((tmp_path / f"ready{i}").exists() for i in range(2)), "both processes ready", procs, every=0.01)
    go.touch()  # both start at once
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len({out.strip() for out, _ in outs}) == 1  # one experiment, the same id for both
    assert all("alembic" not in err and "Traceback" not in err for _, err in outs), outs
    with sqlite3.connect(db) as con:
        tables = {name for (name,) in con.execute("select name from sqlite_master where type = 'table'")}
        (experiments,) = con.execute("select count(*) from experiments where name = 'ddim-harness'").fetchone()
    assert not [t for t in tables if t.startswith("_alembic_tmp")] and experiments == 1
    assert (db.parent / "mlflow.db.lock").exists()


def start_sweep(folder, *args):
    """``python -m harness -m ...`` in ``folder`` (a new store there: the harness creates it), not waited for."""
    return start_harness(folder, "-m", *args, template=False)


class Lines:
    """A process's stdout and stderr lines as they come (reader threads)."""

    def __init__(self, proc):
        self.proc, self.lines = proc, []
        self.threads = [threading.Thread(target=self._read, args=(stream,), daemon=True)
                        for stream in (proc.stdout, proc.stderr)]
        for t in self.threads:
            t.start()

    def _read(self, stream):
        for line in stream:
            self.lines.append(line)

    def wait(self, timeout):
        self.proc.wait(timeout=timeout)
        for t in self.threads:
            t.join(timeout=10)
        return "".join(self.lines)


@pytest.mark.slow
def test_two_identical_sweeps_at_once_compute_each_cell_once(tmp_path):
    """Two identical sweeps started together on a new store: the cell is computed by one of them; the other says it
    waits, then skips it. One FINISHED run, both sweeps FINISHED. To make both meet at the cell whatever their start
    times, the test holds the cell's claim until both wait for it."""
    args = ["S=3", "N=40", "repeats=1", "batch_size=8", "job.grid_images=8", "hydra.launcher.n_jobs=1"]
    (cell,) = cells(*args, f"output_root={tmp_path / 'out'}")
    claim = claim_path(cell)
    claim.parent.mkdir(parents=True)
    with open(claim, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        sweeps = [Lines(start_sweep(tmp_path, *args)) for _ in range(2)]
        wait_until(lambda: sum("[wait]" in "".join(s.lines) for s in sweeps) >= 2, "both sweeps waiting",
                   [s.proc for s in sweeps], every=0.1)
    outs = [s.wait(timeout=300) for s in sweeps]
    print(*outs)
    assert [s.proc.returncode for s in sweeps] == [0, 0] and "Traceback" not in "".join(outs)
    assert sorted(out.count("[done]") for out in outs) == [0, 1] and sorted(out.count("[skip]") for out in outs) == [0, 1]
    assert all(out.count("is computing this cell; waiting for it to end") == 1 for out in outs)
    df = runs(tmp_path)
    cell_runs, sweep_runs = df[df["tags.kind"] == "cell"], df[df["tags.kind"] == "sweep"]
    assert list(cell_runs["status"]) == ["FINISHED"] and list(sweep_runs["status"]) == ["FINISHED", "FINISHED"]


def test_a_migration_left_half_done_is_cleaned_up_under_the_lock(tmp_path):
    """A ``_alembic_tmp_*`` table left by a migration that died (or by two unlocked processes) is dropped by the next
    process to open the store, under the store's lock: no harness process migrates without it."""
    db = new_store(tmp_path / "mlflow.db")
    with sqlite3.connect(db) as con:
        con.execute("create table _alembic_tmp_trace_info (x integer)")
    con.close()
    assert tracking.experiment_id(f"sqlite:///{db}", "ddim-harness") is None  # opens the store
    with sqlite3.connect(db) as con:
        tables = {name for (name,) in con.execute("select name from sqlite_master where type = 'table'")}
    con.close()
    assert "_alembic_tmp_trace_info" not in tables and "experiments" in tables
