"""Datasets: each module loads one dataset as the official code preprocesses it; ``load_split`` dispatches by name."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import HarnessError


def load_split(dataset_cfg: Mapping, split: str) -> torch.Tensor:
    """Images of a split as float32 [N, C, H, W] on [-1, 1]."""
    name = dataset_cfg["name"]
    if name == "digits":
        from . import digits

        return digits.images(split)
    raise HarnessError(f"No image loader for dataset {name!r} (known: digits).")
