"""The fits the report draws conclusions from, on scipy: a least-squares line with its R^2 and the 95% confidence
interval of its slope, and Kendall's tau-b."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Line:
    intercept: float
    slope: float
    r2: float  # 1 when y is constant (a flat line fits it exactly)
    slope_low: float  # the 95% t-interval of the slope (nan with fewer than 3 points)
    slope_high: float


NO_LINE = Line(*[math.nan] * 5)


def fit_line(x, y) -> Line:
    """Least squares y = a + b x; NO_LINE without 2 distinct x."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        return NO_LINE
    fit = stats.linregress(x, y)
    residual = y - fit.intercept - fit.slope * x
    r2 = 1.0 - residual.var() / y.var() if y.var() > 0 else 1.0
    half = stats.t.ppf(0.975, len(x) - 2) * fit.stderr if len(x) > 2 else math.nan
    return Line(fit.intercept, fit.slope, r2, fit.slope - half, fit.slope + half)


def loglog_line(x, y) -> Line:
    """The line of log y against log x over the positive pairs (slope 1: y proportional to x)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = (x > 0) & (y > 0)
    return fit_line(np.log(x[keep]), np.log(y[keep]))


def kendall_tau(x, y) -> float:
    """Kendall's tau-b; nan for fewer than 2 pairs (or when one side is constant)."""
    return float(stats.kendalltau(x, y).statistic) if len(x) >= 2 else math.nan
