"""One cell from start to end: validate, skip if already finished, run the job, track it, print one line."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from . import cells, tracking
from .jobs import figures, recon, sample, timing
from .jobs.context import CellContext
from .runtime import claimed_device, configure_threads, device_name, git_commit, package_versions, select_device

log = logging.getLogger(__name__)

JOB_RUNNERS = {"sample": sample.run, "recon": recon.run, "timing": timing.run, "figures": figures.run}


def _workers() -> int:
    """How many jobs of this sweep run at once on this machine (1 outside a parallel multirun)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return 1
        n_jobs = hc.launcher.get("n_jobs")
        return int(n_jobs) if n_jobs and int(n_jobs) > 0 else 1
    except (ValueError, ImportError, AttributeError):
        return 1


def run_cell(cfg: DictConfig, output_dir: Path | None = None) -> dict | None:
    cells.check_cell(cfg)
    if cfg.dry_run:
        from .dryrun import print_plan

        print_plan([cfg])
        return None
    uri = tracking.tracking_uri(cfg.tracking)
    experiment = cfg.tracking.experiment
    key = cells.cell_key(cfg)
    name = cells.run_name(cfg)
    if not cfg.force:
        done = tracking.finished_run(uri, experiment, key)
        if done is not None:
            print(f"[skip] {name}: finished run {done.info.run_id} has the same settings (force=true reruns it)")
            return None

    with claimed_device(select_device(cfg.device)) as device:
        return _run(cfg, device, key, name, uri, experiment, output_dir)


def _run(cfg: DictConfig, device, key: str, name: str, uri: str, experiment: str, output_dir: Path | None) -> dict:
    threads = configure_threads(cfg.threads, _workers())
    nfe = cells.nfe_of(cfg)
    cell_dir = Path(cfg.output_root) / "cells" / key
    cell_dir.mkdir(parents=True, exist_ok=True)
    versions = package_versions()
    tags = {
        "cell_key": key,
        "job": cfg.job.name,
        "git_commit": git_commit(),
        "device": str(device),
        "device_name": device_name(device),
        "threads": threads,
        "host": socket.gethostname(),
        "cell_dir": str(cell_dir.resolve()),
        **{f"version.{k}": v for k, v in versions.items()},
    }
    run = tracking.CellRun(uri, experiment, name, cells.swept_params(cfg, nfe), tags)
    ctx = CellContext(cfg=cfg, device=device, run=run, cell_dir=cell_dir)
    run.log_dict(OmegaConf.to_container(cfg, resolve=True), "config.yaml")
    if output_dir is not None:
        for path in sorted((output_dir / ".hydra").glob("*.yaml")):
            run.log_artifact(path, "hydra")
    try:
        metrics = JOB_RUNNERS[cfg.job.name](ctx)
    except KeyboardInterrupt:
        run.end("KILLED")
        raise
    except BaseException:
        run.end("FAILED")
        raise
    run.end("FINISHED")
    print(f"[done] {name}: {ctx.summary} (run {run.run_id})")
    return metrics
