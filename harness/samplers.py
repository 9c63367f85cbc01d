"""The successors of DDIM: solvers of the same probability-flow ODE on a discrete-time eps model, and a registry.

Every sampler has one signature,

    sample_<name>(model, x_T, tau, schedule, *, eta=0.0, noise=None, callback=None) -> x_0

``tau`` is the increasing list of timesteps of ``trajectory.timesteps``: the sampler starts from x_T at level tau[-1]
and steps down tau, then from tau[0] into the data (t = -1, alpha_bar = 1). ``callback(i, t, x, x0_pred)`` runs after
step i, with t the level the step starts from, x the new state and x0_pred the data prediction of the model at the
step's start. Only ``ddim`` uses ``eta`` and ``noise``; every other sampler is deterministic and refuses eta != 0.

Notation (float64 scalars), for a level t with a = alpha_bar(t):
    alpha = sqrt(a), sigma = sqrt(1 - a), lambda = log(alpha / sigma) (half the log-SNR), x_t = alpha x_0 + sigma eps;
    data prediction x0(x, t) = (x - sigma eps(x, t)) / alpha (DDIM eq. 9); EDM's noise level sigma / alpha.
The data is sigma = 0, lambda = +inf. A higher-order formula is undefined on the step into the data (it would need
the model at sigma = 0, or divides by an infinite step in lambda), so that step is DDIM's first-order step, which
there returns x0_pred(x_{tau_0}); this is diffusers' ``final_sigmas_type="zero"`` / ``lower_order_final``.

The model is only evaluated at the integer timesteps it was trained on. The intermediate points of single-step
methods are put on that grid (``_interior``), and every coefficient is computed from the realised lambdas, so the
formulas written for a general ratio r stay exact. Methods that need room between two levels (the intermediate
points, PNDM's half-step) and the multistep methods (which divide by step sizes) refuse a tau that has none, with a
HarnessError that names the fix; ``ddim`` keeps accepting repeated timesteps (the paper's quadratic tau).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from . import sampling
from .errors import HarnessError
from .noise import ImageNoise
from .sampling import Model, StepCallback, generalized_step, parse_eta, predict_x0
from .schedule import NoiseSchedule
from .trajectory import step_pairs, timesteps


class _Level(NamedTuple):
    """A noise level: timestep t (-1 is the data), alpha_bar, alpha, sigma and lambda, all float64."""

    t: int
    a: float
    alpha: float
    sigma: float
    lam: float


def _level(schedule: NoiseSchedule, t: int) -> _Level:
    a = float(schedule.alpha_bar(t))
    alpha, sigma = math.sqrt(a), math.sqrt(1.0 - a)
    return _Level(t, a, alpha, sigma, math.log(alpha / sigma) if sigma > 0 else math.inf)


def _eps(model: Model, x: torch.Tensor, t: int) -> torch.Tensor:
    return model(x, sampling._timestep(x, t))


def _transfer(x: torch.Tensor, eps: torch.Tensor, s: _Level, t: _Level) -> torch.Tensor:
    """The deterministic DDIM step from level s to level t with noise estimate eps (eq. 12, sigma = 0)."""
    return generalized_step(x, eps, s.a, t.a, 0.0, None)[0]


def _interior(schedule: NoiseSchedule, top: int, bottom: int, target: float) -> _Level:
    """The level strictly between timesteps ``bottom`` and ``top`` whose lambda is nearest to ``target``."""
    candidates = torch.arange(bottom + 1, top)
    a = schedule.alpha_bar(candidates)
    lam = 0.5 * (torch.log(a) - torch.log1p(-a))
    return _level(schedule, int(candidates[(lam - target).abs().argmin()]))


# --- validation and expected NFE ---------------------------------------------------------------------------------

def check_eta(name: str, eta: float | str) -> None:
    """Only ``ddim`` takes eta; the others refuse any eta but 0 with a message naming the fix."""
    if SAMPLERS[name].uses_eta:
        return
    if parse_eta(eta) != 0.0:
        raise HarnessError(
            f"Sampler {name!r} is a deterministic ODE solver and takes no eta (got eta={eta!r}): set eta=0, "
            "or use sampler=ddim, the only sampler with eta."
        )


def _check_tau(name: str, tau: Sequence[int], width: int = 1, top_steps: int | None = None) -> list[int]:
    """tau as a list of ints, non-empty, >= 0 and strictly increasing; the ``top_steps`` steps from the top (all
    steps above tau[0] when None) must each span at least ``width`` timesteps."""
    tau = [int(t) for t in tau]
    if not tau or tau[0] < 0:
        raise HarnessError(f"Sampler {name!r} needs a non-empty tau of timesteps >= 0, got {tau!r}.")
    gaps = [b - a for a, b in zip(tau, tau[1:])]
    if any(g < 1 for g in gaps):
        raise HarnessError(
            f"Sampler {name!r} needs strictly increasing timesteps, but tau repeats some (the 'quad' trajectory "
            "does for large S). Use fewer steps, the 'uniform' trajectory, or sampler=ddim."
        )
    checked = gaps if top_steps is None else gaps[len(gaps) - top_steps:]
    if any(g < width for g in checked):
        raise HarnessError(
            f"Sampler {name!r} needs each of its {'multi-stage' if top_steps is None else f'first {top_steps}'} "
            f"steps to span at least {width} timesteps (its intermediate points lie strictly inside), but tau has "
            f"a step of {min(checked)}. Use fewer steps, or sampler=plms / dpmpp_2m (no intermediate points)."
        )
    return tau


def _pndm_warmup(n: int) -> int:
    """F-PNDM's Runge-Kutta warm-up steps for n generative steps: 3, but never the step into the data."""
    return max(0, min(3, n - 1))


