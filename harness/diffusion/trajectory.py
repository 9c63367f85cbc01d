"""Sub-sequences tau of [0, T) for accelerated sampling (paper sec. 4.2 and App. D.2).

Timesteps are 0-indexed as in the official code (the paper's tau_i = code timestep + 1). Every function
returns tau in increasing order, duplicates kept: the sampler runs one network evaluation per entry, so
``len(tau)`` is the real number of function evaluations (NFE) of a run.

* ``uniform``: official ``--skip_type uniform``: ``range(0, T, T // S)``. S=10 gives 0, 100, ..., 900; when S
  does not divide T there are more than S steps (S=30 gives 31).
* ``quad``: official ``--skip_type quad``: ``int(linspace(0, sqrt(0.8 T), S) ** 2)``; it ends at 0.8 T and
  repeats small timesteps for large S (S=100 has 96 distinct values). The paper used it for CIFAR-10.
* ``linear_paper`` / ``quad_paper``: App. D.2 read literally: tau_i = floor(c i) or floor(c i^2), i = 1..S, with
  c chosen so that tau_S = T (paper indexing), clamped to >= 1, then shifted to code indexing.
"""

from __future__ import annotations

import math

import numpy as np

from harness.core.errors import HarnessError


def _uniform(S: int, T: int) -> list[int]:
    return list(range(0, T, T // S))


def _quad(S: int, T: int) -> list[int]:
    return [int(s) for s in np.linspace(0, np.sqrt(T * 0.8), S) ** 2]


def _linear_paper(S: int, T: int) -> list[int]:
    return [max(1, math.floor(T * i / S)) - 1 for i in range(1, S + 1)]


def _quad_paper(S: int, T: int) -> list[int]:
    return [max(1, math.floor(T * i * i / (S * S))) - 1 for i in range(1, S + 1)]


TRAJECTORIES = {
    "uniform": _uniform,
    "quad": _quad,
    "linear_paper": _linear_paper,
    "quad_paper": _quad_paper,
}


def check_steps(S: int, T: int) -> None:
    """Raise a HarnessError unless 1 <= S <= T."""
    if isinstance(S, bool) or not isinstance(S, int) or not 1 <= S <= T:
        raise HarnessError(f"S (the number of sampling steps, dim(tau)) must be an integer in 1..{T}, got {S!r}.")


def timesteps(kind: str, S: int, T: int = 1000) -> list[int]:
    """tau for ``S`` requested steps, increasing, as the sampler will run it (see module docstring)."""
    if kind not in TRAJECTORIES:
        raise HarnessError(f"Unknown trajectory {kind!r}: choose one of {sorted(TRAJECTORIES)}.")
    check_steps(S, T)
    return TRAJECTORIES[kind](S, T)


def step_pairs(tau: list[int]) -> list[tuple[int, int]]:
    """(t, t_prev) for each generative step, from the last element of tau down to t_prev = -1 (the data)."""
    prev = [-1] + list(tau[:-1])
    return list(zip(reversed(tau), reversed(prev)))
