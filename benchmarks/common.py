"""Shared helpers for the benchmark scripts: devices, models, timing (warm-up, median of repeats, device
synchronisation), a plain-text table, and JSON results written with the facts about the machine.

Every script records ``os.getloadavg()`` when it starts and when it writes its JSON: a 1-minute load above the
number of cores means something else was running and the numbers are not to be trusted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
if str(ROOT) not in sys.path:  # the harness without installing it (e.g. on a bare GPU machine)
    sys.path.insert(0, str(ROOT))


# --- devices and models --------------------------------------------------------------------------------------------

def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {name}: CUDA is not available here (torch {torch.__version__}).")
    return device


def set_threads(threads: int | None) -> int:
    """Torch CPU threads: ``threads`` if given, else torch's default (which follows OMP_NUM_THREADS)."""
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def model_config(name: str) -> dict:
    """``conf/model/<name>.yaml`` as a plain dict (PyYAML only, so no Hydra/OmegaConf is needed)."""
    import yaml

    return yaml.safe_load((ROOT / "conf" / "model" / f"{name}.yaml").read_text())


def load_model(name: str, device: torch.device) -> tuple[torch.nn.Module, tuple[int, int, int], str]:
    """The U-Net of a model config in eval mode on ``device``: the digits model with its shipped weights, any other
    architecture with random weights (seed 0; speed does not depend on the weights). Returns (model, image shape,
    weights description)."""
    from harness.models.loading import load_checkpoint
    from harness.diffusion.unet import build_unet

    cfg = model_config(name)
    arch = cfg["architecture"]
    if name == "digits":
        model, info = load_checkpoint(cfg)
        weights = f"shipped ({Path(info['path']).name}, sha256 {info['sha256'][:12]})"
    else:
        torch.manual_seed(0)
        model, weights = build_unet(arch), "random (seed 0)"
    shape = (int(arch["in_channels"]), int(arch["resolution"]), int(arch["resolution"]))
    return model.to(device).eval(), shape, weights


# --- timing --------------------------------------------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fn: Callable, device: torch.device, repeats: int = 3, warmup: int = 1, setup: Callable[[], tuple] | None = None
) -> dict:
    """Wall time of ``fn(*setup())``: ``warmup`` untimed calls, then the median (and min, max, all) of ``repeats``
    timed ones, synchronising the device around each. ``setup`` runs untimed before every call."""
    times = []
    for i in range(warmup + repeats):
        args = setup() if setup is not None else ()
        sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            fn(*args)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "times_s": times}


# --- output --------------------------------------------------------------------------------------------------------

def print_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]], title: str | None = None) -> None:
    """``columns``: (key, header, format spec); a missing value prints as '-'."""
    cells = [[format(r[k], f) if r.get(k) is not None else "-" for k, _, f in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, (_, h, _) in enumerate(columns)]
    if title:
        print(f"\n{title}")
    print("  ".join(h.rjust(w) for (_, h, _), w in zip(columns, widths)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_tag(device: torch.device) -> str:
    """``cpu``, or ``cuda-<gpu name>`` (e.g. cuda-nvidia-h100-80gb-hbm3): the suffix of the JSON file's name."""
    if device.type != "cuda":
        return device.type
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def machine_info(device: torch.device) -> dict:
    info = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "host": platform.node(),
        "git_commit": _git_commit(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return info


class Bench:
    """One benchmark run: records the load average when created; ``write`` adds it again with the machine facts."""

    def __init__(self, name: str, args: argparse.Namespace):
        self.name, self.args = name, args
        self.loadavg_before = os.getloadavg()
        self.started = datetime.datetime.now(datetime.timezone.utc)

    def write(self, device: torch.device, results: dict, out_dir: str | Path | None = None) -> Path:
        payload = {
            "benchmark": self.name,
            "date": self.started.isoformat(timespec="seconds"),
            "seconds": round((datetime.datetime.now(datetime.timezone.utc) - self.started).total_seconds(), 1),
            "command": shlex.join(["python", *sys.argv]),
            "cwd": relative_cwd(),
            "options": vars(self.args),
            "loadavg_before": list(self.loadavg_before),
            "loadavg_after": list(os.getloadavg()),
            "machine": machine_info(device),
            "results": results,
        }
        folder = Path(out_dir) if out_dir else RESULTS
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}-{device_tag(device)}.json"
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"\nload average before {fmt_load(self.loadavg_before)}, after {fmt_load(payload['loadavg_after'])} "
              f"({os.cpu_count()} cores, {torch.get_num_threads()} torch threads); wrote {path}")
        return path


def relative_cwd() -> str:
    """The working directory relative to the repository root (results carry no absolute paths)."""
    cwd = Path.cwd().resolve()
    return str(cwd.relative_to(ROOT)) if cwd.is_relative_to(ROOT) else "(outside the repository)"


def fmt_load(load: Sequence[float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:<i>")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, i.e. OMP_NUM_THREADS)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up calls before the repeats")
    parser.add_argument("--out", default=None, help=f"folder for the JSON (default {RESULTS})")
    return parser
