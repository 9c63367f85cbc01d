"""The tests' shared helpers: the command line in a subprocess against a private folder, store and cache (harness,
start_harness, TINY), the store read by an explicit URI (runs, store_client), polling with a hang guard (wait_until,
wait_for_shards), private caches, figures read for their content, and the leak guard conftest runs around each test."""

import contextlib
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking._tracking_service import utils as mlflow_tracking

from harness.core.faults import ENV as FAULTS_ENV

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_ENV = "HARNESS_TEST_STORE_TEMPLATE"  # the empty migrated store of this test run (conftest.store_template)


def new_store(db: Path) -> Path:
    """``db`` as a copy of the session's empty migrated store (conftest.store_template) unless it exists (outside
    pytest, without a template, the harness creates it)."""
    if not db.exists() and TEMPLATE_ENV in os.environ:
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(os.environ[TEMPLATE_ENV], db)
    return db


HANG = 900  # s: a guard against a test that hangs, not a limit on how fast the harness is (the cores may be loaded)
TINY = ["N=8", "repeats=1", "batch_size=4", "S=3", "job.grid_images=8"]  # a digits cell of seconds on one core


@pytest.fixture
def private_caches(tmp_path, monkeypatch):
    """The harness's caches (reference features, verified weights, digests) and torch's under ``tmp_path``: no test
    reads what another wrote. A test module takes it with ``pytestmark = pytest.mark.usefixtures("private_caches")``
    (conftest imports it)."""
    monkeypatch.setenv("DDIM_HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def harness_env(folder: Path, faults=None, env=None) -> dict:
    """The environment of ``python -m harness`` run in ``folder``: this one's, with the caches under ``folder``, one
    thread, no tracking URI of the caller's; ``faults``: rules for the fault seam (harness.core.faults); ``env``:
    variables to add."""
    env = dict(os.environ, DDIM_HARNESS_CACHE=str(folder / "cache"), OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0",
               **(env or {}))
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop(FAULTS_ENV, None)
    if faults:
        env[FAULTS_ENV] = faults
    return env


def harness_command(folder: Path, *args, entry=("-m", "harness")) -> list:
    """``python -m harness <flags> output_root=folder/out progress=false <overrides>`` (Hydra wants flags first; a later
    ``output_root=`` in ``args`` wins); ``entry``: what python runs instead of ``-m harness`` (a script wrapping it)."""
    flags = [a for a in args if a.startswith("-")]
    overrides = [a for a in args if not a.startswith("-")]
    return [sys.executable, *entry, *flags, f"output_root={folder / 'out'}", "progress=false", *overrides]


def harness(tmp_path, *args, check=True, template=True, faults=None, entry=("-m", "harness"), env=None):
    """``python -m harness ...`` in ``tmp_path`` (harness_command, harness_env), waited for; its store
    ``tmp_path/mlflow.db`` (from the template if new, unless ``template=False``: then the harness creates it)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    if template:
        new_store(tmp_path / "mlflow.db")
    cmd = harness_command(tmp_path, *args, entry=entry)
    proc = subprocess.run(cmd, cwd=tmp_path, env=harness_env(tmp_path, faults, env), capture_output=True, text=True,
                          timeout=HANG)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def start_harness(tmp_path, *args, template=True, faults=None, env=None, **popen) -> subprocess.Popen:
    """``python -m harness ...`` as ``harness()`` runs it, started and not waited for, its output in pipes; ``popen``:
    more arguments of Popen (start_new_session=True: its own process group)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    if template:
        new_store(tmp_path / "mlflow.db")
    return subprocess.Popen(harness_command(tmp_path, *args), cwd=tmp_path, env=harness_env(tmp_path, faults, env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    """A started process waited for (a hang guard, not a time limit), as ``harness()`` returns it."""
    out, err = proc.communicate(timeout=HANG)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_until(ready, what: str, procs=(), timeout: float = HANG, every: float = 0.05) -> None:
    """Poll ``ready()`` until it is true; AssertionError naming ``what`` if a process of ``procs`` (Popen) ends first
    (with its output) or after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not ready():
        for proc in procs:
            if proc.poll() is not None:
                out, err = proc.communicate() if proc.stdout else ("", "")
                raise AssertionError(f"process {proc.pid} ended ({proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f} s")
        time.sleep(every)


def shards(folder: Path) -> list:
    """The sample shards under ``folder/out`` (harness_command's output_root), of every cell."""
    return list((folder / "out").glob("images/*/*.pt"))


def wait_for_shards(folder: Path, procs=(), cells: int = 1) -> None:
    """Until ``cells`` cells under ``folder`` have written a shard (each is then mid-sampling, its run RUNNING)."""
    wait_until(lambda: len({p.parent for p in shards(folder)}) >= cells, f"a shard of {cells} cell(s)", procs)


def process_state(pid: int) -> str:
    """Linux's state letter of process ``pid`` (R, S, T stopped, Z zombie), "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return ""


def store_uri(folder: Path) -> str:
    """The URI of ``folder/mlflow.db``, the store ``harness()`` gives a run in ``folder``."""
    return f"sqlite:///{Path(folder) / 'mlflow.db'}"


def store_client(folder: Path) -> mlflow.MlflowClient:
    """A client of ``folder``'s store by its explicit URI: never mlflow's global tracking URI, which would outlive the
    test in its worker (and reach the subprocesses of later tests through MLFLOW_TRACKING_URI)."""
    return mlflow.MlflowClient(tracking_uri=store_uri(folder))


def runs(folder: Path, experiment: str = "ddim-harness") -> pd.DataFrame:
    """Every run of ``experiment`` in ``folder``'s store, one row each, in the columns of ``mlflow.search_runs``
    (run_id, status, start_time, ..., ``params.*``, ``metrics.*``, ``tags.*``), read by ``store_client(folder)``."""
    c = store_client(folder)
    exp = c.get_experiment_by_name(experiment)
    found, token = [], None
    while exp is not None:
        page = c.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        found += page
        token = page.token
        if not token:
            break
    rows = [{"run_id": r.info.run_id, "experiment_id": r.info.experiment_id, "status": r.info.status,
             "artifact_uri": r.info.artifact_uri, "start_time": pd.to_datetime(r.info.start_time, unit="ms", utc=True),
             "end_time": pd.to_datetime(r.info.end_time, unit="ms", utc=True),
             **{f"metrics.{k}": v for k, v in r.data.metrics.items()},
             **{f"params.{k}": v for k, v in r.data.params.items()},
             **{f"tags.{k}": v for k, v in r.data.tags.items()}} for r in found]
    df = pd.DataFrame(rows, columns=["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
                      if not rows else None)
    text = [c for c in df.columns if c.startswith(("params.", "tags."))]
    df[text] = df[text].astype(object).where(df[text].notna(), None)  # as mlflow.search_runs: None, not NaN
    return df


def cells(*overrides):
    """The Cells a command line would run, composed in this process (no subprocess, no work): as the sweep's
    pre-check builds them."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from harness.sweep.plan import plan

    with initialize_config_module(config_module="harness.conf", version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        config = hydra.compose_config("config", list(overrides), run_mode=RunMode.MULTIRUN)
        params = config.hydra.sweeper.get("params")
        return [job.cell for job in plan(config, hydra.config_loader, config.hydra.overrides.task, params)]


@contextlib.contextmanager
def local_server(handler):
    """An HTTP server on 127.0.0.1 (a free port) answering with ``handler`` in a thread; yields its base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


# What a test may not leave to the next test of its worker (and to their subprocesses): where runs go and as whom, the
# harness's caches, data and fault rules, which devices torch sees, the Hub's offline switch (conftest.isolated_state).
WATCHED = re.compile(rf"MLFLOW_TRACKING_\w+|MLFLOW_EXPERIMENT_\w+|MLFLOW_RUN_ID|DDIM_HARNESS_\w+|{FAULTS_ENV}"
                     r"|HF_HUB_OFFLINE|HF_HOME|HF_HUB_CACHE|TORCH_HOME|XDG_CACHE_HOME|CUDA_VISIBLE_DEVICES")
GLOBAL_URI, ACTIVE_RUN = "mlflow's global tracking URI", "mlflow's active run"


def watched_state() -> dict:
    state = {k: v for k, v in os.environ.items() if WATCHED.fullmatch(k)}
    state[GLOBAL_URI] = mlflow_tracking._tracking_uri  # what mlflow.set_tracking_uri sets (None: never set)
    state[ACTIVE_RUN] = mlflow.active_run() and mlflow.active_run().info.run_id
    return state


def undo_leaks(before: dict) -> str:
    """Puts back what changed since ``before`` (a ``watched_state()``); says what it was, "" if nothing."""
    after = watched_state()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    for key in changed:
        if key in (GLOBAL_URI, ACTIVE_RUN):
            continue
        if key in before:
            os.environ[key] = before[key]
        else:
            os.environ.pop(key)
    while mlflow.active_run() and mlflow.active_run().info.run_id != before[ACTIVE_RUN]:
        mlflow.end_run()
    mlflow_tracking._tracking_uri = before[GLOBAL_URI]
    return "; ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in changed)


@contextlib.contextmanager
def unavailable_server():
    """A local HTTP server that answers every request 503 (a tracking server that is down behind its proxy); yields
    its base URL and the list of the paths it was asked for, so that a test counts MLflow's retries, not seconds."""
    asked = []

    class Unavailable(http.server.BaseHTTPRequestHandler):
        def answer(self):
            asked.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PATCH = do_DELETE = answer

        def log_message(self, *args):
            pass

    with local_server(Unavailable) as url:
        yield url, asked


def coloured_pixels(png: Path) -> int:
    """How many pixels of ``png`` are coloured (saturated: not white, grey or black): the data a plot draws in
    matplotlib's colour cycle, not its frame, ticks, text or grey reference lines. 0 for a figure that drew nothing."""
    from matplotlib.image import imread

    rgb = imread(png)[..., :3].astype(float)
    return int(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.25).sum())


def drawn_figures(monkeypatch) -> list:
    """The matplotlib Figures saved from now on in this process (each saved once per file: the list may repeat one),
    so that a test reads the data a figure plotted from its axes."""
    from matplotlib.figure import Figure

    saved, save = [], Figure.savefig

    def recording(fig, *args, **kwargs):
        if not saved or saved[-1] is not fig:
            saved.append(fig)
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    return saved
