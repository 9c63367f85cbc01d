"""Issue 20, case 6 (the store): a store that cannot be written is one line naming the fix, found before any work,
in seconds (it took 110 s and ended in "is it an MLflow SQLite database?"), and a read-only store can still be read.

Made read-only the way that stops root too (the suite runs as root here, and permission bits do not stop root):
``chattr +i`` (an immutable folder takes no new file, so SQLite cannot write its journal; an immutable file does not
open for writing); as another user, ``chmod``."""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest
from clitools import harness, new_store

from harness.tracking import store as tracking
from harness.core.errors import HarnessError


@contextmanager
def read_only(path: Path):
    """``path`` (a folder or a file) unwritable for this process, whoever it runs as, inside the block."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True).returncode:
            pytest.skip("running as root on a file system without chattr +i: nothing here can make a folder read-only")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)


def refused(uri: str) -> str:
    """prepare_store's message for ``uri``, refused by the write probe before MLflow's client is made (MLflow itself
    would retry for minutes, then say "is it an MLflow SQLite database?")."""
    made = tracking.client
    tracking.client = lambda *args: pytest.fail("MLflow's client was made for a store that cannot be written")
    try:
        with pytest.raises(HarnessError) as err:
            tracking.prepare_store(uri, "ddim-harness")
    finally:
        tracking.client = made
    return str(err.value)


def test_a_new_store_in_a_read_only_folder_is_one_message(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    with read_only(folder):
        message = refused(f"sqlite:///{folder / 'mlflow.db'}")
    assert f"its folder {folder} is read-only or not writable" in message and "Make the folder writable" in message
    assert "MLflow SQLite database" not in message and not (folder / "mlflow.db").exists()


def test_an_existing_store_in_a_read_only_folder_is_refused_for_writing_and_still_read(tmp_path):
    db = new_store(tmp_path / "store" / "mlflow.db")
    uri = f"sqlite:///{db}"
    exp = mlflow.MlflowClient(uri).create_experiment("ddim-harness")  # made by another process, in effect
    with read_only(db.parent):
        message = refused(uri)
        assert tracking.experiment_id(uri, "ddim-harness") == exp  # reading it needs no write (the report)
    assert "is read-only or not writable" in message and "SQLite writes its journal beside the database" in message


def test_a_read_only_database_file_is_one_message(tmp_path):
    db = new_store(tmp_path / "store" / "mlflow.db")
    with read_only(db):
        message = refused(f"sqlite:///{db}")
    assert "the database file is read-only" in message and "Make it writable" in message


def test_the_command_line_says_it_in_one_line(tmp_path):
    """A sweep on a store in a read-only folder: exit 2, one line, nothing sampled."""
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder):
        proc = harness(tmp_path, "-m", "S=3", "N=8", "repeats=1", f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
                       check=False, template=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: The tracking store") and "is read-only or not writable" in line
    assert not (tmp_path / "out" / "images").exists()
