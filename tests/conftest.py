"""One torch thread per test process: the suite runs on two xdist workers (README: pytest -n 2), and two 2-thread
OpenMP pools on 2 cores collapse. Subprocesses the tests start inherit OMP_NUM_THREADS."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

torch.set_num_threads(1)


import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

TEMPLATE_ENV = "HARNESS_TEST_STORE_TEMPLATE"


@pytest.fixture(scope="session", autouse=True)
def store_template(tmp_path_factory):
    """An empty MLflow SQLite store with its schema migrated, made once for all xdist workers: a test's new store
    starts as a copy of it (tests/clitools.new_store), as creating the schema takes seconds per store. The tests
    that check store creation itself (concurrent first use, nothing written on bad input) start without one."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root  # shared by the workers of one run
    template = root / "store-template.db"
    with FileLock(str(template) + ".lock"):
        if not template.is_file():
            import mlflow

            partial = root / "store-template.partial.db"
            mlflow.MlflowClient(tracking_uri=f"sqlite:///{partial}").search_experiments()  # runs the migrations
            partial.replace(template)
    os.environ[TEMPLATE_ENV] = str(template)
    return template
