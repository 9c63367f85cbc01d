"""Scoring samples of an exact-score dataset (harness.analytic) against the true law, with no model error at all.

* ``fd_true``: the Frechet distance between the samples' mean and covariance and the mixture's closed-form ones
  (for a single Gaussian and a deterministic sampler, an affine map, this estimates the squared W2 exactly).
* ``flow_rmse`` (single Gaussian only): the root mean square over images of |x_0 - x_0*|, where x_0* is the exact
  probability-flow ODE solution from the same x_T (``analytic.exact_flow``): the sampler's own discretisation error,
  whose log-log slope against the NFE is the solver's measured order.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .analytic import GaussianMixture, exact_flow, frechet_distance
from .names import Metric
from .noise import ImageNoise


def _flow_target(mixture: GaussianMixture, x_T: torch.Tensor, t_from: int, schedule) -> torch.Tensor:
    mean = mixture.means[0].reshape(x_T.shape[1:])
    return exact_flow(x_T.double(), t_from, schedule, mean, float(mixture.stds[0]))


def score_exact(samples: torch.Tensor, repeats: int, mixture: GaussianMixture, *, seed: int, tau, schedule,
                noise_scheme: str, deterministic: bool) -> list[dict]:
    """Each repeat's metrics; repeat k is samples k*N .. (k+1)*N - 1 (N = len(samples) / repeats)."""
    n = len(samples)
    per = n // repeats
    mean, cov = mixture.mean(), mixture.covariance()
    out = []
    for r in range(repeats):
        x = samples[r * per:(r + 1) * per].double().flatten(1).numpy()
        metrics = {Metric.FD_TRUE: frechet_distance(x.mean(0), np.cov(x, rowvar=False), mean, cov)}
        if len(mixture.stds) == 1 and deterministic:
            indices = range(r * per, (r + 1) * per)
            x_T = ImageNoise(seed, indices, scheme=noise_scheme).randn(*samples.shape[1:])
            target = _flow_target(mixture, x_T, tau[-1], schedule).flatten(1).numpy()
            metrics[Metric.FLOW_RMSE] = math.sqrt(float(((x - target) ** 2).sum(1).mean()))
        out.append(metrics)
    return out
