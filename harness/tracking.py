"""MLflow at the edge: the tracking store, one run per cell, and the Hydra callback that prepares the store.

The default store is SQLite (``sqlite:///mlflow.db`` in the working directory; MLflow 3 rejects the old ``./mlruns``
file store). ``MLFLOW_TRACKING_URI`` or ``tracking.uri`` point elsewhere, e.g. an ``mlflow server`` for clusters.
Parallel workers must not race to create the database or the experiment, so both are created once before any
job starts (``PrepareTrackingStore``, a Hydra callback).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from .errors import HarnessError

log = logging.getLogger(__name__)


def tracking_uri(tracking_cfg: Mapping | None = None) -> str:
    """``tracking.uri`` if set, else ``$MLFLOW_TRACKING_URI``, else SQLite ``mlflow.db`` in the working directory."""
    uri = (tracking_cfg or {}).get("uri") if tracking_cfg is not None else None
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        uri = "sqlite:///" + str(Path("mlflow.db").resolve())
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())  # absolute, so workers agree
    if uri.startswith(("./", "/")) or uri.endswith("mlruns"):
        raise HarnessError(
            f"Tracking URI {uri!r} is a file store, which MLflow 3 rejects. Use SQLite, e.g. tracking.uri=sqlite:///mlflow.db, "
            "or an MLflow server (http://host:5000)."
        )
    return uri


def _artifact_location(uri: str) -> str | None:
    """Artifacts beside a SQLite database (``mlartifacts/``); a server chooses its own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    return None


def prepare_store(uri: str, experiment: str) -> str:
    """Create the database (schema migrations) and the experiment if needed; return the experiment id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=uri)
    for attempt in range(5):
        try:
            found = client.get_experiment_by_name(experiment)
            if found is not None:
                return found.experiment_id
            return client.create_experiment(experiment, artifact_location=_artifact_location(uri))
        except MlflowException as err:  # another process created it meanwhile, or the database was busy
            if attempt == 4:
                raise HarnessError(f"Could not prepare the MLflow store {uri}: {err}") from err
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def finished_run(uri: str, experiment: str, cell_key: str) -> Any | None:
    """The newest FINISHED run of this cell (same resolved settings), or None."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.cell_key = '{cell_key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def _flatten(prefix: str, value: Any, out: dict) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


class CellRun:
    """One MLflow run for one cell: params at the start, metrics and artifacts as they come, status at the end."""

    def __init__(self, uri: str, experiment: str, run_name: str, params: Mapping, tags: Mapping):
        import mlflow

        self.mlflow = mlflow
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        experiment_id = prepare_store(uri, experiment)
        flat: dict = {}
        _flatten("", params, flat)
        self.run = self.client.create_run(experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
        self.run_id = self.run.info.run_id
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_dict(self, data: Mapping, name: str) -> None:
        self.client.log_dict(self.run_id, dict(data), name)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


class PrepareTrackingStore(Callback):
    """Hydra callback: create the tracking database and experiment once, before any job (and any worker) starts."""

    def _prepare(self, config: DictConfig) -> None:
        uri = tracking_uri(config.get("tracking"))
        prepare_store(uri, config.tracking.experiment)

    def on_run_start(self, config: DictConfig, **_: Any) -> None:
        from .cells import check_cell
        from .errors import HarnessError

        try:
            check_cell(config)  # bad input is reported by the job itself, before any store is created
        except HarnessError:
            return
        self._prepare(config)

    def on_multirun_start(self, config: DictConfig, **_: Any) -> None:
        self._prepare(config)
