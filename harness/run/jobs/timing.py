"""The timing job (Figure 4): time the sampler at one S with warm-up, device synchronisation and repeats.

Logs seconds per batch, per image and per network evaluation, images per second, and the hours to sample 50,000
images extrapolated from them (the paper's Figure 4 axis), with the device, dtype and batch size that produced them.
"""

from __future__ import annotations

import statistics
import time

from harness.core.names import Metric, Tag
from harness.core.runtime import synchronize
from harness.diffusion.noise import ImageNoise
from harness.run.jobs.context import JobContext
from harness.run.registry import Job


def run(ctx: JobContext) -> dict:
    cell = ctx.cell
    model = ctx.load_model()
    b, nfe = cell.batch_size, cell.nfe
    noise = ImageNoise(cell.seed, range(b), ctx.device, scheme=cell.noise)
    x_T = noise.randn(*cell.image_shape)

    def once(tau) -> float:
        synchronize(ctx.device)
        t0 = time.perf_counter()
        cell.sampler_info.sample(model, x_T, tau, cell.schedule, eta=cell.eta, noise=noise)
        synchronize(ctx.device)
        return time.perf_counter() - t0

    for _ in range(int(cell.job_options["warmup"])):
        once(cell.tau[-3:])  # a few steps warm kernels and allocator without paying for the whole trajectory
    times = []
    for r in range(int(cell.job_options["repeats"])):
        times.append(once(cell.tau))
        ctx.after_batch(r + 1)
    per_batch = statistics.median(times)
    per_image = per_batch / b
    metrics = {
        Metric.SECONDS_PER_BATCH: per_batch,
        Metric.SECONDS_PER_BATCH_MIN: min(times),
        Metric.SECONDS_PER_BATCH_MAX: max(times),
        Metric.SECONDS_PER_IMAGE: per_image,
        Metric.SECONDS_PER_NFE: per_batch / nfe,
        Metric.IMAGES_PER_SECOND: b / per_batch,
        Metric.HOURS_50K: 50_000 * per_image / 3600.0,
    }
    ctx.run.set_tags({Tag.DTYPE: str(next(model.parameters()).dtype).replace("torch.", ""), Tag.TIMING_BATCH_SIZE: b})
    ctx.run.log_metrics(metrics)
    ctx.headline = f"{1000 * per_batch / nfe:.2f} ms per NFE"
    ctx.summary = (f"{per_batch:.3f} s per batch of {b} (median of {len(times)}), {1000 * per_batch / nfe:.2f} ms per NFE, "
                   f"{metrics[Metric.HOURS_50K]:.3g} h for 50k images")
    return metrics


JOB = Job("timing", run, describe=lambda cell: f"timing of batches of {cell.batch_size}")
