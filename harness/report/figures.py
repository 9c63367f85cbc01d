"""Figures from the tracked runs: Figure 4 (hours to sample 50k images vs steps, log-log) and Figure 3-style sample
grids assembled from the runs' ``samples.png`` artifacts. Every figure is written as PNG and PDF."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .labels import dataset_name, row_name  # noqa: E402
from .paper import FIG4_READING  # noqa: E402
from .tables import ReportTable  # noqa: E402
from .timing import SAMPLE_SOURCE, TimingLine  # noqa: E402

log = logging.getLogger(__name__)
GRID_ROWS = 3  # rows of 10 images shown per (eta, S) panel of the sample grids


def save(fig, out_dir: Path, stem: str, dpi: int = 130) -> tuple[Path, Path]:
    png, pdf = out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"
    fig.savefig(png, dpi=dpi, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight")
    plt.close(fig)
    return png, pdf


def figure4(lines: list[TimingLine], out_dir: Path) -> tuple[Path, Path]:
    """Hours for 50k images against NFE, log-log, one line per dataset/device with its fitted slope."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    xs = [n for line in lines for n in line.nfe]
    for line in lines:
        slope = line.slope
        fit = f", slope {slope:.2f}" if np.isfinite(slope) else ""
        src = " [from sample jobs]" if line.source == SAMPLE_SOURCE else ""
        ax.plot(line.nfe, line.hours, marker="o", label=f"{line.label}{src}{fit}")
    lo, hi = (min(xs), max(xs)) if xs else (10, 1000)
    grid = np.array([min(lo, 10), max(hi, 1000)], dtype=float)
    for ref, style in zip(FIG4_READING, ("--", ":")):
        ax.plot(grid, ref["hours"] * grid / ref["steps"], style, color="grey", lw=1, label=f"{ref['label']}, slope 1")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of sampling steps (NFE)")
    ax.set_ylabel("hours to sample 50,000 images")
    ax.set_title("Figure 4: sampling time vs trajectory length")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    if not lines:
        ax.text(0.5, 0.5, "no timing or sample runs", transform=ax.transAxes, ha="center")
    return save(fig, out_dir, "figure4_timing")


def _download(uri: str, run_id: str, dst: Path, artifact_uri: str | None = None) -> Path | None:
    """The run's samples.png: read in place from a local artifact store, else downloaded through MLflow."""
    if isinstance(artifact_uri, str) and artifact_uri.startswith("file:"):
        from urllib.parse import unquote, urlparse

        local = Path(unquote(urlparse(artifact_uri).path)) / "samples.png"
        if local.is_file():
            return local
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="samples.png",
                                                        dst_path=str(dst / run_id), tracking_uri=uri))
    except Exception as err:  # a run without the artifact, an unreachable artifact store
        log.debug("no samples.png for run %s: %s", run_id, err)
        return None


def _top_rows(image: np.ndarray, rows: int, nrow: int = 10, padding: int = 2) -> np.ndarray:
    """The first ``rows`` rows of a torchvision grid of ``nrow`` images per row (the sample job's samples.png)."""
    tile = (image.shape[1] - padding) // nrow
    if tile <= padding or (image.shape[1] - padding) % nrow:
        return image
    return image[: padding + rows * tile]


def sample_grids(tables: list[ReportTable], uri: str, out_dir: Path, tmp: Path) -> list[tuple[str, Path, Path, list[str]]]:
    """One figure per dataset: the samples.png of the run in each (eta, S) cell of Tables 1/3.

    Returns (dataset, png, pdf, missing) where missing lists the cells whose run had no artifact.
    """
    out = []
    for table in tables:
        if table.number not in (1, 3):
            continue
        for block in table.blocks:
            if block.paper_only or not block.measured:
                continue
            rows = [r for r in block.rows if any(k[0] == r for k in block.measured)]
            cols = sorted({s for (_, s) in block.measured})
            fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.6 * len(cols) + 0.8, 0.95 * len(rows) + 0.8),
                                     squeeze=False)
            missing = []
            for i, r in enumerate(rows):
                for j, s in enumerate(cols):
                    ax = axes[i][j]
                    ax.set_xticks([])
                    ax.set_yticks([])
                    cell = block.measured.get((r, s))
                    if cell is not None:
                        run = block.runs[block.runs["run_id"] == cell.run_id].iloc[0]
                        path = _download(uri, cell.run_id, tmp, run.get("artifact_uri"))
                    else:
                        path = None
                    if path is not None and path.is_file():
                        ax.imshow(_top_rows(plt.imread(path), GRID_ROWS), interpolation="nearest", cmap="gray")
                    else:
                        ax.text(0.5, 0.5, "not run" if cell is None else "no samples.png", ha="center", va="center",
                                fontsize=8, transform=ax.transAxes)
                        if cell is not None:
                            missing.append(f"{row_name(r)}, S={s} (run {cell.run_id})")
                    if i == 0:
                        ax.set_title(f"S={s}", fontsize=9)
                    if j == 0:
                        ax.set_ylabel(row_name(r), fontsize=9)
            fig.suptitle(f"{dataset_name(block.dataset)}: samples by eta and S (first images of each run, "
                         "as Figure 3)", fontsize=10)
            png, pdf = save(fig, out_dir, f"figure3_samples_{block.dataset}", dpi=140)
            out.append((block.dataset, png, pdf, missing))
    return out
