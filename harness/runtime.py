"""Where a job runs: device choice, CPU threads, and the facts about the environment that runs record."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

from .errors import HarnessError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else the CPU. ``cuda``, ``cuda:1`` or ``cpu`` are taken as given."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise HarnessError(f"Unknown device {name!r}: use auto, cpu, cuda or cuda:<index>.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HarnessError(f"device={name} was asked for but CUDA is not available here; use device=auto or device=cpu.")
    return device


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def configure_threads(threads: int | None, workers: int = 1) -> int:
    """Torch CPU threads for this process: ``threads`` if given, else the cores shared among ``workers``.

    Several 2-thread OpenMP processes on two shared cores collapse, so parallel workers get one thread each.
    """
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    torch.set_num_threads(int(threads))
    return int(threads)


@lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for dist in ("ddim-harness", "torch", "torchvision", "torch-fidelity", "hydra-core", "mlflow", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    versions["python"] = platform.python_version()
    return versions
