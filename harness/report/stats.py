"""The statistics the report draws conclusions from, on scipy: t-intervals for the difference of two cells (paired
over repeats, or Welch from standard errors), a least-squares line with its R^2 and the 95% interval of its slope,
and Kendall's tau-b.

The sample-size planner: how many repeats would decide a paired comparison that is within noise, and the
smallest difference the repeats at hand could have detected. Pure math on scipy; the report and the dry run call it.

A claim compares two cells by the paired differences d_k = m_k(a) - m_k(b) over K repeats, with the two-sided 95%
t-interval of their mean (harness.report.claims). The interval excludes 0 exactly when the paired t-test rejects at
alpha = 0.05, so "decided" is that test's rejection, and its power at n repeats, for a true mean difference delta and
a standard deviation sigma of d_k, is that of the one-sample t-test (Cohen 1988, Statistical Power Analysis, ch. 2):

    power(n, e) = P(|T| > t_{1-alpha/2, n-1}),  T ~ noncentral t with n - 1 df and noncentrality e sqrt(n),

with the effect size e = |delta| / sigma. ``repeats_needed`` is the smallest n >= 2 with power(n, e) >= 80%, searched
upward from the normal approximation with Guenther's t correction (Guenther 1981, "Sample size formulas for normal
theory t tests", The American Statistician 35(4), 243-244):

    n ~ (z_{1-alpha/2} + z_{power})^2 / e^2 + z_{1-alpha/2}^2 / 2   ((1.95996 + 0.84162)^2 = 7.849; 1.95996^2/2 = 1.921)

which is within one repeat of the exact n for e <= 1. The observed difference and standard deviation are plugged in
for delta and sigma ("if the observed difference were the true one"): a plan, not a promise, since both are
estimated from K repeats. ``detectable`` inverts power(K, e) = 80% for e: the minimum detectable effect of K repeats.

For differences of two independent means from standard errors (Table 2's Welch comparison, over n images each)
``images_needed`` scales both standard errors by sqrt(n_now / n) and uses the normal approximation (its df are in the
hundreds): n = n_now (z_{1-alpha/2} + z_{power})^2 (se_a^2 + se_b^2) / delta^2.
"""

from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

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


ALPHA, POWER = 0.05, 0.80
MAX_GROWTH = 100  # a plan needing more than 100x the repeats (or images) at hand: the difference is "near 0"


def paired_power(n: int, effect: float, alpha: float = ALPHA) -> float:
    """The power of the two-sided paired t-test at level ``alpha`` over n pairs when |mean| / sd of d is ``effect``."""
    df, shift = n - 1, abs(effect) * math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    lower = float(stats.nct.cdf(-crit, df, shift))  # the wrong-sign tail: scipy gives nan where it is ~0 (large shift)
    return float(stats.nct.sf(crit, df, shift)) + (lower if math.isfinite(lower) else 0.0)


