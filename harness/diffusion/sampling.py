"""The generalized generative process of DDIM (Song, Meng, Ermon, ICLR 2021) and its inversion.

Notation: a_t = alpha_bar(t) (the paper's alpha_t), eps = eps_theta(x_t, t), t_prev is the next entry of tau
on the way down (-1 for the data, a = 1).

* Eq. (9), predicted x0:        f(x_t) = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)
* Eq. (12), one step:           x_prev = sqrt(a_prev) f(x_t) + sqrt(1 - a_prev - sigma^2) eps + sigma z
* Eq. (16), sigma(eta):         sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev)
  eta = 0 is DDIM (deterministic), eta = 1 is DDPM (sigma equals the DDPM posterior std). As in the official
  ``generalized_steps``, f is not clipped, so the last step (a_prev = 1) returns the unclipped prediction.
* sigma-hat (Table 1, last row; official ``ddpm_steps``): sigma_hat = sqrt(1 - a_t / a_prev), x0 clipped to
  [-1, 1], the DDPM posterior mean, and no noise on the last step.
* Encoding (sec. 4.3, 5.4): the eta = 0 update run along tau in increasing order, with the network evaluated at
  the source timestep (the official maintainers' convention, ermongroup/ddim issue #9).

The model is any callable ``model(x, t)``; t is a float tensor holding the integer timestep, of shape [1] (shared by
the batch, broadcast by the model) as the sampler calls it, or [batch].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from harness.core.errors import HarnessError
from harness.diffusion.eta import SIGMA_HAT, parse_eta
from harness.diffusion.noise import DEFAULT_NOISE_SCHEME, ImageNoise
from harness.diffusion.schedule import NoiseSchedule
from harness.diffusion.trajectory import step_pairs

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, a_t: float) -> torch.Tensor:
    """Eq. (9): f(x_t) = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)."""
    return (x_t - math.sqrt(1.0 - a_t) * eps) / math.sqrt(a_t)


def sigma_eta(a_t: float, a_prev: float, eta: float) -> float:
    """Eq. (16): sigma(eta) = eta sqrt((1 - a_prev)/(1 - a_t)) sqrt(1 - a_t/a_prev)."""
    if a_t == a_prev:  # a repeated timestep (quadratic tau): the step is the identity
        return 0.0
    return eta * math.sqrt((1.0 - a_prev) / (1.0 - a_t)) * math.sqrt(1.0 - a_t / a_prev)


def sigma_hat(a_t: float, a_prev: float) -> float:
    """Table 1's sigma-hat: sqrt(1 - a_t / a_prev), the std of Ho et al.'s larger-variance sampler."""
    return math.sqrt(max(0.0, 1.0 - a_t / a_prev))


def generalized_step(
    x_t: torch.Tensor, eps: torch.Tensor, a_t: float, a_prev: float, sigma: float, z: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (12): x_prev = sqrt(a_prev) f(x_t) + sqrt(1 - a_prev - sigma^2) eps + sigma z. Returns (x_prev, f(x_t))."""
    x0 = predict_x0(x_t, eps, a_t)
    x_prev = math.sqrt(a_prev) * x0 + math.sqrt(max(0.0, 1.0 - a_prev - sigma**2)) * eps
    if sigma > 0:
        x_prev = x_prev + sigma * z
    return x_prev, x0


