"""The reconstruction job (Table 2): encode held-out images to x_T with eta = 0 over S steps, decode over S steps,
and report the per-dimension MSE with pixels on [0, 1] (mean over images and its standard error)."""

from __future__ import annotations

import math
import time

import torch

from harness.core.names import Metric
from harness.core.runtime import synchronize
from harness.data import load_split
from harness.diffusion.sampling import decode, encode, reconstruction_mse
from harness.run.jobs.context import JobContext
from harness.run.registry import Job


def run(ctx: JobContext) -> dict:
    cell = ctx.cell
    model = ctx.load_model()
    images = load_split(cell.dataset, cell.dataset["test_split"])[: cell.N]
    n = len(images)
    errors = []
    progress = ctx.progress(n, "encode+decode")
    start = time.perf_counter()
    for first in range(0, n, cell.batch_size):
        x0 = images[first : first + cell.batch_size].to(ctx.device)
        x_T = encode(model, x0, cell.tau, cell.schedule)
        x_rec = decode(model, x_T, cell.tau, cell.schedule)
        errors.append(reconstruction_mse(x0, x_rec).double().cpu())
        progress.update(len(x0))
        ctx.after_batch(len(errors))
    synchronize(ctx.device)
    seconds = time.perf_counter() - start
    progress.close()
    mse = torch.cat(errors)
    metrics = {
        Metric.RECON_MSE: float(mse.mean()),
        Metric.RECON_MSE_STDERR: float(mse.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan"),
        Metric.N_IMAGES: n,
        Metric.RECON_SECONDS: seconds,
        Metric.SECONDS_PER_IMAGE: seconds / n,
        Metric.NFE_PER_IMAGE: 2 * cell.nfe,
    }
    ctx.run.log_metrics(metrics)
    ctx.headline = f"recon_mse {metrics[Metric.RECON_MSE]:.3g} +- {1.96 * metrics[Metric.RECON_MSE_STDERR]:.2g}"
    ctx.summary = (f"reconstruction MSE {metrics[Metric.RECON_MSE]:.3g} +- {metrics[Metric.RECON_MSE_STDERR]:.2g} (stderr) "
                   f"over {n} held-out images ({2 * cell.nfe} NFE each, {seconds:.1f} s)")
    return metrics


JOB = Job("recon", run, describe=lambda cell: f"reconstruction of {cell.N} held-out images", reads="test_split",
          sampler="ddim", exact=False, images=lambda cell: 2 * cell.n_images, nfe=lambda cell: len(cell.tau))
