"""The suite's own guard (conftest.isolated_state): a test that leaves credentials, a tracking URI in the environment
or mlflow's global tracking URI changed is named, and the next test starts as this one did."""

import os

import mlflow

from clitools import GLOBAL_URI, undo_leaks, watched_state


def test_a_leak_is_named_and_undone(tmp_path):
    before = watched_state()
    assert undo_leaks(before) == ""
    os.environ["MLFLOW_TRACKING_PASSWORD"] = "s3cret"  # as harness.tracking.credentials does in-process
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")  # sets MLFLOW_TRACKING_URI too
    leaked = undo_leaks(before)
    assert "MLFLOW_TRACKING_PASSWORD: None -> 's3cret'" in leaked
    assert f"MLFLOW_TRACKING_URI: {before.get('MLFLOW_TRACKING_URI')!r} -> 'sqlite:///" in leaked
    assert f"{GLOBAL_URI}: {before[GLOBAL_URI]!r} -> 'sqlite:///" in leaked
    assert watched_state() == before and "MLFLOW_TRACKING_PASSWORD" not in os.environ
