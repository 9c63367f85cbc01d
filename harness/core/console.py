"""What the console shows: the harness's own lines always, third-party chatter (MLflow, alembic, torch-fidelity,
urllib3) only with ``verbose=true``."""

from __future__ import annotations

import logging
import os


def configure_console(verbose: bool) -> None:
    """Third-party chatter off unless verbose."""
    level = logging.INFO if verbose else logging.WARNING
    os.environ["MLFLOW_LOGGING_LEVEL"] = logging.getLevelName(level)  # read when mlflow is imported
    for name in ("mlflow", "alembic", "torch_fidelity", "urllib3"):
        logging.getLogger(name).setLevel(level)
    if verbose:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.INFO)
