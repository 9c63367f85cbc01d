"""Figures of images: Figure 3-style sample grids from the sample runs' ``samples.png`` artifacts, and Figures 5
(consistency) and 6 (interpolation) from the figures job's images. Every figure is written as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.diffusion.eta import eta_row_name
from harness.report.artifacts import fetch
from harness.report.figures import plt, save
from harness.report.labels import dataset_name, file_stem
from harness.report.render import Figure, text
from harness.report.tables import ReportTable

GRID_ROWS = 3  # rows of 10 images shown per (eta, S) panel of the sample grids


def _top_rows(image: np.ndarray, rows: int, nrow: int = 10, padding: int = 2) -> np.ndarray:
    """The first ``rows`` rows of a torchvision grid of ``nrow`` images per row (the sample job's samples.png)."""
    tile = (image.shape[1] - padding) // nrow
    if tile <= padding or (image.shape[1] - padding) % nrow:
        return image
    return image[: padding + rows * tile]


def sample_grids(tables: list[ReportTable], uri: str, out_dir: Path, tmp: Path) -> list[tuple[Figure, list[str]]]:
    """One figure per dataset of Tables 1/3, the samples.png of the run in each (eta, S) cell, with the cells whose
    run had no such artifact."""
    out = []
    for block in [b for t in tables if t.spec.number in (1, 3) for b in t.measured_blocks()]:
        cells = block.measured
        rows = [r for r in block.rows if r in cells.index.get_level_values("eta")]
        cols = sorted(set(cells.index.get_level_values("S")))
        fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.6 * len(cols) + 0.8, 0.95 * len(rows) + 0.8),
                                 squeeze=False)
        missing = []
        for (i, r), (j, s) in [(a, b) for a in enumerate(rows) for b in enumerate(cols)]:
            ax = axes[i][j]
            ax.set(xticks=[], yticks=[])
            run = cells.loc[(r, s)] if (r, s) in cells.index else None
            path = fetch(uri, run, "samples.png", tmp) if run is not None else None
            if path is not None:
                ax.imshow(_top_rows(plt.imread(path), GRID_ROWS), interpolation="nearest", cmap="gray")
            else:
                ax.text(0.5, 0.5, "not run" if run is None else "no samples.png", ha="center", va="center", fontsize=8,
                        transform=ax.transAxes)
                missing += [] if run is None else [f"{eta_row_name(r)}, S={s} (run {run['run_id']})"]
            if i == 0:
                ax.set_title(f"S={s}", fontsize=9)
            if j == 0:
                ax.set_ylabel(eta_row_name(r), fontsize=9)
        name = dataset_name(block.dataset)
        fig.suptitle(f"{name}: samples by eta and S (first images of each run, as Figure 3)", fontsize=10)
        out.append((save(fig, out_dir, f"figure3_samples_{file_stem(block.dataset)}", text("sample_grid", dataset=name),
                         dpi=140), missing))
    return out


def _image_grid(images: np.ndarray, titles: list[str], suptitle: str, size: float, out_dir: Path, stem: str,
                caption: str, ylabel: str = "") -> Figure:
    """uint8 images [rows, cols, C, H, W], one per panel (grey for one channel, else RGB); titles over the columns."""
    rows, cols = images.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols + 0.6 * bool(ylabel), size * rows + 0.3 * bool(titles)),
                             squeeze=False)
    for (i, j), ax in np.ndenumerate(axes):
        image = images[i, j]
        ax.imshow(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255,
                  interpolation="nearest")
        ax.set(xticks=[], yticks=[])
        if i == 0 and titles:
            ax.set_title(titles[j], fontsize=8)
    axes[0][0].set_ylabel(ylabel, fontsize=8)
    fig.suptitle(suptitle, fontsize=9)
    return save(fig, out_dir, stem, caption)


def consistency_and_interpolation(run: pd.Series, images: dict, settings: dict, out_dir: Path) -> list[Figure]:
    """Figures 5 and 6 from the images of a figures run (artifacts.figures_images)."""
    values = dict(dataset=run["dataset"], seed=settings["seed"], S=settings["interpolation_S"])
    S_list = settings["consistency_S"]
    return [
        _image_grid(images["consistency"].swapaxes(0, 1), [f"S={s}" for s in S_list],
                    "Same x_T, eta=0, different S (as Figure 5)", 1.1, out_dir, "figure5_consistency",
                    text("figure5", n=images["consistency"].shape[1], S_list=", ".join(map(str, S_list)), **values),
                    "x_T #0"),
        _image_grid(images["interpolation"][None], [f"{a:.2g}" for a in images["alphas"]],
                    f"slerp(x_T #0, x_T #1, alpha), eta=0, S={values['S']} (as Figure 6)", 1.0, out_dir,
                    "figure6_interpolation", text("figure6", **values)),
        _image_grid(images["grid"], [], f"2-D slerp grid between the x_T of images 0-3, eta=0, S={values['S']}", 1.0,
                    out_dir, "figure6_interpolation_grid", text("figure6_grid", **values)),
    ]
