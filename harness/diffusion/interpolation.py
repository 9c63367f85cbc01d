"""Latent interpolation of App. D.5 (spherical linear interpolation, Shoemake 1985)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def slerp(x0: torch.Tensor, x1: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. (50): sin((1-a) theta)/sin(theta) x0 + sin(a theta)/sin(theta) x1, theta = arccos(<x0,x1>/|x0||x1|).

    x0 and x1 are single latents of any shape; the angle and weights are computed in float64.
    """
    a, b = x0.double(), x1.double()
    theta = torch.arccos(((a * b).sum() / (a.norm() * b.norm())).clamp(-1.0, 1.0))
    w0 = torch.sin((1.0 - alpha) * theta) / torch.sin(theta)
    w1 = torch.sin(alpha * theta) / torch.sin(theta)
    return (w0 * a + w1 * b).to(x0.dtype)


def slerp_line(x0: torch.Tensor, x1: torch.Tensor, alphas: Sequence[float]) -> torch.Tensor:
    """Latents along the arc from x0 to x1 (single latents [C,H,W]) at each alpha: [len(alphas), C, H, W]."""
    return torch.stack([slerp(x0, x1, float(a)) for a in alphas])


def slerp_grid(
    corners: torch.Tensor, row_alphas: Sequence[float], col_alphas: Sequence[float]
) -> torch.Tensor:
    """The 2-D grid of App. D.5 from four latents [4, C, H, W] = (a0, a1, b0, b1).

    Pairs (a0, a1) and (b0, b1) are slerped under the same column coefficient, then the two results are
    slerped under an independent row coefficient. Returns [len(row_alphas), len(col_alphas), C, H, W].
    """
    a0, a1, b0, b1 = corners
    rows = []
    for beta in row_alphas:
        rows.append(torch.stack([slerp(slerp(a0, a1, float(a)), slerp(b0, b1, float(a)), float(beta)) for a in col_alphas]))
    return torch.stack(rows)
