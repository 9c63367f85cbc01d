"""Plots of the tracked numbers: Figure 4 (hours to sample 50k images vs steps, log-log) and each metric against NFE
(per eta, per sampler). Every figure is written as PNG and PDF and returned with its caption.

Figures of images: Figure 3-style sample grids from the sample runs' ``samples.png`` artifacts, and Figures 5
(consistency) and 6 (interpolation) from the figures job's images. Every figure is written as PNG and PDF.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from harness.core.files import atomic_path
from harness.diffusion.eta import eta_row_name
from harness.report.labels import (  # noqa: E402
    FIG4_READING,  # noqa: E402
    METRICS,
    dataset_name,
    direction,
    file_stem,
    label,
)
from harness.report.render import Figure, text  # noqa: E402
from harness.report.runs import fetch
from harness.report.tables import (
    ReportTable,
    TimingLine,  # noqa: E402
)


def save(fig, out_dir: Path, stem: str, caption: str, dpi: int = 130) -> Figure:
    png, pdf = out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"
    with atomic_path(png) as tmp:  # each file whole or not at all (harness.core.files)
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    return Figure(png, caption, pdf)


def figure4(lines: list[TimingLine], out_dir: Path) -> Figure:
    """Hours for 50k images against NFE, log-log, one line per dataset/device with its fitted slope."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for line in lines:
        slope = line.loglog.slope
        ax.plot(line.points["nfe"], line.points["hours"], marker="o", label=line.label
                + (" [from sample jobs]" if line.fallback else "") + (f", slope {slope:.2f}" if np.isfinite(slope) else ""))
    steps = [n for line in lines for n in line.points["nfe"]]
    grid = np.array([min([*steps, 10]), max([*steps, 1000])], dtype=float)
    for ref, style in zip(FIG4_READING, ("--", ":")):
        ax.plot(grid, ref["hours"] * grid / ref["steps"], style, color="grey", lw=1, label=f"{ref['label']}, slope 1")
    ax.set(xscale="log", yscale="log", xlabel="number of sampling steps (NFE)", ylabel="hours to sample 50,000 images",
           title="Figure 4: sampling time vs trajectory length")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    if not lines:
        ax.text(0.5, 0.5, "no timing or sample runs", transform=ax.transAxes, ha="center")
    return save(fig, out_dir, "figure4_timing", text("figure4"))


def metric_panels(data: pd.DataFrame, by: str, order: list[str], title: str, out_dir: Path, stem: str,
                  caption: str) -> Figure:
    """One panel per metric: its value against NFE (log x; log y where it spans more than a decade), one line per
    ``by`` (eta or sampler) in ``order``, error bars the 95% interval where the cells have one.
    ``data``: metric, <by>, nfe, value, ci95_low, ci95_high (the cells with a finite value are drawn)."""
    data = data[data["value"].map(np.isfinite)]
    metrics = list(dict.fromkeys(data["metric"]))
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, metrics):
        mine = data[data["metric"] == metric]
        for name in [o for o in order if o in set(mine[by])]:
            line = mine[mine[by] == name].sort_values("nfe")
            low, high = (line["value"] - line["ci95_low"]).fillna(0), (line["ci95_high"] - line["value"]).fillna(0)
            ax.errorbar(line["nfe"], line["value"], yerr=[low, high], marker="o", ms=4, capsize=3, label=str(name))
        ticks = sorted(set(mine["nfe"]))
        ax.set_xscale("log")
        ax.set_xticks(ticks, labels=[str(t) for t in ticks])
        ax.minorticks_off()
        if (mine["value"] > 0).all() and mine["value"].max() > 10 * mine["value"].min():
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # plain numbers: no mathtext
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("network evaluations per image (NFE)")
        ax.set_title(f"{label(metric)} ({direction(metric)})" if metric in METRICS else metric, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, out_dir, stem, caption)


def eta_figures(tables: list, out_dir: Path) -> list[Figure]:
    """Per dataset of the tables by eta (1, 3): each metric against NFE, one line per eta (the cells the tables show)."""
    figures = []
    for table in [t for t in tables if t.spec.row is None]:
        for block in table.measured_blocks():
            data = pd.concat([b.measured.reset_index().assign(metric=b.metric)
                              for b in [block, *table.metric_blocks.get(block.dataset, [])]])
            data = data.assign(nfe=data["nfe"].fillna(data["S"]).astype(int), eta=data["eta"].map(table.row_label))
            name = dataset_name(block.dataset)
            figures.append(metric_panels(
                data, "eta", [table.row_label(r) for r in block.rows], f"{name}: each metric against NFE per eta (DDIM "
                "family; error bars: 95% interval)", out_dir, f"figure_metrics_{file_stem(block.dataset)}",
                text("eta_figure", dataset=name)))
    return figures


def sampler_figure(view, out_dir: Path) -> Figure:
    """Each metric against NFE, one line per sampler (a samplers.SamplerView)."""
    name = dataset_name(view.dataset)
    return metric_panels(view.cells, "row", view.rows, f"{name}: each metric against NFE per sampler (error bars: 95% "
                         "interval over repeats)", out_dir, f"figure_samplers_{file_stem(view.dataset)}",
                         text("sampler_figure", dataset=name))


GRID_ROWS = 3  # rows of 10 images shown per (eta, S) panel of the sample grids


def _top_rows(image: np.ndarray, rows: int, nrow: int = 10, padding: int = 2) -> np.ndarray:
    """The first ``rows`` rows of a torchvision grid of ``nrow`` images per row (the sample job's samples.png)."""
    tile = (image.shape[1] - padding) // nrow
    if tile <= padding or (image.shape[1] - padding) % nrow:
        return image
    return image[: padding + rows * tile]


def sample_grids(tables: list[ReportTable], uri: str, out_dir: Path, tmp: Path) -> list[tuple[Figure, list[str]]]:
    """One figure per dataset of the tables by eta (1, 3), the samples.png of the run in each (eta, S) cell, with the cells whose
    run had no such artifact."""
    out = []
    for block in [b for t in tables if t.spec.row is None for b in t.measured_blocks()]:
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
