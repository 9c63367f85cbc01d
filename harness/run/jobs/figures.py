"""The figures job: the images of the paper's Figure 5 (the same x_T decoded with eta = 0 at several S: DDIM keeps
the high-level features) and Figure 6 / App. D.5 (decoded spherical interpolations between latents), logged as
artifacts for the report: ``figures.npz`` (uint8 images) and ``figures.json`` (the settings).

Latent i is image i's x_T of a sample cell with the same seed (harness.diffusion.noise.ImageNoise), so the rows match the
sample cells' grids.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from harness.diffusion.images import to_uint8
from harness.diffusion.interpolation import slerp_grid, slerp_line
from harness.diffusion.noise import ImageNoise
from harness.diffusion.sampling import sample
from harness.diffusion.trajectory import timesteps
from harness.run.jobs.context import JobContext
from harness.run.registry import Job


def run(ctx: JobContext) -> dict:
    cell = ctx.cell
    job = cell.job_options
    model = ctx.load_model()
    shape, seed = cell.image_shape, cell.seed
    start = time.perf_counter()

    def decode(x_T: torch.Tensor, S: int) -> np.ndarray:
        tau = timesteps(cell.trajectory, int(S), cell.T)
        return to_uint8(sample(model, x_T.to(ctx.device), tau, cell.schedule, eta=0.0)).cpu().numpy()

    x_T = ImageNoise(seed, range(int(job["consistency_images"])), scheme=cell.noise).randn(*shape)
    consistency = np.stack([decode(x_T, S) for S in job["consistency_S"]])  # [S, image, C, H, W]
    alphas = np.linspace(0.0, 1.0, int(job["interpolation_steps"]))
    ends = ImageNoise(seed, [0, 1], scheme=cell.noise).randn(*shape)
    line = slerp_line(ends[0], ends[1], alphas)
    n = int(job["interpolation_grid"])
    corners = ImageNoise(seed, [0, 1, 2, 3], scheme=cell.noise).randn(*shape)
    ab = np.linspace(0.0, 1.0, n)
    square = slerp_grid(corners, ab, ab).reshape(n * n, *shape)
    decoded = decode(torch.cat([line, square]), int(job["interpolation_S"]))  # one batch: the images are independent
    seconds = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figures.npz"
        np.savez_compressed(path, consistency=consistency, interpolation=decoded[: len(line)], alphas=alphas,
                            grid=decoded[len(line):].reshape(n, n, *shape))
        ctx.run.log_artifact(path)
    settings = {"seed": seed, "eta": 0, "trajectory": cell.trajectory, "consistency_S": [int(S) for S in job["consistency_S"]],
                "consistency_images": int(job["consistency_images"]), "interpolation_S": int(job["interpolation_S"]),
                "interpolation_steps": int(job["interpolation_steps"]), "interpolation_grid": n}
    ctx.run.log_dict(settings, "figures.json")
    images = consistency.shape[0] * consistency.shape[1] + len(decoded)
    metrics = {"images_sampled": images, "sampling_seconds": seconds}
    ctx.run.log_metrics(metrics)
    ctx.headline = f"{images} images"
    ctx.summary = f"Figures 5 and 6: {images} images sampled in {seconds:.1f} s ({json.dumps(settings)})"
    return metrics


JOB = Job("figures", run, describe=lambda cell: "Figures 5 and 6 sampled")
