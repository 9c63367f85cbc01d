"""Issue 20, problem 2: a tracking URI with a user and password (``http://alice:s3cret@host``) leaves the password in
no artifact, tag, param, console line or message: against a real ``mlflow server`` (which takes any credentials)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from clitools import TINY, harness
from harness.tracking import credentials
from mlflow_server import free_port, start_server, stop_server

SECRET = "s3cret"


def test_credentials_leave_the_uri(monkeypatch):
    for name in (credentials.USER_ENV, credentials.PASSWORD_ENV):  # set first, so monkeypatch removes what the code sets
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    assert credentials.split_credentials("https://alice:p%40ss@host:5000/x") == "https://host:5000/x"
    assert (os.environ[credentials.USER_ENV], os.environ[credentials.PASSWORD_ENV]) == ("alice", "p@ss")
    assert credentials.split_credentials("sqlite:///a@b.db") == "sqlite:///a@b.db"
    text = "tracking.uri=http://alice:s3cret@127.0.0.1:5000 and uri: 'https://bob@h/x' sqlite:///mlflow.db"
    assert credentials.redact(text) == "tracking.uri=http://127.0.0.1:5000 and uri: 'https://h/x' sqlite:///mlflow.db"
    assert credentials.redacted({"a": ["http://u:p@h"], "b": 1}) == {"a": ["http://h"], "b": 1}
    assert credentials.redact(r"- tracking.uri=http\://alice\:s3cret@127.0.0.1\:5000") == r"- tracking.uri=http\://127.0.0.1\:5000"


def all_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file() and p.suffix != ".pt")


@pytest.mark.slow
def test_no_secret_in_runs_artifacts_or_console(tmp_path):
    port = free_port()
    server = start_server(tmp_path, port)
    try:
        uri = f"http://alice:{SECRET}@127.0.0.1:{port}"
        proc = harness(tmp_path, "-m", "seed=0,1", *TINY, f"tracking.uri={uri}", "hydra.launcher.n_jobs=1")
        console = proc.stdout + proc.stderr
        print(console)
        assert SECRET not in console and "alice" not in console and "View run" not in console
        assert f"runs: http://127.0.0.1:{port}/#/experiments/" in console

        client = mlflow.MlflowClient(f"http://127.0.0.1:{port}")
        exp = client.get_experiment_by_name("ddim-harness")
        found = client.search_runs([exp.experiment_id])
        assert len(found) == 3  # two cells and the sweep
        for run in found:
            assert SECRET not in repr(run.data.tags) + repr(run.data.params), run.info.run_name
            folder = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "dl" / run.info.run_id)))
            assert SECRET not in all_text(folder), run.info.run_name
        cell = next(r for r in found if r.data.tags.get("kind") == "cell")
        saved = Path(tmp_path / "dl" / cell.info.run_id)
        assert (saved / "config.yaml").is_file() and (saved / "hydra" / "overrides.yaml").is_file()
        overrides = (saved / "hydra" / "overrides.yaml").read_text().replace("\\", "")
        assert f"tracking.uri=http://127.0.0.1:{port}" in overrides and "alice" not in overrides
        assert f"uri: http://127.0.0.1:{port}" in (saved / "config.yaml").read_text()
        assert SECRET not in all_text(tmp_path / "out" / "multirun")  # Hydra's saved configs of the jobs

        env = dict(os.environ, OMP_NUM_THREADS="1")
        for args, says in ((["--experiment", "nope"], "has no experiment 'nope'"),
                           (["--dataset", "cifar10"], "No finished runs for --dataset cifar10")):
            report = subprocess.run([sys.executable, "-m", "harness.report", "--tracking-uri", uri, "--out", "r", *args],
                                    cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
            assert report.returncode == 2 and says in report.stderr, report.stderr
            assert SECRET not in report.stdout + report.stderr and f"http://127.0.0.1:{port}" in report.stderr
    finally:
        stop_server(server)
