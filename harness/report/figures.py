"""Plots of the tracked numbers: Figure 4 (hours to sample 50k images vs steps, log-log) and each metric against NFE
(per eta, per sampler). Every figure is written as PNG and PDF and returned with its caption."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.report.labels import METRICS, dataset_name, direction, file_stem, label  # noqa: E402
from harness.report.paper import FIG4_READING  # noqa: E402
from harness.report.render import Figure, text  # noqa: E402
from harness.report.timing import TimingLine  # noqa: E402


def save(fig, out_dir: Path, stem: str, caption: str, dpi: int = 130) -> Figure:
    png, pdf = out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"
    fig.savefig(png, dpi=dpi, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None})
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
    """Per dataset of Tables 1/3: each metric against NFE, one line per eta (the cells the tables show)."""
    figures = []
    for table in [t for t in tables if t.spec.number in (1, 3)]:
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
