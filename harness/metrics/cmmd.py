"""CMMD (Jayasumana et al., CVPR 2024, "Rethinking FID: Towards a Better Evaluation Metric for Image Generation";
google-research ``cmmd/distance.py``): the squared MMD between two sets of CLIP embeddings with the Gaussian RBF
kernel k(x, y) = exp(-||x - y||^2 / (2 sigma^2)), sigma = 10, times 1,000.

``estimator='biased'`` is the published code's: the means of the kernel over all pairs, the diagonal (k = 1)
included (Gretton et al. 2012, JMLR, the V-statistic of eq. 5, which the code's docstring calls "minimum-variance");
``'unbiased'`` leaves the diagonal out (the U-statistic, Gretton et al.'s eq. 3). Both in float64, by blocks of
rows, so 50,000 x 50,000 kernels never stand in memory whole.
"""

from __future__ import annotations

import torch

from harness.core.errors import HarnessError

ESTIMATORS = ("biased", "unbiased")


def kernel_sum(x: torch.Tensor, y: torch.Tensor, sigma: float, block: int = 4096) -> float:
    """sum_ij exp(-||x_i - y_j||^2 / (2 sigma^2)), float64, ``block`` rows of x at a time."""
    x, y = x.double(), y.double()
    y_sq = (y * y).sum(1)
    total = 0.0
    for start in range(0, len(x), block):
        xb = x[start:start + block]
        d2 = ((xb * xb).sum(1)[:, None] + y_sq[None, :] - 2 * xb @ y.T).clamp_min_(0)
        total += float(torch.exp(d2 / (-2 * sigma ** 2)).sum())
    return total


def mmd2(x: torch.Tensor, y: torch.Tensor, sigma: float = 10.0, scale: float = 1000.0,
         estimator: str = "biased") -> float:
    """``scale`` x the squared MMD of the samples ``x`` [n, d] and ``y`` [m, d] (module docstring)."""
    if estimator not in ESTIMATORS:
        raise HarnessError(f"unknown metrics.cmmd_estimator {estimator!r}: choose one of {ESTIMATORS}.")
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise HarnessError(f"CMMD needs at least 2 embeddings on each side, got {n} and {m}.")
    kxx, kyy, kxy = kernel_sum(x, x, sigma), kernel_sum(y, y, sigma), kernel_sum(x, y, sigma)
    if estimator == "biased":
        value = kxx / n ** 2 + kyy / m ** 2 - 2 * kxy / (n * m)
    else:  # the diagonal holds k(x_i, x_i) = 1
        value = (kxx - n) / (n * (n - 1)) + (kyy - m) / (m * (m - 1)) - 2 * kxy / (n * m)
    return scale * value
