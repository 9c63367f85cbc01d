"""The reconstruction job (Table 2): encode held-out images to x_T with eta = 0 over S steps, decode over S steps,
and report the per-dimension MSE with pixels on [0, 1] (mean over images and its standard error)."""

from __future__ import annotations

import math
import time

import torch
from tqdm import tqdm

from ..datasets import load_split
from ..sampling import decode, encode, reconstruction_mse
from .context import CellContext


def run(ctx: CellContext) -> dict:
    cfg = ctx.cfg
    model = ctx.load_model()
    images = load_split(cfg.dataset, cfg.dataset.test_split)[: int(cfg.N)]
    n, nfe = len(images), len(ctx.tau)
    errors = []
    bar = tqdm(total=n, desc="encode+decode", unit="img", disable=not cfg.progress, mininterval=1.0)
    start = time.perf_counter()
    for first in range(0, n, int(cfg.batch_size)):
        x0 = images[first : first + int(cfg.batch_size)].to(ctx.device)
        x_T = encode(model, x0, ctx.tau, ctx.schedule)
        x_rec = decode(model, x_T, ctx.tau, ctx.schedule)
        errors.append(reconstruction_mse(x0, x_rec).double().cpu())
        bar.update(len(x0))
        ctx.interrupt_hook(len(errors))
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    seconds = time.perf_counter() - start
    bar.close()
    mse = torch.cat(errors)
    metrics = {
        "recon_mse": float(mse.mean()),
        "recon_mse_stderr": float(mse.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan"),
        "n_images": n,
        "recon_seconds": seconds,
        "seconds_per_image": seconds / n,
        "nfe_per_image": 2 * nfe,
    }
    ctx.run.log_metrics(metrics)
    ctx.summary = (
        f"reconstruction MSE {metrics['recon_mse']:.3g} +- {metrics['recon_mse_stderr']:.2g} over {n} held-out images "
        f"({2 * nfe} NFE each, {seconds:.1f} s)"
    )
    return metrics
