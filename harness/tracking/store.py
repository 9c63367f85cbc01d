"""MLflow at the edge: the tracking store (SQLite ``mlflow.db`` by default; ``tracking.uri`` or ``$MLFLOW_TRACKING_URI``),
one run per cell under a sweep's parent run, and orphan runs. A store that cannot be used is one HarnessError within
about 30 s (MLflow's HTTP retries bounded). MLflow is imported inside the functions that open a store: it takes seconds."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.core import processes
from harness.core.errors import HarnessError
from harness.core.files import full_disk
from harness.core.names import Tag
from harness.tracking import sqlite as sqlite_store
from harness.tracking.credentials import split_credentials

log = logging.getLogger(__name__)

EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # MLflow 3 then opens the experiment on its runs
ENTRY_POINT = "python -m harness"
VIEW = json.loads((Path(__file__).parent / "runs_view.json").read_text())  # the MLflow UI's saved view of the runs
_HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``mlflow.db`` in the working directory (absolute, so parallel
    workers agree); without user or password (harness.tracking.credentials), so it can be shown and recorded."""
    uri = split_credentials(uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(sqlite_store.sqlite_path(uri).resolve())
    if uri.startswith(("./", "/", "file:")) or uri.rstrip("/").endswith("mlruns"):
        raise HarnessError(
            f"Tracking URI {uri!r} is a file store, which MLflow 3 rejects. Use SQLite, e.g. tracking.uri=sqlite:///mlflow.db, "
            "or an MLflow server (http://host:5000)."
        )
    return uri


def store_of(config) -> tuple[str, str]:
    """(the store URI resolved as ``tracking_uri`` does, the experiment) of a run's or a sweep's config."""
    return tracking_uri(config.tracking.get("uri")), str(config.tracking.experiment)


def shown_uri(uri: str) -> str:
    """A store URI as reports and messages show it: an SQLite file relative to the working directory (else by file
    name), a server without user or password."""
    if (path := sqlite_store.sqlite_path(uri)) is not None:
        try:
            return "sqlite:///" + path.resolve().relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            return f"sqlite:///.../{path.name}"
    parts = urlsplit(uri)
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl() \
        if parts.hostname else uri


# Where a user points the harness at a store: what the messages below name as the fix.
STORE_SETTING = "tracking.uri (python -m harness), --tracking-uri (the report) or MLFLOW_TRACKING_URI"
EXPERIMENT_SETTING = "tracking.experiment=<another name>"  # the report's is --experiment NAME


def store_folder(uri: str) -> str:
    """Where an SQLite store's bytes go (the database's folder), as messages show it; a server's own disk else."""
    path = sqlite_store.sqlite_path(uri)
    return str(path.parent) if path else f"the disk of the server {shown_uri(uri)}"


def check_active(found, uri: str, setting: str = EXPERIMENT_SETTING) -> None:
    """HarnessError naming the fix when ``found`` (an MLflow Experiment) was deleted: MLflow keeps a deleted
    experiment's name and refuses new runs in it, and hides its runs."""
    if found is not None and found.lifecycle_stage == "deleted":
        where = f"MLFLOW_TRACKING_URI={_runnable_uri(uri)} "
        raise HarnessError(
            f"The experiment {found.name!r} (id {found.experiment_id}) in {shown_uri(uri)} was deleted: restore it "
            f"({where}mlflow experiments restore --experiment-id {found.experiment_id}, or "
            f"MlflowClient().restore_experiment('{found.experiment_id}')), or use another: {setting}.")


@contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """Turn any failure to use the store into one HarnessError naming the store and the fix."""
    try:
        yield
    except HarnessError:
        raise
    except Exception as err:  # sqlalchemy.exc.DatabaseError, MlflowException, requests' ConnectionError, ...
        text = str(err)
        if uri.startswith(("http://", "https://")) and any(w in text for w in ("Max retries", "ConnectionError", "imed out")):
            why = next((w for w in ("Connection refused", "timed out", "Name or service not known", "No route to host",
                                    "Network is unreachable") if w in text), "no answer")
            raise HarnessError(f"Cannot reach the tracking server {shown_uri(uri)} ({why}, after MLflow's retries): is the "
                               f"server running and reachable? Start it (mlflow server ...) or fix {STORE_SETTING}.") from None
        first = (text.strip().splitlines() or [type(err).__name__])[0][:300]
        if full_disk(err):
            raise HarnessError(f"no space left on {store_folder(uri)} (the tracking store {shown_uri(uri)}: {first}): "
                               f"free space there, or point {STORE_SETTING} at a store on another disk.") from None
        if uri.startswith("sqlite:") and "readonly database" in text:
            raise HarnessError(f"The tracking store {shown_uri(uri)} is read-only ({first}): make the database and its "
                               f"folder writable, or point {STORE_SETTING} at a writable store.") from None
        fix = (f"is it an MLflow SQLite database? Move it aside to start a new store, or point {STORE_SETTING} at the "
               "right one" if uri.startswith("sqlite:") else
               f"is the server running and reachable? Start it (mlflow server ...) or fix {STORE_SETTING}")
        raise HarnessError(f"Cannot use the tracking store {shown_uri(uri)} ({type(err).__name__}: {first}): {fix}.") from None


def client(uri: str):
    for key, value in _HTTP_LIMITS.items():
        os.environ.setdefault(key, value)
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # its "View run" lines: the harness prints its own
    if os.environ.get("MLFLOW_LOGGING_LEVEL", "").upper() not in ("INFO", "DEBUG"):  # verbose=true keeps them
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # retry warnings: the error says it once
        # its traceback of every database error (a full disk, a locked file): store_errors says it in one line
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    import mlflow

    if (path := sqlite_store.sqlite_path(uri)) is not None:
        if path.is_file() and path.stat().st_size and _header(path) != b"SQLite format 3\x00":
            raise HarnessError(f"The tracking store {shown_uri(uri)} is not an SQLite database: move it aside to start a "
                               f"new store, or point {STORE_SETTING} at the right one.")
        sqlite_store.ready(uri, shown_uri(uri), STORE_SETTING)  # created or migrated under its lock, once per process
    return mlflow.MlflowClient(tracking_uri=uri)


def _header(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(16)


def _artifact_location(uri: str) -> str | None:
    """Artifacts beside a SQLite database (``mlartifacts/``); a server chooses its own."""
    path = sqlite_store.sqlite_path(uri)
    return (path.parent / "mlartifacts").as_uri() if path else None


def experiment_tags() -> dict[str, str]:
    """What the MLflow UI reads from an experiment's tags: its kind (custom model development: runs, not GenAI
    traces; MLflow 3.17's UI takes the page from its own GenAI/Model training switch instead, see view_link), its
    primary metric (the first chart of the chart view), and a saved view of the runs table with the cells' settings
    and headline metrics as columns and run names uncut (the table itself shows no metric until one is ticked; MLflow
    keeps that choice per browser, so a saved view is the one way a store can offer columns)."""
    now = int(time.time() * 1000)
    state = {"selectedColumns": VIEW["columns"], "columnOrder": VIEW["order"], "columnWidths": VIEW["widths"],
             "orderByKey": "attributes.start_time", "orderByAsc": False}
    view = {"name": f"DDIM cells: {VIEW['headline_metric']} by S and eta", "createdAt": now, "updatedAt": now,
            "state": json.dumps(state)}
    return {**EXPERIMENT_KIND, "mlflow.experiment.primaryMetric.name": VIEW["headline_metric"],
            "mlflow.experiment.primaryMetric.greaterIsBetter": "False",
            f"mlflow.sharedViewState.{VIEW['key']}": json.dumps(view)}


def _runnable_uri(uri: str) -> str:
    """A store URI for a command the user runs: an SQLite file outside the working directory by its whole path."""
    if (path := sqlite_store.sqlite_path(uri)) is not None:
        path = path.resolve()
        if not path.is_relative_to(Path.cwd().resolve()):
            return f"sqlite:///{path.as_posix()}"
    return shown_uri(uri)


def view_link(uri: str, exp_id: str) -> str:
    """Where to look at the runs: the experiment's saved view in the MLflow UI. MLflow 3.17's UI picks the experiment
    page (GenAI traces or the runs table) from a switch kept per browser, GenAI by default, not from the experiment's
    kind tag; ``workflowType=machine_learning`` in the link opens the runs table."""
    page = f"#/experiments/{exp_id}/runs?workflowType=machine_learning&viewStateShareKey={VIEW['key']}"
    if uri.startswith(("http://", "https://")):
        return f"{shown_uri(uri).rstrip('/')}/{page}"
    return f"mlflow ui --backend-store-uri {_runnable_uri(uri)}, then open http://127.0.0.1:5000/{page}"


def prepare_store(uri: str, experiment: str) -> str:
    """Create the database (schema migrations) and the experiment if needed, with the tags the MLflow UI reads
    (set where missing on an experiment made before them; never changed once there); return the experiment id."""
    from mlflow.exceptions import MlflowException

    if sqlite_store.sqlite_path(uri):  # a read-only store: one line now, not after MLflow's minutes of retries
        sqlite_store.writable(uri, shown_uri(uri), STORE_SETTING)
    with store_errors(uri):
        c = client(uri)
        for attempt in range(5):
            try:
                found = c.get_experiment_by_name(experiment)
                check_active(found, uri)
                if found is not None:
                    for key, value in experiment_tags().items():
                        if key not in found.tags:
                            c.set_experiment_tag(found.experiment_id, key, value)
                    return found.experiment_id
                return c.create_experiment(experiment, artifact_location=_artifact_location(uri), tags=experiment_tags())
            except MlflowException:  # another process created it meanwhile, or the database was busy
                if attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def experiment_id(uri: str, experiment: str) -> str | None:
    with store_errors(uri):
        found = client(uri).get_experiment_by_name(experiment)
    check_active(found, uri)
    return None if found is None else found.experiment_id


def newest_runs(uri: str, experiment: str, filter_string: str, max_results: int) -> list:
    """The experiment's runs that match ``filter_string`` (MLflow's search syntax), newest first (none when the
    experiment does not exist yet)."""
    exp = experiment_id(uri, experiment)
    if exp is None:
        return []
    with store_errors(uri):
        return list(client(uri).search_runs([exp], filter_string=filter_string,
                                            order_by=["attributes.start_time DESC"], max_results=max_results))


def newest_run(uri: str, experiment: str, filter_string: str) -> Any | None:
    return next(iter(newest_runs(uri, experiment, filter_string, 1)), None)


def finished_run(uri: str, experiment: str, cell_key: str) -> Any | None:
    """The newest FINISHED run of this cell (same key), or None."""
    return newest_run(uri, experiment, f"tags.{Tag.CELL_KEY} = '{cell_key}' and attributes.status = 'FINISHED'")


def reconcile_orphans(uri: str, experiment: str, cell_key: str | None = None) -> list[str]:
    """Mark KILLED the RUNNING runs started on this host by a process that no longer exists (``kill -9``, a crashed
    worker, a power cut); return their ids. Runs of other hosts are left alone (their processes cannot be seen), and
    so are runs with no ``pid`` tag: a cell's run while its parts sample (harness.run.parts). ``cell_key``: only the
    runs of that cell (what a single run reconciles before it starts)."""
    host = socket.gethostname()
    only = f" and tags.{Tag.CELL_KEY} = '{cell_key}'" if cell_key else ""

    def dead(run) -> str | None:
        pid = run.data.tags.get(Tag.PID, "")
        if pid.isdigit() and not processes.alive(int(pid)):
            return f"process {pid} on {host} ended without closing the run (killed or crashed); marked KILLED later"
        return None

    return [run.info.run_id for run in kill_dead_runs(uri, experiment, f" and tags.{Tag.HOST} = '{host}'{only}", dead)]


def kill_dead_runs(uri: str, experiment: str, where: str, dead: Callable[[Any], str | None]) -> list:
    """Mark KILLED, with ``dead(run)`` as their error, the experiment's RUNNING runs (``where``: more conditions)
    that ``dead`` finds dead; return them."""
    exp = experiment_id(uri, experiment)
    if exp is None:
        return []
    killed = []
    with store_errors(uri):
        c = client(uri)
        for run in c.search_runs([exp], filter_string=f"attributes.status = 'RUNNING'{where}", max_results=10_000):
            error = dead(run)
            if error:
                c.set_tag(run.info.run_id, Tag.ERROR, error)
                c.set_terminated(run.info.run_id, status="KILLED")
                killed.append(run)
    return killed


def slurm_job_id() -> str | None:
    """The Slurm task this process runs in, as squeue and sacct name it ("123_4" for an array task), or None."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def run_of_process(uri: str, experiment: str, pid: int) -> Any | None:
    """The newest run started on this host by process ``pid`` (a worker that died), or None."""
    return newest_run(uri, experiment, f"tags.{Tag.HOST} = '{socket.gethostname()}' and tags.{Tag.PID} = '{pid}'")


def source_tags(description: str) -> dict[str, str]:
    """MLflow's standard provenance tags, as its UI shows them."""
    from harness.core.runtime import git_commit  # lazy: brings torch: imported at every start, before any store is used

    return {"mlflow.source.name": ENTRY_POINT, "mlflow.source.type": "LOCAL",
            "mlflow.source.git.commit": git_commit(), "mlflow.note.content": description,
            "mlflow.user": os.environ.get("USER", "harness")}


class Run:
    """One MLflow run: params at the start, metrics and artifacts as they come, status at the end."""

    def __init__(self, uri: str, run_id: str):
        self.uri, self.run_id = uri, run_id
        self.client = client(uri)

    @classmethod
    def start(cls, uri: str, experiment: str, name: str, params: Mapping, tags: Mapping,
              parent_run_id: str | None = None, owned: bool = True) -> "Run":
        """A new RUNNING run, tagged with this host and, if ``owned``, this process (``pid``, which
        ``reconcile_orphans`` checks); a cell split into parts is owned by no one process while they sample."""
        experiment_id = prepare_store(uri, experiment)
        from mlflow.entities import Param

        tags = {k: str(v) for k, v in tags.items() if v is not None}
        tags[Tag.HOST] = socket.gethostname()
        if owned:
            tags[Tag.PID] = str(os.getpid())
            job = slurm_job_id()
            if job:  # a sweep marks the run KILLED when Slurm says this job ended (harness.sweep.slurm)
                tags[Tag.SLURM_JOB_ID] = job
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        with store_errors(uri):
            c = client(uri)
            run = c.create_run(experiment_id, run_name=name, tags=tags)
            try:
                items = [Param(k, str(v)) for k, v in params.items()]
                for i in range(0, len(items), 100):
                    c.log_batch(run.info.run_id, params=items[i : i + 100])
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM before the caller has the run: it cannot close it
                c.set_terminated(run.info.run_id, status="KILLED")
                raise
        return cls(uri, run.info.run_id)

    @classmethod
    def reopen(cls, uri: str, run_id: str, tags: Mapping) -> "Run":
        """A closed run RUNNING again, owned by this process (a preempted cell resumed in its run), with ``tags``."""
        run = cls(uri, run_id)
        with store_errors(uri):
            run.client.update_run(run_id, status="RUNNING")
            if Tag.ERROR in run.client.get_run(run_id).data.tags:
                run.client.delete_tag(run_id, Tag.ERROR)
            owner = {Tag.HOST: socket.gethostname(), Tag.PID: os.getpid(), Tag.SLURM_JOB_ID: slurm_job_id()}
            run.set_tags({**tags, **owner})
        return run

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Log metrics as they are; the names of those that are NaN or +-inf also go to the ``nonfinite_metrics`` tag,
        so a table can flag them per cell instead of showing a number (MLflow stores inf as +-1.8e308)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])
        bad = {m.key for m in items if not math.isfinite(m.value)}
        if bad:
            self._nonfinite = getattr(self, "_nonfinite", set()) | bad
            self.set_tags({Tag.NONFINITE_METRICS: ",".join(sorted(self._nonfinite))})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items() if v is not None])

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_dict(self, data: Mapping, name: str) -> None:
        self.client.log_dict(self.run_id, dict(data), name)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_dataset(self, name: str, digest: str, source: str, context: str = "reference") -> None:
        """An MLflow dataset input (what the UI's Dataset column shows): the reference the cell is scored against."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.exceptions import MlflowException

        dataset = Dataset(name=name, digest=digest[:36], source_type="harness", source=source)
        for attempt in range(3):  # parallel workers may insert the same dataset row at once: the loser retries
            try:
                self.client.log_inputs(self.run_id, datasets=[DatasetInput(dataset, [InputTag("mlflow.data.context", context)])])
                return
            except MlflowException:
                if attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def fail(self, err: BaseException) -> None:
        """FAILED, with the error message as a tag (and the whole text as an artifact)."""
        message = f"{type(err).__name__}: {err}"
        try:
            self.set_tags({Tag.ERROR: message[:5000]})
            self.log_text(message, "error.txt")
        finally:
            self.end("FAILED")

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)
