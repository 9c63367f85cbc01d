"""Scoring at the paper's budget: one repeat of N images as K disjoint blocks and a delete-one-block jackknife.

The headline is the metric of all N images pooled (the paper's FID of 50,000). Leaving block k out gives theta_(k)
on N (K - 1) / K images; the pseudo-values (Quenouille 1956, Tukey 1958; blocks: Kuensch 1989)

    p_k = K theta - (K - 1) theta_(k)

have mean theta_J = K theta - (K - 1) mean_k theta_(k), free of a bias c/N (FID's, Chong & Forsyth 2020), and
sd(p) / sqrt(K) estimates the standard error of theta (Efron & Stein 1981: conservatively). A difference of two
cells that share x_T block for block has the pseudo-values p_k(a) - p_k(b) (the jackknife is linear in them), so the
report's paired t-interval over "repeats" applied to the p_k is the jackknife interval of the bias-corrected
difference. Derivation and calibration: docs/evidence.md. Generic over metrics: any metric computed from a feature
matrix (``metric_of``) is jackknifed by recomputing it on the other K - 1 blocks; the Frechet distance has the
closed form from block moments (``frechet_jackknife``), used where many replications are needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import torch

from harness.core.errors import HarnessError


def check_blocks(n: int, blocks: int) -> int:
    """The images per block of ``n`` images in ``blocks`` equal blocks (one clear error otherwise)."""
    if blocks < 2 or n % blocks or n // blocks < 2:
        raise HarnessError(f"metrics.blocks={blocks} must divide N={n} into blocks of at least 2 images: set "
                           "metrics.blocks to a divisor of N (10 for N=50000), or 1 for no blocks.")
    return n // blocks


def check_repeat_size(n: int, prc_neighborhood: int, blocks: int) -> None:
    """Refuse a repeat of ``n`` images that precision/recall's k-NN or the blocks cannot use (the cell checks it before
    any work; the suite again for callers of the library)."""
    if prc_neighborhood >= n:
        raise HarnessError(f"precision/recall needs more than metrics.prc_neighborhood={prc_neighborhood} images per "
                           f"repeat, got N={n}: raise N or lower metrics.prc_neighborhood.")
    if blocks > 1:
        check_blocks(n, blocks)


def without_block(features: Mapping, k: int, blocks: int) -> dict:
    """Every feature matrix of ``features`` ({key: [n, d]}) without rows of block k of ``blocks``."""
    out = {}
    for key, v in features.items():
        per = len(v) // blocks
        out[key] = torch.cat([v[:k * per], v[(k + 1) * per:]]) if isinstance(v, torch.Tensor) else \
            np.concatenate([v[:k * per], v[(k + 1) * per:]])
    return out


def pseudo_values(full: Mapping[str, float], leave_out: list[Mapping[str, float]]) -> list[dict[str, float]]:
    """p_k = K theta - (K - 1) theta_(k) per metric, for the K delete-one-block values ``leave_out``."""
    K = len(leave_out)
    return [{m: K * full[m] - (K - 1) * loo[m] for m in full if m in loo} for loo in leave_out]


def jackknife(features: Mapping, blocks: int, metric_of: Callable[[Mapping], dict[str, float]],
              full: Mapping[str, float] | None = None) -> tuple[dict[str, float], list[dict[str, float]]]:
    """(theta of all images, the K pseudo-values) of every metric ``metric_of`` computes from the features."""
    full = dict(metric_of(features)) if full is None else dict(full)
    return full, pseudo_values(full, [metric_of(without_block(features, k, blocks)) for k in range(blocks)])


def block_moments(x: np.ndarray, blocks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block: (counts [K], sums [K, d], sums of outer products [K, d, d]), float64."""
    x = np.asarray(x, dtype=np.float64)
    per = len(x) // blocks
    xb = x[:per * blocks].reshape(blocks, per, -1)
    return np.full(blocks, per), xb.sum(1), np.swapaxes(xb, 1, 2) @ xb


def _stacked_fd(means: np.ndarray, covs: np.ndarray, ref_mu: np.ndarray, ref_root: np.ndarray,
                ref_trace: float) -> np.ndarray:
    """Frechet distances of stacked (mean, cov) to one reference whose covariance's root is ``ref_root``."""
    middle = ref_root @ covs @ ref_root
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + np.swapaxes(middle, 1, 2)) / 2), 0.0, None)).sum(-1)
    return ((means - ref_mu) ** 2).sum(-1) + np.trace(covs, axis1=1, axis2=2) + ref_trace - 2.0 * cross


def frechet_jackknife(x: np.ndarray, blocks: int, ref_mu: np.ndarray, ref_root: np.ndarray,
                      ref_cov: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(FD of all rows, the K delete-one-block FDs, the K FDs of each block alone) to a reference N(mu, C) with
    ``ref_root`` = C^{1/2}, from block moments (analytic.frechet_distance's formula, vectorised)."""
    return frechet_from_moments(*block_moments(x, blocks), ref_mu, ref_root, ref_cov)


def merge_blocks(moments: tuple[np.ndarray, ...], blocks: int) -> tuple[np.ndarray, ...]:
    """Block moments of K' blocks summed into ``blocks`` blocks of adjacent ones (K' a multiple of ``blocks``)."""
    return tuple(m.reshape(blocks, -1, *m.shape[1:]).sum(1) for m in moments)


def frechet_from_moments(n: np.ndarray, s: np.ndarray, ss: np.ndarray, ref_mu: np.ndarray, ref_root: np.ndarray,
                         ref_cov: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """``frechet_jackknife`` from block moments (``block_moments``)."""
    tot_n, tot_s, tot_ss = n.sum(), s.sum(0), ss.sum(0)

    def stats(count, sums, outer):
        mean = sums / count[:, None]
        return mean, (outer - count[:, None, None] * np.einsum("ki,kj->kij", mean, mean)) / (count - 1)[:, None, None]

    groups = [(np.array([tot_n]), tot_s[None], tot_ss[None]), (tot_n - n, tot_s - s, tot_ss - ss), (n, s, ss)]
    fd = [_stacked_fd(*stats(*g), ref_mu, ref_root, float(np.trace(ref_cov))) for g in groups]
    return float(fd[0][0]), fd[1], fd[2]


def t_quantile(df: int) -> float:
    from scipy import stats  # lazy: scipy: only when it is used

    return float(stats.t.ppf(0.975, df))


def jackknife_interval(theta: float, pseudo: list[float]) -> tuple[float, float]:
    """theta -+ t(K-1) sd(p) / sqrt(K): the 95% interval of E[theta] (the metric at the cell's N)."""
    K = len(pseudo)
    half = t_quantile(K - 1) * float(np.std(pseudo, ddof=1)) / math.sqrt(K)
    return theta - half, theta + half
