"""A cell is one job of a sweep: (job, dataset, model, S, eta, trajectory, N, seed). Validation and identity.

Every check here runs before any heavy work; a failing one raises a HarnessError that names the fix.
The cell key is a hash of every setting that determines a cell's result (not batch size, device or threads,
which do not change the images), so a re-run of a sweep can find cells that already finished and the
sample shards of a cell that was interrupted.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .errors import HarnessError
from .eta import eta_label, parse_eta
from .runtime import check_precision
from .trajectory import timesteps

JOBS = ("sample", "recon", "timing")


def _int(name: str, value: Any, minimum: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise HarnessError(f"{name} must be an integer >= {minimum}, got {value!r}. {fix}")
    return value


def check_cell(cfg: DictConfig) -> None:
    """Validate the swept and sized settings of one cell (cheap; before loading anything)."""
    timesteps(cfg.trajectory, cfg.S, int(cfg.diffusion.T))  # a known trajectory and 1 <= S <= T
    parse_eta(cfg.eta)
    _int("N", cfg.N, 2, "FID needs at least 2 samples (the paper used 50,000).")
    _int("batch_size", cfg.batch_size, 1, "Set batch_size=<images per network call>.")
    _int("seed", cfg.seed, 0, "Set seed=<non-negative integer>.")
    arch, data = cfg.model.architecture, cfg.dataset
    if (int(arch.in_channels), int(arch.resolution)) != (int(data.channels), int(data.image_size)):
        raise HarnessError(
            f"model={cfg.model.name} takes {arch.in_channels}x{arch.resolution}x{arch.resolution} images but "
            f"dataset={data.name} has {data.channels}x{data.image_size}x{data.image_size}; choose model={data.name} "
            "(or the model trained on it)."
        )
    check_precision(cfg.precision)
    if cfg.job.name not in JOBS:
        raise HarnessError(f"Unknown job {cfg.job.name!r}: choose job= one of {JOBS}.")


def run_name(cfg: DictConfig) -> str:
    return f"{cfg.dataset.name} {cfg.job.name} S={cfg.S} eta={eta_label(cfg.eta)} {cfg.trajectory}"


# Settings that say where things are or how fast they run, not what the result is.
NOT_IDENTITY = {"dataset": ("root",), "fid": ("weights_path", "batch_size"), "job": ("grid_images", "grid_scale")}


def _section(cfg: DictConfig, name: str) -> dict:
    values = OmegaConf.to_container(cfg[name], resolve=True)
    return {k: v for k, v in values.items() if k not in NOT_IDENTITY.get(name, ())}


def identity(cfg: DictConfig) -> dict:
    """The settings that determine a cell's result."""
    return {
        "job": _section(cfg, "job"),
        "dataset": _section(cfg, "dataset"),
        "model": _section(cfg, "model"),
        "fid": _section(cfg, "fid"),
        "diffusion": OmegaConf.to_container(cfg.diffusion, resolve=True),
        "S": int(cfg.S),
        "eta": eta_label(cfg.eta),
        "trajectory": cfg.trajectory,
        "N": int(cfg.N),
        "seed": int(cfg.seed),
        "precision": cfg.precision,
    }


def cell_key(cfg: DictConfig) -> str:
    blob = json.dumps(identity(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def swept_params(cfg: DictConfig, nfe: int) -> dict:
    """The flat MLflow params of a cell: every swept key plus trajectory, NFE, N, seed."""
    return {
        "job": cfg.job.name,
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "checkpoint": cfg.model.checkpoint.path or cfg.model.checkpoint.name,
        "ema": bool(cfg.model.checkpoint.ema),
        "S": int(cfg.S),
        "eta": eta_label(cfg.eta),
        "trajectory": cfg.trajectory,
        "nfe": nfe,
        "N": int(cfg.N),
        "seed": int(cfg.seed),
        "batch_size": int(cfg.batch_size),
        "T": int(cfg.diffusion.T),
        "precision": cfg.precision,
    }


def nfe_of(cfg: DictConfig) -> int:
    return len(timesteps(cfg.trajectory, int(cfg.S), int(cfg.diffusion.T)))
