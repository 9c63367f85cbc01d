"""The successors of DDIM: solvers of the same probability-flow ODE on a discrete-time eps model, and their registry.

A sampler is one function, registered with its facts by ``@register(name, order=..., nfe=..., tau=...)``:

    sample_<name>(model, x_T, tau, schedule, *, callback=None) -> x_0

``tau`` is the increasing list of timesteps of ``trajectory.timesteps``: the sampler starts from x_T at level tau[-1]
and steps down tau, then from tau[0] into the data (t = -1, alpha_bar = 1). ``callback(i, t, x, x0_pred)`` runs after
step i, with t the level the step starts from, x the new state and x0_pred the data prediction of the model at the
step's start. Only ``ddim`` (``stochastic``) also takes ``eta`` and ``noise``; the registered function passes them only
to a sampler that takes them, and the others refuse eta != 0 (``SamplerInfo.check_eta``, also run by Cell validation).

Notation (float64 scalars), for a level t with a = alpha_bar(t):
    alpha = sqrt(a), sigma = sqrt(1 - a), lambda = log(alpha / sigma) (half the log-SNR), x_t = alpha x_0 + sigma eps;
    data prediction x0(x, t) = (x - sigma eps(x, t)) / alpha (DDIM eq. 9); EDM's noise level sigma / alpha.
The data is sigma = 0, lambda = +inf. A higher-order formula is undefined on the step into the data (it would need
the model at sigma = 0, or divides by an infinite step in lambda), so that step is DDIM's first-order step, which
there returns x0_pred(x_{tau_0}); this is diffusers' ``final_sigmas_type="zero"`` / ``lower_order_final``.

The model is only evaluated at the integer timesteps it was trained on. The intermediate points of single-step
methods are put on that grid (``_interior``), and every coefficient is computed from the realised lambdas, so the
formulas written for a general ratio r stay exact. What a sampler needs of tau is in the registry (``TauNeeds``) and
is checked before any network call: methods that need room between two levels (the intermediate points, PNDM's
half-step) and the multistep methods (which divide by step sizes) refuse a tau that has none, with a HarnessError
that names the fix; ``ddim`` keeps accepting repeated timesteps (the paper's quadratic tau).
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from harness.core.errors import HarnessError
from harness.diffusion import sampling
from harness.diffusion.noise import ImageNoise
from harness.diffusion.sampling import Model, StepCallback, generalized_step, parse_eta, predict_x0
from harness.diffusion.schedule import NoiseSchedule
from harness.diffusion.trajectory import step_pairs, timesteps

# --- the registry ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TauNeeds:
    """What a sampler needs of tau, besides a non-empty tau of timesteps >= 0 inside the schedule.

    ``distinct``: strictly increasing timesteps (``ddim`` alone takes repeats). ``width``: the timesteps each step must
    span (its intermediate points lie strictly inside), over the ``steps(len(tau))`` steps from the top, or over every
    step above tau[0] when ``steps`` is None.
    """

    distinct: bool = True
    width: int = 1
    steps: Callable[[int], int] | None = None

    def check(self, name: str, tau: Sequence[int]) -> list[int]:
        """tau as a list of ints, or a HarnessError that names the fix."""
        tau = [int(t) for t in tau]
        if not tau or tau[0] < 0:
            raise HarnessError(f"Sampler {name!r} needs a non-empty tau of timesteps >= 0, got {tau!r}.")
        if not self.distinct:
            return tau
        gaps = [b - a for a, b in zip(tau, tau[1:])]
        if any(g < 1 for g in gaps):
            raise HarnessError(
                f"Sampler {name!r} needs strictly increasing timesteps, but tau repeats some (the 'quad' trajectory "
                "does for large S). Use fewer steps, the 'uniform' trajectory, or sampler=ddim."
            )
        top = None if self.steps is None else self.steps(len(tau))
        checked = gaps if top is None else gaps[len(gaps) - top:]
        if any(g < self.width for g in checked):
            raise HarnessError(
                f"Sampler {name!r} needs each of its {'multi-stage' if top is None else f'first {top}'} steps to "
                f"span at least {self.width} timesteps (its intermediate points lie strictly inside), but tau has a "
                f"step of {min(checked)}. Use fewer steps, or sampler=plms / dpmpp_2m (no intermediate points)."
            )
        return tau


@dataclass(frozen=True)
class SamplerInfo:
    """A registered sampler and its facts. ``order``: the theoretical order of the deterministic ODE solver (global
    error O(h^order)); ``nfe_rule(n)``: the network evaluations per image it spends on a tau of n levels; ``tau``: what
    it needs of tau; ``stochastic``: it takes eta and noise (ddim: eta > 0 or "hat" draws noise)."""

    name: str
    sample: Callable[..., Tensor]
    order: int
    nfe_rule: Callable[[int], int]
    tau: TauNeeds
    stochastic: bool

    def nfe(self, tau: Sequence[int]) -> int:
        """Network evaluations per image along tau; HarnessError for a tau the sampler refuses."""
        return self.nfe_rule(len(self.tau.check(self.name, tau)))

    def check_eta(self, eta: float | str) -> None:
        """A deterministic sampler refuses any eta but 0, with a message naming the fix."""
        if not self.stochastic and parse_eta(eta) != 0.0:
            raise HarnessError(
                f"Sampler {self.name!r} is a deterministic ODE solver and takes no eta (got eta={eta!r}): set eta=0, "
                "or use sampler=ddim, the only sampler with eta."
            )


SAMPLERS: dict[str, SamplerInfo] = {}  # in the order of definition below, which is the report's order


def register(name: str, *, order: int, nfe: Callable[[int], int], tau: TauNeeds = TauNeeds(), stochastic: bool = False):
    """Register a sampler function under ``name``. The registered function checks tau (``tau``, and that it lies
    inside the schedule) before any network call, hands it on as a list of ints, and runs without autograd. Every
    registered function takes ``eta`` and ``noise``: a deterministic sampler refuses eta != 0 and is not given them."""

    def decorate(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        @functools.wraps(fn)
        @torch.no_grad()
        def sample(model: Model, x_T: Tensor, levels: Sequence[int], schedule: NoiseSchedule, *,
                   eta: float | str = 0.0, noise: ImageNoise | None = None, **kwargs) -> Tensor:
            levels = tau.check(name, levels)
            if levels[-1] >= schedule.T:
                raise HarnessError(
                    f"tau reaches timestep {levels[-1]}, beyond the schedule's last one ({schedule.T - 1}): build tau "
                    f"for T = {schedule.T} (trajectory.timesteps(kind, S, T))."
                )
            if stochastic:
                return fn(model, x_T, levels, schedule, eta=eta, noise=noise, **kwargs)
            SAMPLERS[name].check_eta(eta)
            return fn(model, x_T, levels, schedule, **kwargs)

        SAMPLERS[name] = SamplerInfo(name, sample, order, nfe, tau, stochastic)
        return sample

    return decorate


def get_sampler(name: str) -> SamplerInfo:
    if name not in SAMPLERS:
        raise HarnessError(f"Unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}.")
    return SAMPLERS[name]


# --- levels and the shared loop ----------------------------------------------------------------------------------

class _Level(NamedTuple):
    """A noise level: timestep t (-1 is the data), alpha_bar, alpha, sigma and lambda, all float64."""

    t: int
    a: float
    alpha: float
    sigma: float
    lam: float


class _Eval(NamedTuple):
    """The model at one level: the level, eps there and the data prediction x0 (eq. 9)."""

    level: _Level
    eps: Tensor
    x0: Tensor


def _level(schedule: NoiseSchedule, t: int) -> _Level:
    a = float(schedule.alpha_bar(t))
    alpha, sigma = math.sqrt(a), math.sqrt(1.0 - a)
    return _Level(t, a, alpha, sigma, math.log(alpha / sigma) if sigma > 0 else math.inf)


def _steps(schedule: NoiseSchedule, tau: list[int]) -> list[tuple[_Level, _Level]]:
    """(s, e) for each generative step, from level s down to level e (e.t = -1: the data)."""
    return [(_level(schedule, t), _level(schedule, t_prev)) for t, t_prev in step_pairs(tau)]


def _eps(model: Model, x: Tensor, t: int) -> Tensor:
    return model(x, sampling._timestep(x, t))


def _transfer(x: Tensor, eps: Tensor, s: _Level, t: _Level) -> Tensor:
    """The deterministic DDIM step from level s to level t with noise estimate eps (eq. 12, sigma = 0)."""
    return generalized_step(x, eps, s.a, t.a, 0.0, None)[0]


def _interior(schedule: NoiseSchedule, top: int, bottom: int, target: float) -> _Level:
    """The level strictly between timesteps ``bottom`` and ``top`` whose lambda is nearest to ``target``."""
    candidates = torch.arange(bottom + 1, top)
    a = schedule.alpha_bar(candidates)
    lam = 0.5 * (torch.log(a) - torch.log1p(-a))
    return _level(schedule, int(candidates[(lam - target).abs().argmin()]))


_Step = Callable[[int, Tensor, _Level, deque[_Eval]], Tensor]


def _solve(model: Model, x_T: Tensor, tau: list[int], schedule: NoiseSchedule, step: _Step,
           callback: StepCallback | None, *, keep: int = 1, into_data: bool = True) -> Tensor:
    """The loop of every solver in x (all but Heun): down tau, the model once at the start of each step.

    ``step(i, x, e, evals)`` returns the state at level e from the state x of step i; ``evals`` holds the model at the
    last ``keep`` levels, the current one last. The step into the data is DDIM's first-order step, which returns the
    current x0, unless ``into_data`` is False (PNDM and PLMS step into the data with their own eps).
    """
    x, evals = x_T, deque(maxlen=keep)
    for i, (s, e) in enumerate(_steps(schedule, tau)):
        eps = _eps(model, x, s.t)
        evals.append(_Eval(s, eps, predict_x0(x, eps, s.a)))
        x = evals[-1].x0 if e.t < 0 and into_data else step(i, x, e, evals)
        if callback is not None:
            callback(i, s.t, x, evals[-1].x0)
    return x


def _pndm_warmup(n: int) -> int:
    """F-PNDM's Runge-Kutta warm-up steps for n generative steps: 3, but never the step into the data."""
    return max(0, min(3, n - 1))


