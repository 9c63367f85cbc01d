"""Credentials in a tracking URI (``http://alice:s3cret@host:5000``) never leave the process: ``split_credentials``
moves them into MLflow's ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, and ``redact``/``redacted``/``redact_file`` strike
them from what the harness records (configs, command lines, job names)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

USER_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*\\?://)[^/\s@'\"]+@")  # Hydra writes \: in overrides


def split_credentials(uri: str) -> str:
    """``uri`` without user and password; those go to MLflow's environment variables (inherited by worker
    processes), where MLflow's HTTP client reads them."""
    parts = urlsplit(uri)
    if not parts.scheme.startswith("http") or "@" not in parts.netloc:
        return uri
    if parts.username:
        os.environ[USER_ENV] = unquote(parts.username)
    if parts.password is not None:
        os.environ[PASSWORD_ENV] = unquote(parts.password)
    return redact(uri)


def redact(text: str) -> str:
    """``text`` with the ``user:password@`` of every URL in it removed."""
    return _USERINFO.sub(r"\g<scheme>", text)


def redact_file(path: Path) -> str:
    """Strike the credentials from a file Hydra saved (its configs), in place; return its text."""
    text = path.read_text()
    if redact(text) != text:
        path.write_text(redact(text))
    return redact(text)


def redacted(data: Any) -> Any:
    """A copy of a config (nested mappings and lists) with every string redacted."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, Mapping):
        return {k: redacted(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redacted(v) for v in data]
    return data
