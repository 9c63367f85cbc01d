"""A noise predictor known in closed form: the optimal eps for Gaussian-mixture data.

For data x_0 ~ sum_k pi_k N(mu_k, s_k^2 I), the noisy marginal is x_t ~ sum_k pi_k N(sqrt(a_t) mu_k, v_k I) with
v_k = a_t s_k^2 + 1 - a_t, and the minimiser of the paper's L_gamma objective is
    eps*(x_t, t) = E[eps | x_t] = -sqrt(1 - a_t) grad log q(x_t) = sqrt(1 - a_t) sum_k r_k(x_t) (x_t - sqrt(a_t) mu_k) / v_k,
with r_k the posterior responsibilities. It lets the sampler be tested without any training.

Exact-score datasets (``exact_mixtures``): named mixtures whose eps* is known in closed form, so that a sampler's
error can be measured with no model error at all: ``ring2d`` (8 Gaussians on a circle, for pictures), ``glyphs64``
(four 8x8 glyphs shaped like the digits images), ``gaussian64`` (one Gaussian, 8x8). Their true mean and covariance
are closed forms, ``frechet_distance`` / ``gaussian_w2`` compare Gaussians, and ``exact_flow`` is the exact solution
of the probability-flow ODE for a single isotropic Gaussian.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from harness.core.errors import HarnessError
from harness.diffusion.schedule import NoiseSchedule


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
        return _draw(self.means, self.stds, self.weights, n, generator)


def _draw(
    means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor, n: int, generator: torch.Generator
) -> torch.Tensor:
    k = torch.multinomial(weights, n, replacement=True, generator=generator)
    z = torch.randn((n,) + tuple(means.shape[1:]), dtype=torch.float64, generator=generator)
    return means[k] + stds[k].reshape((n,) + (1,) * (means.dim() - 1)) * z


@dataclass(frozen=True)
class GaussianMixture:
    """The data distribution sum_k pi_k N(mu_k, s_k^2 I) over tensors of shape ``means.shape[1:]`` (float64)."""

    name: str
    means: torch.Tensor  # [K, *shape]
    stds: torch.Tensor  # [K]
    weights: torch.Tensor  # [K], sums to 1
    description: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.means.shape[1:])

    def eps_model(self, schedule: NoiseSchedule) -> GaussianMixtureEps:
        """The exact eps*(x, t) of this data under ``schedule``."""
        return GaussianMixtureEps(schedule, self.means, self.stds.tolist(), self.weights.tolist())

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n exact draws, float64, shape [n, *shape]."""
        return _draw(self.means, self.stds, self.weights, n, generator)

    def mean(self) -> np.ndarray:
        """E[x] = sum_k pi_k mu_k, flattened to [D]."""
        return (self.weights[:, None] * self.means.flatten(1)).sum(0).numpy()

    def covariance(self) -> np.ndarray:
        """Cov[x] = sum_k pi_k (s_k^2 I + mu_k mu_k^T) - E[x] E[x]^T (law of total covariance), [D, D]."""
        mu = self.means.flatten(1).numpy()
        pi, var = self.weights.numpy(), self.stds.numpy() ** 2
        mean = pi @ mu
        second = np.eye(mu.shape[1]) * float(pi @ var) + (mu * pi[:, None]).T @ mu
        return second - np.outer(mean, mean)


_GLYPHS = {  # 8x8 strokes like the digits dataset's images: '#' is ink (+0.8), '.' background (-0.8)
    "zero": ["..####..", ".#....#.", ".#....#.", ".#....#.", ".#....#.", ".#....#.", ".#....#.", "..####.."],
    "one": ["...##...", "..###...", "...##...", "...##...", "...##...", "...##...", "...##...", "..####.."],
    "four": [".#...#..", ".#...#..", ".#...#..", ".######.", ".....#..", ".....#..", ".....#..", ".....#.."],
    "seven": [".######.", "......#.", ".....#..", ".....#..", "....#...", "....#...", "...#....", "...#...."],
}


def _glyph(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[0.8 if c == "#" else -0.8 for c in row] for row in rows], dtype=torch.float64)[None]


