"""Issue 20, cases 3 and 4: processes starting together on a new store, and two identical sweeps at once.

Real processes, started together: a new SQLite store is created and migrated once, under its lock (no
``_alembic_tmp_*`` error or leftover table); two sweeps of the same cells compute each cell once, the second waiting
for the first and then skipping it, with one line saying so."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from clitools import ROOT, runs

# Each process imports the harness, says it is ready, waits for the file ``go`` and then opens the store as a
# sweep's start does (prepare_store).
OPEN_STORE = """
import os, sys, time
from pathlib import Path
from harness import tracking
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
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
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
