"""A noise predictor known in closed form: the optimal eps for Gaussian-mixture data.

For data x_0 ~ sum_k pi_k N(mu_k, s_k^2 I), the noisy marginal is x_t ~ sum_k pi_k N(sqrt(a_t) mu_k, v_k I) with
v_k = a_t s_k^2 + 1 - a_t, and the minimiser of the paper's L_gamma objective is
    eps*(x_t, t) = E[eps | x_t] = -sqrt(1 - a_t) grad log q(x_t) = sqrt(1 - a_t) sum_k r_k(x_t) (x_t - sqrt(a_t) mu_k) / v_k,
with r_k the posterior responsibilities. It lets the sampler be tested without any training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .schedule import NoiseSchedule


class GaussianMixtureEps:
    """eps*(x, t) for a mixture of isotropic Gaussians over tensors of any per-sample shape."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        means: torch.Tensor,
        stds: Sequence[float],
        weights: Sequence[float] | None = None,
    ):
        self.schedule = schedule
        self.means = means.double()  # [K, *shape]
        self.stds = torch.as_tensor(stds, dtype=torch.float64)
        k = self.means.shape[0]
        self.weights = torch.as_tensor(weights if weights is not None else [1.0 / k] * k, dtype=torch.float64)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.schedule.alpha_bar(t.round().long()).reshape(-1, 1)  # [B, 1]
        xf = x.double().flatten(1)  # [B, D]
        mu = self.means.flatten(1)  # [K, D]
        d = xf.shape[1]
        v = a * self.stds**2 + (1.0 - a)  # [B, K]
        resid = xf[:, None, :] - a.sqrt()[:, :, None] * mu[None]  # [B, K, D]
        log_r = torch.log(self.weights) - 0.5 * (resid.pow(2).sum(-1) / v + d * torch.log(2 * math.pi * v))
        r = torch.softmax(log_r, dim=1)  # [B, K]
        eps = (1.0 - a).sqrt() * (r[:, :, None] * resid / v[:, :, None]).sum(1)
        return eps.reshape(x.shape).to(x.dtype)

    def sample_data(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n exact draws from the data distribution, float64."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn((n,) + tuple(self.means.shape[1:]), dtype=torch.float64, generator=generator)
        return self.means[k] + self.stds[k].reshape((n,) + (1,) * (self.means.dim() - 1)) * z