def exact_mixtures() -> dict[str, GaussianMixture]:
    """The named exact-score datasets (built fresh on each call; nothing random)."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    ring = 0.7 * torch.stack([angles.cos(), angles.sin()], dim=1)
    glyphs = torch.stack([_glyph(rows) for rows in _GLYPHS.values()])
    ramp = torch.linspace(-0.5, 0.5, 8, dtype=torch.float64)
    gradient = (0.6 * ramp[:, None] + 0.4 * ramp[None, :])[None, None]
    f64 = torch.float64
    mixtures = [
        GaussianMixture("ring2d", ring, torch.full((8,), 0.06, dtype=f64), torch.full((8,), 1 / 8, dtype=f64),
                        "8 equal Gaussians (std 0.06) on a circle of radius 0.7, 2-D"),
        GaussianMixture("glyphs64", glyphs, torch.tensor([0.2, 0.15, 0.2, 0.25], dtype=f64),
                        torch.tensor([0.3, 0.2, 0.25, 0.25], dtype=f64),
                        "4 glyphs (0, 1, 4, 7) as 1x8x8 images with isotropic noise"),
        GaussianMixture("gaussian64", gradient, torch.tensor([0.5], dtype=f64), torch.ones(1, dtype=f64),
                        "one Gaussian N(gradient image, 0.5^2 I), 1x8x8"),
    ]
    return {m.name: m for m in mixtures}


def exact_mixture(name: str) -> GaussianMixture:
    mixtures = exact_mixtures()
    if name not in mixtures:
        raise HarnessError(f"Unknown exact-score dataset {name!r}: choose one of {', '.join(mixtures)}.")
    return mixtures[name]


def psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """The symmetric square root of a PSD matrix (``numpy.linalg.eigh``, negative round-off clipped to 0)."""
    c = np.atleast_2d(np.asarray(cov, dtype=np.float64))
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray,
                     root1: np.ndarray | None = None) -> float:
    """|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^{1/2} C2 C1^{1/2})^{1/2}), in float64.

    The usual formula writes tr((C1 C2)^{1/2}) and takes ``scipy.linalg.sqrtm`` of the non-symmetric C1 C2; it is
    similar to the symmetric PSD matrix C1^{1/2} C2 C1^{1/2}, so the same trace is the sum of the square roots of that
    matrix's eigenvalues (``numpy.linalg.eigh``, negative round-off clipped to 0): real, and stable when C1 or C2 is
    singular. For two Gaussians this is the squared 2-Wasserstein distance (see ``gaussian_w2``). ``root1``:
    ``psd_sqrt(cov1)`` when already known (many distances to one reference).
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64).ravel(), np.asarray(mu2, dtype=np.float64).ravel()
    c1, c2 = (np.atleast_2d(np.asarray(c, dtype=np.float64)) for c in (cov1, cov2))
    root1 = psd_sqrt(c1) if root1 is None else root1
    middle = root1 @ c2 @ root1
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2.0 * cross)


def gaussian_w2(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """The 2-Wasserstein distance between N(mu1, C1) and N(mu2, C2): the square root of their Frechet distance,
    which for two Gaussians is exactly W2^2."""
    return math.sqrt(max(0.0, frechet_distance(mu1, cov1, mu2, cov2)))


def exact_flow(
    x: torch.Tensor, t_from: int, schedule: NoiseSchedule, mean: torch.Tensor | float, std: float, t_to: int = -1
) -> torch.Tensor:
    """The probability-flow ODE solution from level ``t_from`` to ``t_to`` (default the data) for data N(mean, std^2 I).

    The marginal at level t is N(sqrt(a_t) mean, v_t I), v_t = a_t std^2 + 1 - a_t; the flow is the isotropic affine map
    between marginals, so z = (x_t - sqrt(a_t) mean) / sqrt(v_t) is constant along it:
        x_{t_to} = sqrt(a_to) mean + sqrt(v_to) (x - sqrt(a_from) mean) / sqrt(v_from).
    It depends on the schedule only through alpha_bar at the two ends. Computed in float64, returned in x's dtype.
    """
    a_from, a_to = float(schedule.alpha_bar(t_from)), float(schedule.alpha_bar(t_to))
    mean = torch.as_tensor(mean, dtype=torch.float64)
    v_from, v_to = a_from * std**2 + 1 - a_from, a_to * std**2 + 1 - a_to
    z = (x.double() - math.sqrt(a_from) * mean) / math.sqrt(v_from)
    return (math.sqrt(a_to) * mean + math.sqrt(v_to) * z).to(x.dtype)


def log_snr_linear_schedule(T: int = 961, lambda_max: float = 10.0, lambda_min: float = -5.0) -> NoiseSchedule:
    """A schedule whose lambda = log(alpha / sigma) falls linearly from ``lambda_max`` at t = 0 to ``lambda_min`` at
    t = T - 1 (alpha_bar(t) = sigmoid(2 lambda(t))), for measuring solver orders: on it a uniform tau is uniform in
    lambda, with equal steps in every parametrisation the solvers use, and the step from t = 0 into the data starts so
    near sigma = 0 (sigma / alpha = e^{-lambda_max}) that its own first-order error is negligible."""
    if not (math.isfinite(lambda_max) and math.isfinite(lambda_min) and lambda_max > lambda_min):
        raise HarnessError(f"diffusion.lambda_max={lambda_max} and diffusion.lambda_min={lambda_min} are not a log-SNR "
                           "schedule: set finite values with lambda_max > lambda_min (defaults: 10 and -5).")
    lam = torch.linspace(lambda_max, lambda_min, T, dtype=torch.float64)
    alpha_bar = torch.sigmoid(2 * lam)
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    return NoiseSchedule(1.0 - alpha_bar / previous)