def nfe_ddim(tau: Sequence[int]) -> int:
    if len(tau) == 0:
        raise HarnessError("Sampler 'ddim' needs a non-empty tau.")
    return len(tau)


def nfe_plms(tau: Sequence[int]) -> int:
    n = len(_check_tau("plms", tau))
    return n + 1 if n > 1 else 1


def nfe_pndm(tau: Sequence[int]) -> int:
    n = len(tau)
    k = _pndm_warmup(n)
    _check_tau("pndm", tau, width=2, top_steps=k)
    return n + 3 * k


def nfe_dpm_solver_2(tau: Sequence[int]) -> int:
    return 2 * len(_check_tau("dpm_solver_2", tau, width=2)) - 1


def nfe_dpm_solver_3(tau: Sequence[int]) -> int:
    return 3 * len(_check_tau("dpm_solver_3", tau, width=3)) - 2


def nfe_dpmpp_2m(tau: Sequence[int]) -> int:
    return len(_check_tau("dpmpp_2m", tau))


def nfe_unipc(tau: Sequence[int]) -> int:
    return len(_check_tau("unipc", tau))


def nfe_heun(tau: Sequence[int]) -> int:
    return 2 * len(_check_tau("heun", tau)) - 1


def _prepare(name: str, tau: Sequence[int], schedule: NoiseSchedule, eta: float | str) -> list[int]:
    """Refuse eta, validate tau (via the sampler's NFE rule) and its range, before any network call."""
    check_eta(name, eta)
    SAMPLERS[name].nfe(tau)
    tau = [int(t) for t in tau]
    if tau[-1] >= schedule.T:
        raise HarnessError(
            f"tau reaches timestep {tau[-1]}, beyond the schedule's last one ({schedule.T - 1}): build tau for "
            f"T = {schedule.T} (trajectory.timesteps(kind, S, T))."
        )
    return tau


# --- the samplers ------------------------------------------------------------------------------------------------