def sigma_hat_step(
    x_t: torch.Tensor, eps: torch.Tensor, a_t: float, a_prev: float, z: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Official ``ddpm_steps``: x0 clipped to [-1, 1], posterior mean of q(x_prev | x_t, x0), std sigma-hat.

    With beta = 1 - a_t/a_prev: mean = (sqrt(a_prev) beta x0 + sqrt(1 - beta) (1 - a_prev) x_t) / (1 - a_t).
    ``z`` is None on the last step (no noise). Returns (x_prev, clipped x0).
    """
    x0 = predict_x0(x_t, eps, a_t).clamp(-1.0, 1.0)
    beta = 1.0 - a_t / a_prev
    mean = (math.sqrt(a_prev) * beta * x0 + math.sqrt(1.0 - beta) * (1.0 - a_prev) * x_t) / (1.0 - a_t)
    if z is None:
        return mean, x0
    return mean + math.sqrt(beta) * z, x0


def _timestep(x: torch.Tensor, t: int) -> torch.Tensor:
    """The timestep of the whole batch as a [1] tensor; models broadcast it over the batch."""
    return torch.full((1,), float(t), dtype=x.dtype, device=x.device)


@torch.no_grad()
def sample(
    model: Model,
    x_T: torch.Tensor,
    tau: Sequence[int],
    schedule: NoiseSchedule,
    eta: float | str = 0.0,
    noise: ImageNoise | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Run the generative process from x_T down tau (one network evaluation per entry) and return x_0: DDIM (Song,
    Meng, Ermon, ICLR 2021), the sampler ``ddim`` of harness.diffusion.samplers.

    x_prev = sqrt(a_prev) (x_t - sqrt(1 - a_t) eps) / sqrt(a_t) + sqrt(1 - a_prev - sigma^2) eps + sigma z (eq. 12),
    sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev) (eq. 16), or eta = "hat" (sigma-hat process).
    eta = 0 is the first-order (Euler) solver of the probability-flow ODE in (sigma / alpha, x / alpha). NFE = len(tau).

    ``eta`` is a number >= 0 (eq. 12/16) or ``"hat"`` (sigma-hat process). Noise z is drawn from ``noise``
    (per-image streams) only on steps whose sigma > 0. ``callback(i, t, x_prev, x0_pred)`` runs after step i.
    """
    eta = parse_eta(eta)
    x = x_T
    for i, (t, a_t, a_prev, sigma) in enumerate(process_steps(tau, schedule, eta)):
        eps = model(x, _timestep(x, t))
        if eta == SIGMA_HAT:
            z = _draw(noise, x) if sigma > 0 and a_prev < 1.0 else None  # no noise on the last step
            x, x0 = sigma_hat_step(x, eps, a_t, a_prev, z)
        else:
            x, x0 = generalized_step(x, eps, a_t, a_prev, sigma, _draw(noise, x) if sigma > 0 else None)
        if callback is not None:
            callback(i, t, x, x0)
    return x


def process_steps(tau: Sequence[int], schedule: NoiseSchedule, eta: float | str) -> list[tuple[int, float, float, float]]:
    """(t, a_t, a_prev, sigma) for every generative step along tau, checked before any network call.

    For eta > 1, eq. (12) needs sigma^2 <= 1 - a_prev at every step; a process that violates it is refused.
    """
    steps = []
    for t, t_prev in step_pairs(list(tau)):
        a_t, a_prev = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(t_prev))
        if eta == SIGMA_HAT:
            sigma = sigma_hat(a_t, a_prev)
        else:
            sigma = sigma_eta(a_t, a_prev, eta)
            if sigma > math.sqrt(1.0 - a_prev + 1e-12):  # sigma^2 > 1 - a_prev, without squaring (eta=1e308)
                raise HarnessError(
                    f"eta={eta} is too large for the step {t} -> {t_prev}: sigma^2 exceeds 1 - alpha_prev, so eq. (12) "
                    "is undefined. Use eta <= 1 (always valid)."
                )
        steps.append((t, a_t, a_prev, sigma))
    return steps


def _draw(noise: ImageNoise | None, x: torch.Tensor) -> torch.Tensor:
    if noise is None:
        raise ValueError("a stochastic process (eta > 0 or 'hat') needs a noise source")
    return noise.randn(*x.shape[1:]).to(dtype=x.dtype)


@torch.no_grad()
def encode(
    model: Model, x0: torch.Tensor, tau: Sequence[int], schedule: NoiseSchedule, callback: StepCallback | None = None
) -> torch.Tensor:
    """DDIM inversion: x_0 -> x_{tau_S} by the eta = 0 update of eq. (12) along tau in increasing order.

    Step k maps level tau_{k-1} (tau_0 = -1, the data) to tau_k with eps evaluated at the source level tau_{k-1}:
    x_dst = sqrt(a_dst) f(x_src) + sqrt(1 - a_dst) eps(x_src, src).
    """
    x = x0
    tau = list(tau)
    for i, (t_src, t_dst) in enumerate(zip([-1] + tau[:-1], tau)):
        a_src, a_dst = float(schedule.alpha_bar(t_src)), float(schedule.alpha_bar(t_dst))
        eps = model(x, _timestep(x, t_src))
        x, x0_pred = generalized_step(x, eps, a_src, a_dst, 0.0, None)
        if callback is not None:
            callback(i, t_dst, x, x0_pred)
    return x


def decode(model: Model, x_T: torch.Tensor, tau: Sequence[int], schedule: NoiseSchedule) -> torch.Tensor:
    """The inverse of ``encode``: the deterministic (eta = 0) generative process from x_T."""
    return sample(model, x_T, tau, schedule, eta=0.0)


def reconstruction_mse(x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    """Per-image, per-dimension MSE with pixels on [0, 1] (Table 2); the reconstruction is clipped to [-1, 1]."""
    diff = (x - x_rec.clamp(-1.0, 1.0)) / 2.0
    return diff.pow(2).flatten(1).mean(dim=1)


def sample_seeded(
    model: Model,
    indices: Sequence[int],
    base_seed: int,
    shape: Sequence[int],
    tau: Sequence[int],
    schedule: NoiseSchedule,
    eta: float | str = 0.0,
    device: torch.device | str = "cpu",
    callback: StepCallback | None = None,
    noise_scheme: str = DEFAULT_NOISE_SCHEME,
    sampler: Callable[..., torch.Tensor] = sample,
) -> torch.Tensor:
    """Sample the images with the given indices; each draws x_T and its noise from its own (seed, index) stream,
    made by ``noise_scheme`` (``harness.diffusion.noise.NOISE_SCHEMES``). ``sampler``: this module's ``sample`` (the
    generalized process), or a registered sampler (harness.diffusion.samplers: ``get_sampler(name).sample``)."""
    noise = ImageNoise(base_seed, indices, device, scheme=noise_scheme)
    x_T = noise.randn(*shape)
    return sampler(model, x_T, tau, schedule, eta=eta, noise=noise, callback=callback)