def guenther_repeats(effect: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Guenther's (1981) approximation of the pairs needed: ((z_a + z_b) / e)^2 + z_a^2 / 2 (not rounded)."""
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    return ((z_a + z_b) / abs(effect)) ** 2 + z_a ** 2 / 2


def repeats_needed(difference: float, sd: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """The smallest number of paired repeats n >= 2 whose t-test decides a true mean ``difference`` with paired
    standard deviation ``sd`` at level ``alpha`` with the ``power`` asked; None when the difference is 0 (never)."""
    if not (math.isfinite(difference) and math.isfinite(sd)) or sd < 0:
        raise ValueError(f"difference {difference} and sd {sd} must be finite, sd >= 0")
    if difference == 0:
        return None
    if sd == 0:
        return 2  # every d_k equal and non-zero: two repeats already give an interval of width 0 away from 0
    effect = abs(difference) / sd
    n = max(2, math.ceil(guenther_repeats(effect, alpha, power)))  # a start within a repeat or two of the answer
    while paired_power(n, effect, alpha) < power:
        n += 1
    while n > 2 and paired_power(n - 1, effect, alpha) >= power:
        n -= 1
    return n


def detectable(K: int, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The minimum detectable effect of K paired repeats: the true |mean difference| that their t-test decides with
    the ``power`` asked, given the paired standard deviation ``sd``."""
    if K < 2:
        raise ValueError("a paired interval needs K >= 2 repeats")
    if sd == 0:
        return 0.0
    hi = 1.0
    while paired_power(K, hi, alpha) < power:
        hi *= 2
    return sd * optimize.brentq(lambda e: paired_power(K, e, alpha) - power, 0.0, hi, xtol=1e-10)


def images_needed(difference: float, se_a: float, n_a: int, se_b: float, n_b: int, alpha: float = ALPHA,
                  power: float = POWER) -> int | None:
    """Images per cell for a Welch comparison of two means (standard errors se at n images each) to decide a true
    ``difference``: the normal approximation, with both standard errors scaled as 1/sqrt(n). None when 0."""
    if difference == 0:
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return max(2, math.ceil(z ** 2 * (se_a ** 2 * n_a + se_b ** 2 * n_b) / difference ** 2))


def welch_detectable(se_a: float, se_b: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The minimum detectable difference of two means with these standard errors (normal approximation)."""
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * math.hypot(se_a, se_b))


@dataclass(frozen=True)
class Plan:
    """What deciding one within-noise comparison would take. ``repeats`` is None when the observed difference is near
    0 (a plan over MAX_GROWTH times the repeats at hand, or a difference of exactly 0): then only ``detectable`` is
    given. The costs count only the new images of both cells (grown cells keep their repeats)."""

    K: int  # repeats at hand (images per cell for a Welch comparison)
    repeats: int | None  # repeats needed (images per cell, Welch)
    detectable: float  # the smallest |difference| the data at hand would decide with 80% power
    images: int | None = None  # new images to sample, both cells together
    nfe: int | None = None  # network evaluations of those images
    seconds: float | None = None  # their sampling time at the store's measured rate (None: no rate measured)
    unit: str = "repeats"  # "repeats" (paired), "blocks" (paired, a blocked cell's), or "images" (per cell, Welch)
    per_unit: int | None = None  # images per repeat or block


def paired_plan(difference: float, sd: float, K: int, N: int, nfe_a: int, nfe_b: int,
                seconds_per_image_nfe: float | None, have: tuple[int, int] | None = None, unit: str = "repeats") -> Plan:
    """The plan of a paired comparison over K repeats of N images, with the cells' NFE per image and the rate;
    ``have``: the repeats each cell holds already (a grown cell may hold more than the K paired), default (K, K).
    ``unit="blocks"``: K jackknife blocks of N images each; their pseudo-values' sd scales as 1 / sqrt(images per
    block), like a repeat's, so n blocks of N images is the plan whatever the blocks are regrouped into."""
    mde = detectable(K, sd)
    n = repeats_needed(difference, sd)
    if n is None or n > MAX_GROWTH * K:
        return Plan(K, None, mde, unit=unit, per_unit=N)
    new_a, new_b = (max(n - k, 0) * N for k in (have or (K, K)))
    nfe = new_a * nfe_a + new_b * nfe_b
    seconds = None if seconds_per_image_nfe is None else nfe * seconds_per_image_nfe
    return Plan(K, n, mde, new_a + new_b, nfe, seconds, unit=unit, per_unit=N)


def welch_plan(difference: float, se_a: float, n_a: int, se_b: float, n_b: int, nfe_a: int, nfe_b: int,
               seconds_per_image_nfe: float | None) -> Plan:
    """The plan of a Welch comparison of two cells of n_a and n_b images (Table 2's reconstructions)."""
    mde, n_now = welch_detectable(se_a, se_b), min(n_a, n_b)
    n = images_needed(difference, se_a, n_a, se_b, n_b)
    if n is None or n > MAX_GROWTH * n_now:
        return Plan(n_now, None, mde, unit="images")
    new_a, new_b = max(n - n_a, 0), max(n - n_b, 0)
    nfe = new_a * nfe_a + new_b * nfe_b
    seconds = None if seconds_per_image_nfe is None else nfe * seconds_per_image_nfe
    return Plan(n_now, n, mde, new_a + new_b, nfe, seconds, unit="images")
