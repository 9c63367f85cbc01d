"""The few statistics the report needs: Kendall's tau-b, a least-squares line with R^2, a log-log slope."""

from __future__ import annotations

import math
from collections.abc import Sequence


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either variable handled as scipy.stats.kendalltau does); nan for < 2 pairs.

    tau_b = (C - D) / sqrt((n0 - n1)(n0 - n2)), n0 = n(n-1)/2, n1 / n2 the pairs tied in x / in y.
    """
    n = len(x)
    if n != len(y):
        raise ValueError("x and y must have the same length")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                ties_x += 1
                ties_y += 1
            elif dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    n0 = n * (n - 1) // 2
    denom = math.sqrt((n0 - ties_x) * (n0 - ties_y)) if n0 else 0.0
    return (concordant - discordant) / denom if denom > 0 else float("nan")


def linear_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x: (intercept a, slope b, R^2). Needs >= 2 distinct x."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((xi - mx) ** 2 for xi in x)
    if n < 2 or sxx == 0:
        return float("nan"), float("nan"), float("nan")
    sxy = sum((xi - mx) * (yi - my) for xi, yi in zip(x, y))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_tot = sum((yi - my) ** 2 for yi in y)
    ss_res = sum((yi - intercept - slope * xi) ** 2 for xi, yi in zip(x, y))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return intercept, slope, r2


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Slope of log y against log x (1 means y proportional to x); nan without 2 distinct positive x."""
    pairs = [(math.log(a), math.log(b)) for a, b in zip(x, y) if a > 0 and b > 0]
    if len(pairs) < 2:
        return float("nan")
    return linear_fit([p[0] for p in pairs], [p[1] for p in pairs])[1]
