"""The timing job (Figure 4): time the sampler at one S with warm-up, device synchronisation and repeats.

Logs seconds per batch, per image and per network evaluation, images per second, and the hours to sample 50,000
images extrapolated from them (the paper's Figure 4 axis), with the device, dtype and batch size that produced them.
"""

from __future__ import annotations

import statistics
import time

import torch

from ..noise import ImageNoise
from ..sampling import sample
from .context import CellContext


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(ctx: CellContext) -> dict:
    cfg = ctx.cfg
    model = ctx.load_model()
    b, nfe = int(cfg.batch_size), len(ctx.tau)
    noise = ImageNoise(int(cfg.seed), range(b), ctx.device)
    x_T = noise.randn(*ctx.image_shape)

    def once(tau) -> float:
        _sync(ctx.device)
        t0 = time.perf_counter()
        sample(model, x_T, tau, ctx.schedule, ctx.eta, noise)
        _sync(ctx.device)
        return time.perf_counter() - t0

    for _ in range(int(cfg.job.warmup)):
        once(ctx.tau[-2:])  # two steps warm kernels and allocator without paying for the whole trajectory
    times = []
    for r in range(int(cfg.job.repeats)):
        times.append(once(ctx.tau))
        ctx.interrupt_hook(r + 1)
    per_batch = statistics.median(times)
    per_image = per_batch / b
    metrics = {
        "seconds_per_batch": per_batch,
        "seconds_per_batch_min": min(times),
        "seconds_per_batch_max": max(times),
        "seconds_per_image": per_image,
        "seconds_per_nfe": per_batch / nfe,
        "images_per_second": b / per_batch,
        "hours_50k": 50_000 * per_image / 3600.0,
    }
    ctx.run.set_tags({"dtype": str(next(model.parameters()).dtype).replace("torch.", ""), "timing_batch_size": b})
    ctx.run.log_metrics(metrics)
    ctx.summary = (
        f"{per_batch:.3f} s per batch of {b} (median of {len(times)}), {1000 * per_batch / nfe:.2f} ms per NFE, "
        f"{metrics['hours_50k']:.3g} h for 50k images"
    )
    return metrics