def sample_ddim(
    model: Model,
    x_T: torch.Tensor,
    tau: Sequence[int],
    schedule: NoiseSchedule,
    *,
    eta: float | str = 0.0,
    noise: ImageNoise | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """DDIM (Song, Meng, Ermon, ICLR 2021): the generalized process of ``sampling.sample``, unchanged.

    x_prev = sqrt(a_prev) (x_t - sqrt(1 - a_t) eps) / sqrt(a_t) + sqrt(1 - a_prev - sigma^2) eps + sigma z (eq. 12),
    sigma = eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev) (eq. 16), or eta = "hat" (sigma-hat process).
    eta = 0 is the first-order (Euler) solver of the probability-flow ODE in (sigma / alpha, x / alpha). NFE = len(tau).
    """
    nfe_ddim(tau)
    return sampling.sample(model, x_T, tau, schedule, eta, noise, callback)


@torch.no_grad()
def sample_plms(
    model: Model,
    x_T: torch.Tensor,
    tau: Sequence[int],
    schedule: NoiseSchedule,
    *,
    eta: float | str = 0.0,
    noise: ImageNoise | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """PLMS: PNDM's pseudo linear multistep method (Liu et al., ICLR 2022) started by a pseudo improved Euler step.

    Every step is PNDM's transfer phi (eq. 9), which is the DDIM step, x_prev = phi(x_t, e, t, t_prev), with e:
        step 1:  e = (e_t + eps(phi(x_t, e_t, t, t_prev), t_prev)) / 2      (pseudo improved Euler, 2 NFE)
        step 2:  e = (3 e_0 - e_1) / 2,  step 3: e = (23 e_0 - 16 e_1 + 5 e_2) / 12,
        then     e = (55 e_0 - 59 e_1 + 37 e_2 - 9 e_3) / 24                (pseudo linear multistep, eq. 12)
    where e_k = eps(x, t) at the k-th previous level (e_0 the current one). This is diffusers' PNDMScheduler with
    skip_prk_steps=True (after crowsonkb's PLMS for latent diffusion). The Adams-Bashforth weights treat the levels as
    equally spaced. NFE = len(tau) + 1; a tau of one level is a single DDIM step (the start would need eps at t = -1).
    """
    tau = _prepare("plms", tau, schedule, eta)
    x, history = x_T, []
    for i, (t, t_prev) in enumerate(step_pairs(tau)):
        s, e = _level(schedule, t), _level(schedule, t_prev)
        eps = _eps(model, x, t)
        history = (history + [eps])[-4:]
        if i == 0 and t_prev >= 0:
            eps_eff = 0.5 * (eps + _eps(model, _transfer(x, eps, s, e), t_prev))
        else:
            eps_eff = _adams_bashforth(history)
        x0 = predict_x0(x, eps, s.a)
        x = _transfer(x, eps_eff, s, e)
        if callback is not None:
            callback(i, t, x, x0)
    return x


def _adams_bashforth(history: list[torch.Tensor]) -> torch.Tensor:
    """Adams-Bashforth combination of the last 1-4 eps (oldest first), as in PNDM eq. (12) and its lower orders."""
    h = history[::-1]
    if len(h) == 1:
        return h[0]
    if len(h) == 2:
        return (3 * h[0] - h[1]) / 2
    if len(h) == 3:
        return (23 * h[0] - 16 * h[1] + 5 * h[2]) / 12
    return (55 * h[0] - 59 * h[1] + 37 * h[2] - 9 * h[3]) / 24


@torch.no_grad()
def sample_pndm(
    model: Model,
    x_T: torch.Tensor,
    tau: Sequence[int],
    schedule: NoiseSchedule,
    *,
    eta: float | str = 0.0,
    noise: ImageNoise | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """F-PNDM (Liu et al., ICLR 2022, Alg. 2): three pseudo Runge-Kutta steps, then the pseudo linear multistep.

    Warm-up step t -> t_prev (eq. 13), with the transfer phi of eq. (9) (the DDIM step) and the half-step level m:
        e1 = eps(x_t, t),                  e2 = eps(phi(x_t, e1, t, m), m),
        e3 = eps(phi(x_t, e2, t, m), m),   e4 = eps(phi(x_t, e3, t, t_prev), t_prev),
        x_prev = phi(x_t, (e1 + 2 e2 + 2 e3 + e4) / 6, t, t_prev)                          (4 NFE)
    The half-step on the integer grid is m = t - floor((t - t_prev) / 2), i.e. the midpoint rounded up, which is
    diffusers' t - (T // S) // 2 on its uniform grid; a warm-up step must span >= 2 timesteps. Every later step is
    ``sample_plms``'s Adams-Bashforth step, using the warm-up's e1 values as history (fourth order at once), as in
    diffusers' PNDMScheduler (skip_prk_steps=False). The warm-up never includes the step into the data (it would need
    eps at t = -1): k = min(3, len(tau) - 1) warm-up steps, NFE = len(tau) + 3 k.
    """
    tau = _prepare("pndm", tau, schedule, eta)
    warmup = _pndm_warmup(len(tau))
    x, history = x_T, []
    for i, (t, t_prev) in enumerate(step_pairs(tau)):
        s, e = _level(schedule, t), _level(schedule, t_prev)
        eps = _eps(model, x, t)
        history = (history + [eps])[-4:]
        if i < warmup:
            mid = _level(schedule, t - (t - t_prev) // 2)
            e2 = _eps(model, _transfer(x, eps, s, mid), mid.t)
            e3 = _eps(model, _transfer(x, e2, s, mid), mid.t)
            e4 = _eps(model, _transfer(x, e3, s, e), t_prev)
            eps_eff = (eps + 2 * e2 + 2 * e3 + e4) / 6
        else:
            eps_eff = _adams_bashforth(history)
        x0 = predict_x0(x, eps, s.a)
        x = _transfer(x, eps_eff, s, e)
        if callback is not None:
            callback(i, t, x, x0)
    return x


@torch.no_grad()
def sample_dpm_solver_2(
    model: Model,
    x_T: torch.Tensor,
    tau: Sequence[int],
    schedule: NoiseSchedule,
    *,
    eta: float | str = 0.0,
    noise: ImageNoise | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """DPM-Solver-2, singlestep, noise prediction (Lu et al., NeurIPS 2022, sec. 3.3, with r1 = 1/2).

    Step s -> t, h = lambda_t - lambda_s, intermediate level u with r = (lambda_u - lambda_s) / h:
        x_u = (alpha_u / alpha_s) x_s - sigma_u (e^{r h} - 1) eps(x_s, s)
        x_t = (alpha_t / alpha_s) x_s - sigma_t (e^h - 1) eps_s - sigma_t (e^h - 1) / (2 r) (eps(x_u, u) - eps_s)
    u is the integer timestep strictly inside the step whose lambda is nearest to lambda_s + h / 2; the update is
    second order for any r in (0, 1), so the realised r is used (each step must span >= 2 timesteps). The step into
    the data is the first-order DDIM step. In diffusers: DPMSolverSinglestepScheduler(algorithm_type="dpmsolver",
    solver_type="midpoint", solver_order=2) run on the timesteps [t, u, t', u', ...]. NFE = 2 len(tau) - 1.
    """
    tau = _prepare("dpm_solver_2", tau, schedule, eta)
    x = x_T
    for i, (t, t_prev) in enumerate(step_pairs(tau)):
        s, e = _level(schedule, t), _level(schedule, t_prev)
        eps = _eps(model, x, t)
        x0 = predict_x0(x, eps, s.a)
        if t_prev < 0:
            x = x0
        else:
            h = e.lam - s.lam
            u = _interior(schedule, t, t_prev, s.lam + 0.5 * h)
            r = (u.lam - s.lam) / h
            x_u = (u.alpha / s.alpha) * x - u.sigma * math.expm1(r * h) * eps
            d = _eps(model, x_u, u.t) - eps
            x = (e.alpha / s.alpha) * x - e.sigma * math.expm1(h) * eps - e.sigma * math.expm1(h) / (2 * r) * d
        if callback is not None:
            callback(i, t, x, x0)
    return x


@torch.no_grad()
def sample_dpm_solver_3(
    model: Model,
    x_T: torch.Tensor,
    tau: Sequence[int],
    schedule: NoiseSchedule,
    *,
    eta: float | str = 0.0,
    noise: ImageNoise | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """DPM-Solver-3, singlestep, noise prediction (Lu et al., NeurIPS 2022, sec. 3.3, with r1 = 1/3, r2 = 2/3).

    Step s -> t, h = lambda_t - lambda_s, levels u1, u2 with r_k = (lambda_uk - lambda_s) / h, eps_s = eps(x_s, s):
        x_u1 = (alpha_u1 / alpha_s) x_s - sigma_u1 (e^{r1 h} - 1) eps_s
        x_u2 = (alpha_u2 / alpha_s) x_s - sigma_u2 (e^{r2 h} - 1) eps_s
               - sigma_u2 (r2 / r1) ((e^{r2 h} - 1) / (r2 h) - 1) (eps(x_u1, u1) - eps_s)
        x_t  = (alpha_t / alpha_s) x_s - sigma_t (e^h - 1) eps_s
               - (sigma_t / r2) ((e^h - 1) / h - 1) (eps(x_u2, u2) - eps_s)
    (the official code's solver_type="dpmsolver"). u1, u2 are the integer timesteps strictly inside the step nearest
    to lambda_s + h/3 and lambda_s + 2h/3 (each step must span >= 3 timesteps). Third order needs r2 = 2/3; the grid
    realises it only up to rounding, which matters when a step spans few timesteps. The step into the data is the
    first-order DDIM step. In diffusers' DPMSolverSinglestepScheduler(algorithm_type="dpmsolver", solver_order=3) on
    [t, u1, u2, t', ...], x_u2 is solver_type="heun"'s second-order update and x_t "midpoint"'s third-order update.
    NFE = 3 len(tau) - 2.
    """
    tau = _prepare("dpm_solver_3", tau, schedule, eta)
    x = x_T
    for i, (t, t_prev) in enumerate(step_pairs(tau)):
        s, e = _level(schedule, t), _level(schedule, t_prev)
        eps = _eps(model, x, t)
        x0 = predict_x0(x, eps, s.a)
        if t_prev < 0:
            x = x0
        else:
            h = e.lam - s.lam
            u1 = _interior(schedule, t, t_prev + 1, s.lam + h / 3)
            u2 = _interior(schedule, u1.t, t_prev, s.lam + 2 * h / 3)
            r1, r2 = (u1.lam - s.lam) / h, (u2.lam - s.lam) / h
            x_u1 = (u1.alpha / s.alpha) * x - u1.sigma * math.expm1(r1 * h) * eps
            d1 = _eps(model, x_u1, u1.t) - eps
            phi_22 = math.expm1(r2 * h) / (r2 * h) - 1
            x_u2 = (u2.alpha / s.alpha) * x - u2.sigma * math.expm1(r2 * h) * eps - u2.sigma * (r2 / r1) * phi_22 * d1
            d2 = _eps(model, x_u2, u2.t) - eps
            phi_2 = math.expm1(h) / h - 1
            x = (e.alpha / s.alpha) * x - e.sigma * math.expm1(h) * eps - (e.sigma / r2) * phi_2 * d2
        if callback is not None:
            callback(i, t, x, x0)
    return x


@torch.no_grad()
def sample_dpmpp_2m(
    model: Model,
    x_T: torch.Tensor,
    tau: Sequence[int],
    schedule: NoiseSchedule,
    *,
    eta: float | str = 0.0,
    noise: ImageNoise | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M): multistep, data prediction (Lu et al. 2022, arXiv:2211.01095, Alg. 2).

    Step s_i -> t, h = lambda_t - lambda_{s_i}, D_i = x0(x_{s_i}, s_i), r = (lambda_{s_i} - lambda_{s_{i-1}}) / h:
        x_t = (sigma_t / sigma_{s_i}) x_{s_i} - alpha_t (e^{-h} - 1) ((1 + 1/(2r)) D_i - D_{i-1} / (2r))
    The first step uses D_i alone (DPM-Solver++1, which is DDIM); so does the step into the data, where sigma_t = 0 and
    the update is x_0 = D_i. In diffusers: DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
    solver_type="midpoint", final_sigmas_type="zero"). NFE = len(tau).
    """
    tau = _prepare("dpmpp_2m", tau, schedule, eta)
    x, previous = x_T, None  # (lambda, D) of the level above
    for i, (t, t_prev) in enumerate(step_pairs(tau)):
        s, e = _level(schedule, t), _level(schedule, t_prev)
        x0 = predict_x0(x, _eps(model, x, t), s.a)
        if t_prev < 0:
            x_new = x0
        else:
            h = e.lam - s.lam
            d = x0
            if previous is not None:
                r = (s.lam - previous[0]) / h
                d = (1 + 1 / (2 * r)) * x0 - previous[1] / (2 * r)
            x_new = (e.sigma / s.sigma) * x - e.alpha * math.expm1(-h) * d
        previous, x = (s.lam, x0), x_new
        if callback is not None:
            callback(i, t, x, x0)
    return x


def _uni_update(
    x: torch.Tensor, s: _Level, t: _Level, m_s: torch.Tensor, above: tuple[float, torch.Tensor] | None,
    m_t: torch.Tensor | None = None,
) -> torch.Tensor:
    """One UniP-p (``m_t`` None) or UniC-p update from level s to level t, bh2, data prediction.

    p = 2 when ``above`` = (lambda, data prediction) of the level before s is given, else 1. With
    h = lambda_t - lambda_s, hh = -h, B = e^{hh} - 1, b_1 = (B / hh - 1) / B, b_2 = 2 ((B / hh - 1) / hh - 1/2) / B, r1 = (lambda_above - lambda_s) / h
    and D1 = (m_above - m_s) / r1 (UniPC's UniP-p / UniC-p, Zhao et al., NeurIPS 2023, in data-prediction form):
        base  = (sigma_t / sigma_s) x_s - alpha_t B m_s
        UniP-1: base;                          UniP-2: base - alpha_t B D1 / 2   (rho_p = 1/2, as in the paper's code)
        UniC-1: base - alpha_t B (m_t - m_s) / 2
        UniC-2: base - alpha_t B (rho_1 D1 + rho_t (m_t - m_s)),  [[1, 1], [r1, 1]] (rho_1, rho_t) = (b_1, b_2)
    """
    h = t.lam - s.lam
    hh, big_b = -h, math.expm1(-h)
    base = (t.sigma / s.sigma) * x - t.alpha * big_b * m_s
    if above is not None:
        r1 = (above[0] - s.lam) / h
        d1 = (above[1] - m_s) / r1
    if m_t is None:
        return base if above is None else base - t.alpha * big_b * 0.5 * d1
    if above is None:
        return base - t.alpha * big_b * 0.5 * (m_t - m_s)
    g1 = big_b / hh - 1
    b1, b2 = g1 / big_b, 2 * (g1 / hh - 0.5) / big_b
    rho_1 = (b1 - b2) / (1 - r1)
    return base - t.alpha * big_b * (rho_1 * d1 + (b1 - rho_1) * (m_t - m_s))


@torch.no_grad()
def sample_unipc(
    model: Model,
    x_T: torch.Tensor,
    tau: Sequence[int],
    schedule: NoiseSchedule,
    *,
    eta: float | str = 0.0,
    noise: ImageNoise | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """UniPC-2, B(h) = e^h - 1 ("bh2"), data prediction (Zhao et al., NeurIPS 2023, sec. 3): UniP-2 + UniC.

    At each level s_i the model is evaluated once, at the predicted state; that evaluation first corrects the state
    (UniC, which re-does the previous step with the new data prediction, raising its order by one at no extra NFE),
    then the predictor UniP steps on from the corrected state (formulas in ``_uni_update``, where h is the step in
    the data-prediction variable, -(lambda_t - lambda_s)). The predictor's order is min(2, i + 1): one past data
    prediction is needed for order 2; with the corrector, UniPC-p is of order p + 1, so 3 here (the registry's order).
    The step into the data is the first-order step, x_0 = the data prediction at tau_0; a correction there would be
    discarded by it and is skipped. This is diffusers' UniPCMultistepScheduler(solver_order=2, solver_type="bh2",
    predict_x0=True, lower_order_final=True, final_sigmas_type="zero"). NFE = len(tau).
    """
    tau = _prepare("unipc", tau, schedule, eta)
    x, above, last = x_T, None, None  # last: the previous predictor's (x_s, s, t, m_s, above) for the corrector
    for i, (t, t_prev) in enumerate(step_pairs(tau)):
        s, e = _level(schedule, t), _level(schedule, t_prev)
        x0 = predict_x0(x, _eps(model, x, t), s.a)
        if t_prev < 0:
            x = x0
        else:
            if last is not None:
                x = _uni_update(*last, m_t=x0)
            last = (x, s, e, x0, above)
            x = _uni_update(*last)
        above = (s.lam, x0)
        if callback is not None:
            callback(i, t, x, x0)
    return x


@torch.no_grad()
def sample_heun(
    model: Model,
    x_T: torch.Tensor,
    tau: Sequence[int],
    schedule: NoiseSchedule,
    *,
    eta: float | str = 0.0,
    noise: ImageNoise | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Heun's second-order method of EDM (Karras et al., NeurIPS 2022, Alg. 1: deterministic, no churn), on EDM's
    noise level sigma = sqrt((1 - a) / a).

    In EDM's variables xh = x / sqrt(a) and sigma, the ODE is d xh / d sigma = eps(sqrt(a) xh, t); for a step
    sigma_i -> sigma_{i+1} with d_i = eps(x_i, t_i):
        xh' = xh_i + (sigma_{i+1} - sigma_i) d_i                                          (Euler)
        xh_{i+1} = xh_i + (sigma_{i+1} - sigma_i) (d_i + eps(sqrt(a_{i+1}) xh', t_{i+1})) / 2   (Heun correction)
    The step into the data (sigma = 0) is the Euler step, i.e. DDIM. The second evaluation is at the next level of
    tau itself (no interpolated timesteps). This is diffusers' HeunDiscreteScheduler with timesteps=tau reversed.
    NFE = 2 len(tau) - 1.
    """
    tau = _prepare("heun", tau, schedule, eta)
    top = _level(schedule, tau[-1])
    xh = x_T / top.alpha
    for i, (t, t_prev) in enumerate(step_pairs(tau)):
        s, e = _level(schedule, t), _level(schedule, t_prev)
        ds = e.sigma / e.alpha - s.sigma / s.alpha
        d = _eps(model, s.alpha * xh, t)
        x0 = xh - (s.sigma / s.alpha) * d
        xh_next = xh + ds * d
        if t_prev >= 0:
            xh_next = xh + ds * 0.5 * (d + _eps(model, e.alpha * xh_next, t_prev))
        xh = xh_next
        if callback is not None:
            callback(i, t, e.alpha * xh, x0)
    return xh


# --- registry ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SamplerInfo:
    """A sampler and its facts. ``order``: the theoretical order of the deterministic ODE solver (global error
    O(h^order)); ``stochastic``: it may draw noise (ddim with eta > 0 or "hat"); ``nfe(tau)``: the network evaluations
    per image it spends on tau (raises HarnessError for a tau it refuses)."""

    name: str
    sample: Callable[..., torch.Tensor]
    stochastic: bool
    order: int
    uses_eta: bool
    nfe: Callable[[Sequence[int]], int]
    description: str


SAMPLERS: dict[str, SamplerInfo] = {
    info.name: info
    for info in [
        SamplerInfo("ddim", sample_ddim, True, 1, True, nfe_ddim,
                    "DDIM (Song et al. 2021): eq. (12) with eta (0 deterministic, 1 DDPM) or the sigma-hat process"),
        SamplerInfo("pndm", sample_pndm, False, 2, False, nfe_pndm,
                    "F-PNDM (Liu et al. 2022): 3 pseudo Runge-Kutta steps (4 NFE each), then pseudo linear multistep"),
        SamplerInfo("plms", sample_plms, False, 2, False, nfe_plms,
                    "PLMS (PNDM with skip_prk_steps): pseudo improved Euler start, then pseudo linear multistep"),
        SamplerInfo("dpm_solver_2", sample_dpm_solver_2, False, 2, False, nfe_dpm_solver_2,
                    "DPM-Solver-2 (Lu et al. 2022): singlestep, noise prediction, 2 NFE per step"),
        SamplerInfo("dpm_solver_3", sample_dpm_solver_3, False, 3, False, nfe_dpm_solver_3,
                    "DPM-Solver-3 (Lu et al. 2022): singlestep, noise prediction, 3 NFE per step"),
        SamplerInfo("dpmpp_2m", sample_dpmpp_2m, False, 2, False, nfe_dpmpp_2m,
                    "DPM-Solver++(2M) (Lu et al. 2022b): multistep, data prediction, 1 NFE per step"),
        SamplerInfo("unipc", sample_unipc, False, 3, False, nfe_unipc,
                    "UniPC-2 bh2 (Zhao et al. 2023): UniP-2 predictor + UniC corrector, data prediction, 1 NFE/step"),
        SamplerInfo("heun", sample_heun, False, 2, False, nfe_heun,
                    "Heun (Karras et al. 2022, Alg. 1, no churn): 2 NFE per step, Euler into the data"),
    ]
}


def get_sampler(name: str) -> SamplerInfo:
    if name not in SAMPLERS:
        raise HarnessError(f"Unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}.")
    return SAMPLERS[name]


def steps_for_nfe(name: str, nfe: int, trajectory: str, T: int = 1000) -> int:
    """The largest S whose tau = timesteps(trajectory, S, T) costs exactly ``nfe`` evaluations with this sampler, or,
    if none does, the smallest S with the largest NFE below it. HarnessError when every S costs more (or is refused).

    Largest, so that where S = nfe costs exactly nfe (DDIM on the uniform trajectory: S = 9 and S = 10 both give 10
    levels, as the official code's stride T // S does) the cell is the paper's S, the same cell as a Table 1 run.

    Every sampler spends at least one evaluation per level of tau, and len(tau) never decreases with S on any
    trajectory, so the scan stops at the first S whose tau has more than ``nfe`` levels.
    """
    info = get_sampler(name)
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise HarnessError(f"The NFE target must be an integer >= 1, got {nfe!r}.")
    timesteps(trajectory, 1, T)  # an unknown trajectory is an error, not a trajectory that no S fits
    best, fewest, exact = None, None, None  # best: (nfe, S) below the target; exact: the largest S costing it
    for S in range(1, T + 1):
        tau = timesteps(trajectory, S, T)
        if len(tau) > nfe:
            break
        try:
            cost = info.nfe(tau)
        except HarnessError:
            continue
        fewest = cost if fewest is None else min(fewest, cost)
        if cost == nfe:
            exact = S
        elif cost < nfe and (best is None or cost > best[0]):
            best = (cost, S)
    if exact is not None:
        return exact
    if best is None:
        fix = f"ask for nfe >= {fewest}" if fewest is not None else "use another trajectory or sampler"
        raise HarnessError(
            f"No S gives sampler {name!r} at most {nfe} network evaluations on the {trajectory!r} trajectory: {fix}."
        )
    return best[1]


class CountingModel:
    """Wraps a model callable and counts its evaluations: one call on a batch is one evaluation of each image.

    ``nfe`` is the number of calls since construction or ``reset()``: the NFE per image of a sampler run on one batch
    (every sampler here evaluates the whole batch at once). ``image_evaluations`` sums the batch sizes, so over several
    batches the NFE per image is image_evaluations / images.
    """

    def __init__(self, model: Model):
        self.model = model
        self.reset()

    def reset(self) -> None:
        self.nfe = 0
        self.image_evaluations = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        self.image_evaluations += x.shape[0]
        return self.model(x, t)
