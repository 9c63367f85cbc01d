"""The statistics the report draws conclusions from, on scipy: t-intervals for the difference of two cells (paired
over repeats, or Welch from standard errors), a least-squares line with its R^2 and the 95% interval of its slope,
and Kendall's tau-b."""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from scipy import stats

Interval = namedtuple("Interval", "estimate low high df")  # an estimate, its 95% t-interval and degrees of freedom
# y = intercept + slope x; r2 is 1 when y is constant; the slope's 95% t-interval is nan with fewer than 3 points
Line = namedtuple("Line", "intercept slope r2 slope_low slope_high")
NO_LINE = Line(*[math.nan] * 5)


def _t(df: float) -> float:
    return float(stats.t.ppf(0.975, df))


def paired_interval(a, b) -> Interval:
    """The mean of d_k = a_k - b_k over K >= 2 paired repeats, mean -+ t(K-1) sd(d) / sqrt(K)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    mean, half = d.mean(), _t(len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return Interval(float(mean), float(mean - half), float(mean + half), len(d) - 1)


def welch_interval(mean_a: float, se_a: float, n_a: int, mean_b: float, se_b: float, n_b: int) -> Interval:
    """a - b from two means and their standard errors, on Welch-Satterthwaite degrees of freedom."""
    var = se_a ** 2 + se_b ** 2
    df = var ** 2 / (se_a ** 4 / (n_a - 1) + se_b ** 4 / (n_b - 1)) if var > 0 else math.inf
    half = _t(df) * math.sqrt(var)
    return Interval(mean_a - mean_b, mean_a - mean_b - half, mean_a - mean_b + half, df)


def fit_line(x, y) -> Line:
    """Least squares y = a + b x; NO_LINE without 2 distinct x."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        return NO_LINE
    fit = stats.linregress(x, y)
    r2 = 1.0 - (y - fit.intercept - fit.slope * x).var() / y.var() if y.var() > 0 else 1.0
    half = _t(len(x) - 2) * fit.stderr if len(x) > 2 else math.nan
    return Line(fit.intercept, fit.slope, r2, fit.slope - half, fit.slope + half)


def loglog_line(x, y) -> Line:
    """The line of log y against log x over the positive pairs (slope 1: y proportional to x)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = (x > 0) & (y > 0)
    return fit_line(np.log(x[keep]), np.log(y[keep]))


def kendall_tau(x, y) -> float:
    """Kendall's tau-b; nan for fewer than 2 pairs (or when one side is constant)."""
    return float(stats.kendalltau(x, y).statistic) if len(x) >= 2 else math.nan
