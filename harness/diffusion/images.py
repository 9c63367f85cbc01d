"""Turning model outputs into images exactly as the official code saves PNGs."""

from __future__ import annotations

from pathlib import Path

import torch


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 as ``torchvision.utils.save_image`` of (x + 1) / 2: floor(255 clamp((x+1)/2) + 0.5)."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0).mul(255.0).add(0.5).clamp(0.0, 255.0).to(torch.uint8)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 10, scale: int = 1) -> Path:
    """Save uint8 images [N, C, H, W] as one PNG grid (optionally upscaled by ``scale`` with nearest pixels)."""
    from torchvision.utils import make_grid, save_image  # lazy: torchvision is heavy: only when images are written

    x = images.float().div(255.0)
    if scale > 1:
        x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(x, nrow=nrow, padding=2, pad_value=1.0), path)
    return path
