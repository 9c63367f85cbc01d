"""Run artifacts the figures are drawn from: a sample run's ``samples.png`` and the newest finished figures job's
``figures.npz`` / ``figures.json``. Read in place from a local artifact store, else downloaded through MLflow."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


def fetch(uri: str, run: pd.Series, name: str, tmp: Path) -> Path | None:
    """The run's artifact ``name``, or None when it has none (or the artifact store cannot be reached)."""
    location = run.get("artifact_uri")
    if isinstance(location, str) and location.startswith("file:"):
        local = Path(unquote(urlparse(location).path)) / name
        if local.is_file():
            return local
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run["run_id"], artifact_path=name,
                                                        dst_path=str(tmp / run["run_id"]), tracking_uri=uri))
    except Exception as err:  # a run without the artifact, an unreachable artifact store
        log.debug("no %s for run %s: %s", name, run["run_id"], err)
        return None


def figures_images(uri: str, runs: pd.DataFrame, tmp: Path) -> tuple[pd.Series, dict, dict] | None:
    """(run, images, settings) of the newest figures run with both artifacts, or None."""
    for _, run in runs[runs["job"] == "figures"].sort_values("start_time", ascending=False).iterrows():
        arrays, settings = fetch(uri, run, "figures.npz", tmp), fetch(uri, run, "figures.json", tmp)
        if arrays is not None and settings is not None:
            with np.load(arrays) as data:
                return run, {k: data[k] for k in data.files}, json.loads(settings.read_text())
    return None
