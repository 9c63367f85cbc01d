"""The metrics the report shows: their names, which way is better, and how a cell's value prints with its interval.

Sample cells are scored on K repeats (disjoint ranges of image indices); a cell's value is the mean over repeats and
its interval the runner's 95% t-interval over them (``<metric>_ci95_low/high``), absent when K = 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..names import Metric
from .labels import DASH

ONE_REPEAT = "\u2021"  # a cell measured once (K = 1): no interval


@dataclass(frozen=True)
class MetricInfo:
    name: str
    label: str
    lower_is_better: bool

    @property
    def direction(self) -> str:
        return "lower is better" if self.lower_is_better else "higher is better"

    def better(self, difference: float) -> bool:
        """Whether a - b = difference says a is better than b."""
        return difference < 0 if self.lower_is_better else difference > 0


METRICS = {m.name: m for m in [
    MetricInfo(Metric.FID, "FID", True),
    MetricInfo(Metric.KID, "KID", True),
    MetricInfo(Metric.PRC_PRECISION, "precision", False),
    MetricInfo(Metric.PRC_RECALL, "recall", False),
    MetricInfo(Metric.FD_PIXELS, "FD", True),
    MetricInfo(Metric.FD_TRUE, "FD to the true law", True),
    MetricInfo(Metric.FLOW_RMSE, "flow RMSE", True),
    MetricInfo(Metric.RECON_MSE, "MSE", True),
]}
SAMPLE_METRICS = [Metric.FID, Metric.KID, Metric.PRC_PRECISION, Metric.PRC_RECALL, Metric.FD_PIXELS, Metric.FD_TRUE,
                  Metric.FLOW_RMSE]


def label(metric: str) -> str:
    return METRICS[metric].label if metric in METRICS else metric


def fmt_value(value: float | None, metric: str = Metric.FID) -> str:
    """FID: 2 decimals (3 significant digits below 1); others: 3 significant digits; 'NaN' / 'inf' said as such;
    '-' for no value."""
    if value is None:
        return DASH
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if metric == Metric.FID:
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:#.3g}"
    return f"{value:.3g}"


def fmt_cell(value: float, low: float, high: float, metric: str) -> str:
    """``mean ± half-width`` of the interval, or the value marked ONE_REPEAT when it has none."""
    text = fmt_value(value, metric)
    if not math.isfinite(value):
        return text
    half = (high - low) / 2
    return f"{text} \u00b1 {half:.2g}" if math.isfinite(half) else text + ONE_REPEAT
