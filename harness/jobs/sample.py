"""The FID job (Tables 1 and 3): sample N images of one (S, eta) cell, time the sampler, compute FID, log."""

from __future__ import annotations

import logging
import time

from ..fid import compute_fid
from ..images import save_grid
from ..generate import generate
from .context import CellContext

log = logging.getLogger(__name__)


def run(ctx: CellContext) -> dict:
    cfg = ctx.cfg
    model = ctx.load_model()
    gen = generate(
        model,
        n=int(cfg.N),
        shape=ctx.image_shape,
        seed=int(cfg.seed),
        tau=ctx.tau,
        schedule=ctx.schedule,
        eta=ctx.eta,
        batch_size=int(cfg.batch_size),
        device=ctx.device,
        shard_dir=ctx.cell_dir / "samples",
        progress=cfg.progress,
        after_batch=ctx.interrupt_hook,
    )
    metrics = {"images_sampled": gen.sampled}
    if gen.sampled:
        metrics.update(
            sampling_seconds=gen.seconds,
            seconds_per_image=gen.seconds / gen.sampled,
            images_per_second=gen.sampled / gen.seconds,
            seconds_per_nfe_image=gen.seconds / (gen.sampled * len(ctx.tau)),
        )
    grid = save_grid(gen.images[: int(cfg.job.grid_images)], ctx.cell_dir / "samples.png", nrow=10, scale=int(cfg.job.grid_scale))
    ctx.run.log_artifact(grid)
    ctx.run.log_metrics(metrics)

    fid_start = time.perf_counter()
    fid = compute_fid(
        gen.images,
        reference=cfg.dataset.fid_reference,
        feature_extractor=cfg.fid.feature_extractor,
        batch_size=int(cfg.fid.batch_size),
        device=ctx.device,
        verbose=bool(cfg.progress),
        feature_extractor_weights_path=cfg.fid.get("weights_path"),
        datasets_root=cfg.dataset.get("root"),
    )
    ctx.run.set_tags({"feature_extractor": fid["feature_extractor"], "fid_reference": fid["reference"]})
    metrics.update(fid=fid["fid"], fid_seconds=time.perf_counter() - fid_start)
    ctx.run.log_metrics({"fid": metrics["fid"], "fid_seconds": metrics["fid_seconds"]})
    per_image = f", {1000 * metrics['seconds_per_image']:.2f} ms/img" if gen.sampled else " (all from shards)"
    ctx.summary = (
        f"FID {fid['fid']:.3f} [{fid['feature_extractor']} vs {fid['reference']}], N={cfg.N}, NFE={len(ctx.tau)}{per_image}"
    )
    return metrics
