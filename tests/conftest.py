"""Test-process settings and the shared empty store.

One torch thread per test process: the suite runs on two xdist workers (README: pytest -n auto), and two 2-thread
OpenMP pools on 2 cores collapse. Subprocesses the tests start inherit OMP_NUM_THREADS.

The suite starts dozens of Python processes (xdist workers, the harness's command line, its workers). Installed with
pip --no-compile and run with PYTHONDONTWRITEBYTECODE set (as on this project's machines), each would compile torch,
torchvision and mlflow from source again: about 17 s per process here, and 16 min against 9 min for the whole suite
from a fresh install. So the first import of a module writes its bytecode (into __pycache__/, which git ignores).

No test reaches the internet: HF_HUB_OFFLINE=1 for the whole suite. A test leaves the tracking settings, credentials
and mlflow's global state as it found them: isolated_state checks each test (clitools.WATCHED)."""
import fcntl
import os
import sys

os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
from clitools import TEMPLATE_ENV, private_caches, undo_leaks, watched_state  # noqa: E402,F401 (a fixture)

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def store_template(tmp_path_factory):
    """An empty MLflow SQLite store with its schema migrated, made once for all xdist workers: a test's new store
    starts as a copy of it (tests/clitools.new_store), as creating the schema takes seconds per store. The tests
    that check store creation itself (concurrent first use, nothing written on bad input) start without one."""
    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root  # shared by the workers of one run
    template = root / "store-template.db"
    with open(str(template) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not template.is_file():
            import mlflow

            partial = root / "store-template.partial.db"
            mlflow.MlflowClient(tracking_uri=f"sqlite:///{partial}").search_experiments()  # runs the migrations
            partial.replace(template)
    os.environ[TEMPLATE_ENV] = str(template)
    return template



@pytest.fixture(autouse=True)
def isolated_state():
    """Fails a test that leaves the tracking settings, credentials, the harness's caches or fault rules, or mlflow's
    global tracking URI or active run changed (clitools.WATCHED; monkeypatch has undone its changes by now), and puts
    them back, so that the next test of the worker starts as this one did."""
    before = watched_state()
    yield
    leaked = undo_leaks(before)
    if leaked:
        pytest.fail(f"the test leaked state to the next ones: {leaked} (use monkeypatch, or an explicit URI)",
                    pytrace=False)
