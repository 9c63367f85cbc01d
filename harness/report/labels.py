"""How the report spells things: dataset and metric names, which way a metric is better, numbers and table cells
(a cell's value is the mean over its K repeats, its interval the runner's 95% t-interval over them, none when K = 1),
and file names.

The paper's numbers (Song, Meng, Ermon, ICLR 2021), from the project's own copy ``paper_values.csv``: which
datasets, rows (eta) and columns (S) each of Tables 1-3 has, and its values as printed (``45.20``, ``0.0009``) and as
floats. Figure 4 has no numeric values in the paper; ``FIG4_READING`` holds what its caption and the introduction say.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path

import pandas as pd

from harness.core import config
from harness.core.names import SCORES, Metric
from harness.diffusion.eta import SIGMA_HAT, eta_label, eta_sort_key

DASH, DAGGER, ONE_REPEAT = "-", "\u2020", "\u2021"  # not run; settings differ from the block's; measured once (K=1)
METRICS = {name: (score.label, score.lower_is_better) for name, score in SCORES.items()}  # metric: (label, lower better)
SAMPLE_METRICS = [m for m in METRICS if m != Metric.RECON_MSE]


@lru_cache(maxsize=None)
def dataset_name(dataset: str) -> str:
    """A dataset's title (its conf's ``title``: ``CIFAR-10``), else its name."""
    if dataset not in config.names("dataset"):
        return dataset
    return str(config.load("dataset", dataset).get("title") or dataset)


def label(metric: str) -> str:
    return METRICS[metric][0] if metric in METRICS else metric


def direction(metric: str) -> str:
    return "lower is better" if METRICS[metric][1] else "higher is better"


def better(metric: str, difference: float) -> bool:
    """Whether a - b = difference says a is better than b."""
    return difference < 0 if METRICS[metric][1] else difference > 0


def fmt_number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3g}"


def fmt_value(value: float, metric: str = Metric.FID) -> str:
    """FID: 2 decimals (3 significant digits below 1); others: 3 significant digits; NaN and (-)inf said as such."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else str(value)
    if metric == Metric.FID:
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:#.3g}"
    return f"{value:.3g}"


def fmt_cell(value: float, low: float, high: float, metric: str) -> str:
    """``mean ± half-width`` of the interval, or the value marked ONE_REPEAT when it has none."""
    text, half = fmt_value(value, metric), (high - low) / 2
    if not math.isfinite(value):
        return text
    return f"{text} \u00b1 {half:.2g}" if math.isfinite(half) else text + ONE_REPEAT


def file_stem(name: str) -> str:
    """A name safe as part of a file name (a dataset called 'mnist/32' gives 'mnist_32')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "unnamed"


PAPER_CSV = Path(__file__).with_name("paper_values.csv")
ORDERING_REFERENCE = "cifar10"  # the paper block shown beside datasets the paper did not use (digits)

# Figure 4 (no numbers in the paper): hours to sample 50k images on one Nvidia 2080 Ti, linear in the trajectory
# length; the introduction: about 20 h for 1000-step DDPM on CIFAR-10 32x32 and nearly 1000 h at 256x256.
FIG4_READING = [
    {"label": "paper: ~20 h at 1000 steps, CIFAR-10 32x32 (2080 Ti)", "steps": 1000, "hours": 20.0},
    {"label": "paper: ~1000 h at 1000 steps, 256x256 (2080 Ti)", "steps": 1000, "hours": 1000.0},
]


@lru_cache(maxsize=1)
def load_paper() -> pd.DataFrame:
    """Columns: table, dataset, row (as in the CSV), S, value (float), what, text (as printed), eta (harness label)."""
    df = pd.read_csv(PAPER_CSV, comment="#", dtype={"value": str})
    df["text"] = df["value"]
    df["value"] = df["text"].astype(float)
    df["eta"] = df["row"].str.removeprefix("eta=").replace({"sigma_hat": SIGMA_HAT}).map(eta_label)
    return df


def paper_layout(table: int) -> tuple[list[str], list[str], list[int]]:
    """The datasets (in the paper's order), rows (eta labels, in the paper's order) and S of one paper table."""
    df = load_paper()[load_paper()["table"] == table]
    return list(dict.fromkeys(df["dataset"])), sorted(set(df["eta"]), key=eta_sort_key), sorted(set(df["S"].tolist()))


def paper_cells(table: int, dataset: str) -> pd.DataFrame:
    """One dataset block of a paper table (empty if none), index (eta label, S): value and text (as printed)."""
    df = load_paper()
    return df[(df["table"] == table) & (df["dataset"] == dataset)].set_index(["eta", "S"])[["value", "text"]]
