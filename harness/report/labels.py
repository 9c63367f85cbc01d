"""How the report spells things: dataset and metric names, which way a metric is better, numbers and table cells
(a cell's value is the mean over its K repeats, its interval the runner's 95% t-interval over them, none when K = 1),
and file names."""

from __future__ import annotations

import math
import re

from harness.core.names import SCORES, Metric

DASH, DAGGER, ONE_REPEAT = "-", "\u2020", "\u2021"  # not run; settings differ from the block's; measured once (K=1)
DATASET_NAMES = {"digits": "digits 8x8", "cifar10": "CIFAR-10", "celeba": "CelebA", "lsun_bedroom": "LSUN Bedroom",
                 "lsun_church": "LSUN Church"}
METRICS = {name: (score.label, score.lower_is_better) for name, score in SCORES.items()}  # metric: (label, lower better)
SAMPLE_METRICS = [m for m in METRICS if m != Metric.RECON_MSE]


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


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
