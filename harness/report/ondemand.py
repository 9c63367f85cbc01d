"""Figures sampled when the report is built, with the shipped digits model (a few dozen 8x8 images, seconds of CPU):

* consistency (Figure 5): the same x_T decoded with eta = 0 over several S; DDIM's high-level features stay put.
* interpolation (Figure 6 / App. D.5): slerp between two latents, decoded with eta = 0 and S = 50, and the 2-D grid
  between four latents.

Latent i is image i's x_T of a run with the same seed (harness.noise.ImageNoise), so the rows match the runs' grids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import config
from ..model_loading import load_checkpoint
from ..images import to_uint8
from ..interpolation import slerp_grid, slerp_line
from ..noise import ImageNoise
from ..sampling import sample
from ..schedule import NoiseSchedule
from ..trajectory import timesteps
from .figures import plt, save

CONSISTENCY_S = (10, 20, 50, 100)
INTERP_S = 50


@dataclass
class OnDemand:
    figures: list[tuple[str, Path, Path]] = field(default_factory=list)  # (caption, png, pdf)
    checkpoint_sha256: str = ""
    seed: int = 0
    images: int = 0
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)


def _load():
    cfg = config.load("model", "digits")
    data = config.load("dataset", "digits")
    model, info = load_checkpoint(cfg)
    shape = (int(cfg.architecture.in_channels), int(data.image_size), int(data.image_size))
    return model, info, shape, str(data.trajectory)


def _show(ax, image: torch.Tensor) -> None:
    ax.imshow(to_uint8(image)[0].numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def digits_figures(out_dir: Path, seed: int = 0, n_consistency: int = 6, n_interp: int = 9, grid: int = 5,
                   consistency_S=CONSISTENCY_S) -> OnDemand:
    """Sample the consistency and interpolation figures; about (n_consistency * len(S) + n_interp + grid^2) images."""
    start = time.perf_counter()
    model, info, shape, trajectory = _load()
    schedule = NoiseSchedule.linear()
    result = OnDemand(checkpoint_sha256=info["sha256"], seed=seed)

    x_T = ImageNoise(seed, range(n_consistency)).randn(*shape)
    rows = []
    for S in consistency_S:
        rows.append(sample(model, x_T, timesteps(trajectory, S), schedule, eta=0.0))
        result.images += n_consistency
    fig, axes = plt.subplots(n_consistency, len(consistency_S), figsize=(1.1 * len(consistency_S) + 0.6, 1.1 * n_consistency),
                             squeeze=False)
    for j, (S, xs) in enumerate(zip(consistency_S, rows)):
        for i in range(n_consistency):
            _show(axes[i][j], xs[i])
            if i == 0:
                axes[i][j].set_title(f"S={S}", fontsize=9)
        axes[0][0].set_ylabel("x_T #0", fontsize=8)
    fig.suptitle("Same x_T, eta=0, different S (as Figure 5)", fontsize=9)
    png, pdf = save(fig, out_dir, "figure5_consistency")
    result.figures.append((f"Consistency: digits, the same x_T (rows, seed {seed}, images 0-{n_consistency - 1}) decoded "
                           f"with eta=0 and S = {', '.join(map(str, consistency_S))} (columns), as the paper's Figure 5",
                           png, pdf))

    tau = timesteps(trajectory, INTERP_S)
    ends = ImageNoise(seed, [0, 1]).randn(*shape)
    alphas = np.linspace(0.0, 1.0, n_interp)
    line = slerp_line(ends[0], ends[1], alphas)
    corners = ImageNoise(seed, [0, 1, 2, 3]).randn(*shape)
    ab = np.linspace(0.0, 1.0, grid)
    square = slerp_grid(corners, ab, ab).reshape(grid * grid, *shape)
    decoded = sample(model, torch.cat([line, square]), tau, schedule, eta=0.0)
    result.images += len(line) + len(square)
    line_img, grid_img = decoded[: len(line)], decoded[len(line):]

    fig, axes = plt.subplots(1, n_interp, figsize=(1.0 * n_interp, 1.3), squeeze=False)
    for j in range(n_interp):
        _show(axes[0][j], line_img[j])
        axes[0][j].set_title(f"{alphas[j]:.2g}", fontsize=8)
    fig.suptitle(f"slerp(x_T #0, x_T #1, alpha), eta=0, S={INTERP_S} (as Figure 6)", fontsize=9)
    png, pdf = save(fig, out_dir, "figure6_interpolation")
    result.figures.append((f"Interpolation: digits, spherical interpolation between the x_T of images 0 and 1 (seed "
                           f"{seed}), decoded with eta=0, S={INTERP_S}, as the paper's Figure 6 / App. D.5", png, pdf))

    fig, axes = plt.subplots(grid, grid, figsize=(1.0 * grid, 1.0 * grid), squeeze=False)
    for k in range(grid * grid):
        _show(axes[k // grid][k % grid], grid_img[k])
    fig.suptitle(f"2-D slerp grid between the x_T of images 0-3, eta=0, S={INTERP_S}", fontsize=9)
    png, pdf = save(fig, out_dir, "figure6_interpolation_grid")
    result.figures.append((f"2-D interpolation grid: digits, x_T of images 0, 1 (top corners) and 2, 3 (bottom corners), "
                           f"seed {seed}, slerp along rows and columns (App. D.5), eta=0, S={INTERP_S}", png, pdf))
    result.seconds = time.perf_counter() - start
    result.settings = {"seed": seed, "consistency_S": list(consistency_S), "interpolation_S": INTERP_S,
                       "trajectory": trajectory, "checkpoint": info.get("path")}
    return result