def _adams_bashforth(evals: Sequence[_Eval]) -> Tensor:
    """Adams-Bashforth combination of the last 1-4 eps (the current one last), as in PNDM eq. (12) and its lower
    orders."""
    h = [v.eps for v in reversed(evals)]
    if len(h) == 1:
        return h[0]
    if len(h) == 2:
        return (3 * h[0] - h[1]) / 2
    if len(h) == 3:
        return (23 * h[0] - 16 * h[1] + 5 * h[2]) / 12
    return (55 * h[0] - 59 * h[1] + 37 * h[2] - 9 * h[3]) / 24


# --- the samplers, in the report's order -------------------------------------------------------------------------

# DDIM (Song, Meng, Ermon, ICLR 2021): the generalized process of ``sampling.sample`` (eq. 12, 16), whose docstring
# states it.
sample_ddim = register("ddim", order=1, nfe=lambda n: n, tau=TauNeeds(distinct=False), stochastic=True)(sampling.sample)


@register("pndm", order=2, nfe=lambda n: n + 3 * _pndm_warmup(n), tau=TauNeeds(width=2, steps=_pndm_warmup))
def sample_pndm(model: Model, x_T: Tensor, tau: list[int], schedule: NoiseSchedule, *,
                callback: StepCallback | None = None) -> Tensor:
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
    warmup = _pndm_warmup(len(tau))

    def step(i: int, x: Tensor, e: _Level, evals: deque[_Eval]) -> Tensor:
        s, e1 = evals[-1].level, evals[-1].eps
        if i >= warmup:
            return _transfer(x, _adams_bashforth(evals), s, e)
        m = _level(schedule, s.t - (s.t - e.t) // 2)
        e2 = _eps(model, _transfer(x, e1, s, m), m.t)
        e3 = _eps(model, _transfer(x, e2, s, m), m.t)
        e4 = _eps(model, _transfer(x, e3, s, e), e.t)
        return _transfer(x, (e1 + 2 * e2 + 2 * e3 + e4) / 6, s, e)

    return _solve(model, x_T, tau, schedule, step, callback, keep=4, into_data=False)


@register("plms", order=2, nfe=lambda n: n + 1 if n > 1 else 1)
def sample_plms(model: Model, x_T: Tensor, tau: list[int], schedule: NoiseSchedule, *,
                callback: StepCallback | None = None) -> Tensor:
    """PLMS: PNDM's pseudo linear multistep method (Liu et al., ICLR 2022) started by a pseudo improved Euler step.

    Every step is PNDM's transfer phi (eq. 9), which is the DDIM step, x_prev = phi(x_t, e, t, t_prev), with e:
        step 1:  e = (e_t + eps(phi(x_t, e_t, t, t_prev), t_prev)) / 2      (pseudo improved Euler, 2 NFE)
        step 2:  e = (3 e_0 - e_1) / 2,  step 3: e = (23 e_0 - 16 e_1 + 5 e_2) / 12,
        then     e = (55 e_0 - 59 e_1 + 37 e_2 - 9 e_3) / 24                (pseudo linear multistep, eq. 12)
    where e_k = eps(x, t) at the k-th previous level (e_0 the current one). This is diffusers' PNDMScheduler with
    skip_prk_steps=True (after crowsonkb's PLMS for latent diffusion). The Adams-Bashforth weights treat the levels as
    equally spaced. NFE = len(tau) + 1; a tau of one level is a single DDIM step (the start would need eps at t = -1).
    """

    def step(i: int, x: Tensor, e: _Level, evals: deque[_Eval]) -> Tensor:
        s, e_t = evals[-1].level, evals[-1].eps
        if i == 0 and e.t >= 0:
            return _transfer(x, 0.5 * (e_t + _eps(model, _transfer(x, e_t, s, e), e.t)), s, e)
        return _transfer(x, _adams_bashforth(evals), s, e)

    return _solve(model, x_T, tau, schedule, step, callback, keep=4, into_data=False)


@register("dpm_solver_2", order=2, nfe=lambda n: 2 * n - 1, tau=TauNeeds(width=2))
def sample_dpm_solver_2(model: Model, x_T: Tensor, tau: list[int], schedule: NoiseSchedule, *,
                        callback: StepCallback | None = None) -> Tensor:
    """DPM-Solver-2, singlestep, noise prediction (Lu et al., NeurIPS 2022, sec. 3.3, with r1 = 1/2).

    Step s -> t, h = lambda_t - lambda_s, intermediate level u with r = (lambda_u - lambda_s) / h:
        x_u = (alpha_u / alpha_s) x_s - sigma_u (e^{r h} - 1) eps(x_s, s)
        x_t = (alpha_t / alpha_s) x_s - sigma_t (e^h - 1) eps_s - sigma_t (e^h - 1) / (2 r) (eps(x_u, u) - eps_s)
    u is the integer timestep strictly inside the step whose lambda is nearest to lambda_s + h / 2; the update is
    second order for any r in (0, 1), so the realised r is used (each step must span >= 2 timesteps). The step into
    the data is the first-order DDIM step. In diffusers: DPMSolverSinglestepScheduler(algorithm_type="dpmsolver",
    solver_type="midpoint", solver_order=2) run on the timesteps [t, u, t', u', ...]. NFE = 2 len(tau) - 1.
    """

    def step(i: int, x: Tensor, e: _Level, evals: deque[_Eval]) -> Tensor:
        s, eps = evals[-1].level, evals[-1].eps
        h = e.lam - s.lam
        u = _interior(schedule, s.t, e.t, s.lam + 0.5 * h)
        r = (u.lam - s.lam) / h
        x_u = (u.alpha / s.alpha) * x - u.sigma * math.expm1(r * h) * eps
        d = _eps(model, x_u, u.t) - eps
        return (e.alpha / s.alpha) * x - e.sigma * math.expm1(h) * eps - e.sigma * math.expm1(h) / (2 * r) * d

    return _solve(model, x_T, tau, schedule, step, callback)


@register("dpm_solver_3", order=3, nfe=lambda n: 3 * n - 2, tau=TauNeeds(width=3))
def sample_dpm_solver_3(model: Model, x_T: Tensor, tau: list[int], schedule: NoiseSchedule, *,
                        callback: StepCallback | None = None) -> Tensor:
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

    def step(i: int, x: Tensor, e: _Level, evals: deque[_Eval]) -> Tensor:
        s, eps = evals[-1].level, evals[-1].eps
        h = e.lam - s.lam
        u1 = _interior(schedule, s.t, e.t + 1, s.lam + h / 3)
        u2 = _interior(schedule, u1.t, e.t, s.lam + 2 * h / 3)
        r1, r2 = (u1.lam - s.lam) / h, (u2.lam - s.lam) / h
        x_u1 = (u1.alpha / s.alpha) * x - u1.sigma * math.expm1(r1 * h) * eps
        d1 = _eps(model, x_u1, u1.t) - eps
        phi_22 = math.expm1(r2 * h) / (r2 * h) - 1
        x_u2 = (u2.alpha / s.alpha) * x - u2.sigma * math.expm1(r2 * h) * eps - u2.sigma * (r2 / r1) * phi_22 * d1
        d2 = _eps(model, x_u2, u2.t) - eps
        phi_2 = math.expm1(h) / h - 1
        return (e.alpha / s.alpha) * x - e.sigma * math.expm1(h) * eps - (e.sigma / r2) * phi_2 * d2

    return _solve(model, x_T, tau, schedule, step, callback)


@register("dpmpp_2m", order=2, nfe=lambda n: n)
def sample_dpmpp_2m(model: Model, x_T: Tensor, tau: list[int], schedule: NoiseSchedule, *,
                    callback: StepCallback | None = None) -> Tensor:
    """DPM-Solver++(2M): multistep, data prediction (Lu et al. 2022, arXiv:2211.01095, Alg. 2).

    Step s_i -> t, h = lambda_t - lambda_{s_i}, D_i = x0(x_{s_i}, s_i), r = (lambda_{s_i} - lambda_{s_{i-1}}) / h:
        x_t = (sigma_t / sigma_{s_i}) x_{s_i} - alpha_t (e^{-h} - 1) ((1 + 1/(2r)) D_i - D_{i-1} / (2r))
    The first step uses D_i alone (DPM-Solver++1, which is DDIM); so does the step into the data, where sigma_t = 0 and
    the update is x_0 = D_i. In diffusers: DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
    solver_type="midpoint", final_sigmas_type="zero"). NFE = len(tau).
    """

    def step(i: int, x: Tensor, e: _Level, evals: deque[_Eval]) -> Tensor:
        s, d = evals[-1].level, evals[-1].x0
        h = e.lam - s.lam
        if len(evals) > 1:
            above = evals[-2]
            r = (s.lam - above.level.lam) / h
            d = (1 + 1 / (2 * r)) * d - above.x0 / (2 * r)
        return (e.sigma / s.sigma) * x - e.alpha * math.expm1(-h) * d

    return _solve(model, x_T, tau, schedule, step, callback, keep=2)


def _uni_update(x: Tensor, s: _Level, t: _Level, m_s: Tensor, above: _Eval | None, m_t: Tensor | None = None) -> Tensor:
    """One UniP-p (``m_t`` None) or UniC-p update from level s to level t, bh2, data prediction.

    p = 2 when ``above``, the model at the level before s, is given, else 1. With h = lambda_t - lambda_s, hh = -h,
    B = e^{hh} - 1, b_1 = (B / hh - 1) / B, b_2 = 2 ((B / hh - 1) / hh - 1/2) / B, r1 = (lambda_above - lambda_s) / h
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
        r1 = (above.level.lam - s.lam) / h
        d1 = (above.x0 - m_s) / r1
    if m_t is None:
        return base if above is None else base - t.alpha * big_b * 0.5 * d1
    if above is None:
        return base - t.alpha * big_b * 0.5 * (m_t - m_s)
    g1 = big_b / hh - 1
    b1, b2 = g1 / big_b, 2 * (g1 / hh - 0.5) / big_b
    rho_1 = (b1 - b2) / (1 - r1)
    return base - t.alpha * big_b * (rho_1 * d1 + (b1 - rho_1) * (m_t - m_s))


@register("unipc", order=3, nfe=lambda n: n)
def sample_unipc(model: Model, x_T: Tensor, tau: list[int], schedule: NoiseSchedule, *,
                 callback: StepCallback | None = None) -> Tensor:
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
    last = None  # the previous predictor's arguments (x_s, s, t, m_s, above), which the corrector re-does

    def step(i: int, x: Tensor, e: _Level, evals: deque[_Eval]) -> Tensor:
        nonlocal last
        if last is not None:
            x = _uni_update(*last, m_t=evals[-1].x0)
        last = (x, evals[-1].level, e, evals[-1].x0, evals[-2] if len(evals) > 1 else None)
        return _uni_update(*last)

    return _solve(model, x_T, tau, schedule, step, callback, keep=2)


@register("heun", order=2, nfe=lambda n: 2 * n - 1)
def sample_heun(model: Model, x_T: Tensor, tau: list[int], schedule: NoiseSchedule, *,
                callback: StepCallback | None = None) -> Tensor:
    """Heun's second-order method of EDM (Karras et al., NeurIPS 2022, Alg. 1: deterministic, no churn), on EDM's
    noise level sigma = sqrt((1 - a) / a).

    In EDM's variables xh = x / sqrt(a) and sigma, the ODE is d xh / d sigma = eps(sqrt(a) xh, t); for a step
    sigma_i -> sigma_{i+1} with d_i = eps(x_i, t_i):
        xh' = xh_i + (sigma_{i+1} - sigma_i) d_i                                          (Euler)
        xh_{i+1} = xh_i + (sigma_{i+1} - sigma_i) (d_i + eps(sqrt(a_{i+1}) xh', t_{i+1})) / 2   (Heun correction)
    The step into the data (sigma = 0) is the Euler step, i.e. DDIM. The second evaluation is at the next level of
    tau itself (no interpolated timesteps). This is diffusers' HeunDiscreteScheduler with timesteps=tau reversed.
    NFE = 2 len(tau) - 1. The state is xh, not x, so this solver has its own loop.
    """
    xh = x_T / _level(schedule, tau[-1]).alpha
    for i, (s, e) in enumerate(_steps(schedule, tau)):
        ds = e.sigma / e.alpha - s.sigma / s.alpha
        d = _eps(model, s.alpha * xh, s.t)
        x0 = xh - (s.sigma / s.alpha) * d
        xh_next = xh + ds * d
        if e.t >= 0:
            xh_next = xh + ds * 0.5 * (d + _eps(model, e.alpha * xh_next, e.t))
        xh = xh_next
        if callback is not None:
            callback(i, s.t, e.alpha * xh, x0)
    return xh


# --- choosing S for an NFE, counting NFE -------------------------------------------------------------------------

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
