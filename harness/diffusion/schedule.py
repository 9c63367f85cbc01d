"""The noise schedule of Ho et al. (2020) as the official DDIM code builds it.

Notation follows the DDIM paper: ``alpha_bar[t]`` is the paper's alpha_t (Ho et al.'s alpha-bar_t),
the signal fraction of x_t = sqrt(alpha_t) x_0 + sqrt(1 - alpha_t) eps (eq. 4). Timesteps are indexed
0..T-1 as in the code (the paper's 1..T), and t = -1 stands for the data itself, alpha_bar(-1) = 1, which
is the target of the last sampling step (``compute_alpha(b, -1)`` in the official code).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from harness.core.errors import HarnessError


def linear_betas(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """beta_t = linspace(beta_start, beta_end, T) in float64 (Ho et al. 2020, sec. 4), built with NumPy as the official code."""
    return torch.from_numpy(np.linspace(beta_start, beta_end, T, dtype=np.float64))


@dataclass(frozen=True)
class NoiseSchedule:
    """alpha_bar over t = -1..T-1, in float64.

    ``alpha_bar(t)`` = prod_{s<=t} (1 - beta_s) for t in 0..T-1 and 1 for t = -1.
    """

    betas: torch.Tensor

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "NoiseSchedule":
        if T < 1:
            raise HarnessError(f"The number of diffusion steps T must be >= 1, got {T}.")
        if not 0.0 < beta_start <= beta_end < 1.0:  # NaN fails too
            raise HarnessError(f"diffusion.beta_start={beta_start} and diffusion.beta_end={beta_end} are not a noise "
                               "schedule: set 0 < beta_start <= beta_end < 1 (the paper's: 1e-4 and 0.02).")
        return cls(linear_betas(T, beta_start, beta_end))

    @property
    def T(self) -> int:
        return self.betas.numel()

    @cached_property
    def alpha_bar_ext(self) -> torch.Tensor:
        """[1, alpha_bar_0, ..., alpha_bar_{T-1}]: index t + 1 holds alpha_bar(t)."""
        ones = torch.ones(1, dtype=torch.float64)
        return torch.cat([ones, torch.cumprod(1.0 - self.betas, dim=0)])

    def alpha_bar(self, t: int | torch.Tensor) -> torch.Tensor:
        """alpha_bar(t) for t in -1..T-1 (scalar or tensor of timesteps), float64."""
        t = torch.as_tensor(t, dtype=torch.long)
        if (t < -1).any() or (t >= self.T).any():
            raise IndexError(f"timestep out of range -1..{self.T - 1}: {t.tolist()}")
        return self.alpha_bar_ext[t + 1]
