"""Where a job runs: device choice, CPU threads, and the facts about the environment that runs record."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

from harness.core.errors import HarnessError
from harness.core.locks import file_lock

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


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


def why_no_cuda() -> str:
    """Why torch sees no CUDA device here, in torch's words where it has some: a CPU-only build, GPUs hidden by
    ``CUDA_VISIBLE_DEVICES``, no driver, or a driver older than the CUDA this torch was built for."""
    if torch.version.cuda is None:
        return "this torch is a CPU-only build"
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} hides every GPU"
    try:
        torch.cuda.init()
    except Exception as err:  # noqa: BLE001 - torch's own reason, whatever its type (RuntimeError, AssertionError)
        return " ".join(str(err).split())[:240] or type(err).__name__
    return "torch.cuda.is_available() is False"


def torch_build() -> str:
    """``torch 2.14.1+cu130 (built for CUDA 13.0)`` or ``torch 2.13.0+cpu (a CPU-only build)``."""
    built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return f"torch {torch.__version__} ({built})"


def gpu_problem(setting: str, expects_gpu: bool, what: str) -> str | None:
    """One line when a cell that expects a GPU (``what``: its preset) would run on the CPU: ``device=auto`` and no
    CUDA device here. It names what torch reports and the fixes; None when there is a GPU, the device is given, or
    the preset expects none."""
    if not expects_gpu or setting not in (None, "auto") or torch.cuda.is_available():
        return None
    return (f"{what} expects a GPU, but torch sees none ({torch_build()}; {why_no_cuda()}): on the CPU its cells take "
            "hours to days each. Set device=cpu to run it on the CPU anyway, or install a torch build for this "
            "machine's driver (nvidia-smi shows the CUDA version the driver takes; pip install torch from "
            "https://download.pytorch.org/whl/<cu1xx>).")


def planned_device(setting: str) -> str:
    """The device a job with this ``device`` setting will use here, for the dry run: ``cuda (NVIDIA H100 ...)``,
    ``cpu``."""
    try:
        device = select_device(setting)
    except HarnessError:
        return f"{setting} (not available here)"
    return f"{device} ({device_name(device)})" if device.type == "cuda" else "cpu"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (for honest wall times); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def configure_threads(threads: int | None, workers: int = 1) -> int:
    """Torch CPU threads: ``threads``, else a Slurm task's ``SLURM_CPUS_PER_TASK``, else this process's cores shared
    among ``workers`` (several 2-thread OpenMP processes on two shared cores collapse)."""
    if threads is None:
        allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = int(allocated) if allocated.isdigit() else max(1, cores // max(1, workers))
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


class Autocast(torch.nn.Module):
    """Runs the wrapped model under autocast (bf16/fp16) and returns float32, like the fp32 model does."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype, device_type: str):
        super().__init__()
        self.model, self.dtype, self.device_type = model, dtype, device_type

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model(x, t).float()


PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise HarnessError(f"Unknown precision {precision!r}: choose one of {PRECISIONS} (fp32 is the paper's).")
    return precision


def apply_precision(model: torch.nn.Module, precision: str, device: torch.device) -> torch.nn.Module:
    """fp32 (default, the paper's), tf32 (CUDA matmul/conv in TF32), bf16 or fp16 autocast. Off unless asked."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
    if precision in ("bf16", "fp16"):
        return Autocast(model, torch.bfloat16 if precision == "bf16" else torch.float16, device.type)
    return model


@contextmanager
def claimed_device(device: torch.device):
    """With ``device=auto`` and several GPUs, hold the first GPU no other local worker holds (a node-local lock per
    GPU), waiting while all are busy; an explicit device, or the CPU, as given."""
    if device.type != "cuda" or device.index is not None or torch.cuda.device_count() < 2:
        yield device
        return
    lock_dir = Path(tempfile.gettempdir()) / "ddim-harness-gpu-locks"
    while True:
        for index in range(torch.cuda.device_count()):
            uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", f"{socket.gethostname()}-{index}"))
            with file_lock(lock_dir / f"{uuid}.lock", wait=False) as held:
                if held is None:
                    continue
                torch.cuda.set_device(index)
                yield torch.device("cuda", index)
                return
        time.sleep(2.0)
