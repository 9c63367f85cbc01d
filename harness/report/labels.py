"""How the report spells datasets and numbers."""

from __future__ import annotations

import math
import re
from pathlib import Path
from urllib.parse import urlsplit

DASH = "-"
DATASET_NAMES = {
    "digits": "digits 8x8",
    "cifar10": "CIFAR-10",
    "celeba": "CelebA",
    "lsun_bedroom": "LSUN Bedroom",
    "lsun_church": "LSUN Church",
}


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


def fmt_number(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def store_name(uri: str) -> str:
    """The tracking store as a report may show it: a SQLite file relative to the working directory (else by file
    name), a server without user or password."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        try:
            return "sqlite:///" + path.resolve().relative_to(Path.cwd().resolve()).as_posix()
        except ValueError:
            return f"sqlite:///.../{path.name}"
    parts = urlsplit(uri)
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl() \
        if parts.hostname else uri


def file_stem(name: str) -> str:
    """A name safe as part of a file name (a dataset called 'mnist/32' gives 'mnist_32')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "unnamed"
