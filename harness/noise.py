"""Per-image random streams: image i of a run with base seed s has its own CPU generator seeded from (s, i).

Its x_T and every per-step noise draw come from that generator, in the order the sampler asks for them,
so an image never depends on batch size, batch position, device, number of workers or a resume
(the design of NVlabs/edm ``generate.py``, with generators on the CPU so CUDA and CPU runs agree).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .errors import HarnessError


def image_seed(base_seed: int, index: int) -> int:
    """A 64-bit generator seed mixed from (base_seed, index) by NumPy's SeedSequence."""
    if base_seed < 0 or index < 0:
        raise HarnessError(f"Seeds and image indices must be >= 0, got seed={base_seed}, index={index}.")
    return int(np.random.SeedSequence([base_seed, index]).generate_state(1, dtype=np.uint64)[0])


class ImageNoise:
    """Standard normal draws for a batch of images, one independent stream per image."""

    def __init__(self, base_seed: int, indices: Sequence[int], device: torch.device | str = "cpu"):
        self.indices = list(indices)
        self.device = torch.device(device)
        self.generators = [torch.Generator("cpu").manual_seed(image_seed(base_seed, i)) for i in self.indices]

    def randn(self, *shape: int) -> torch.Tensor:
        """A [batch, *shape] float32 tensor on the target device; row k comes from image k's stream."""
        draws = torch.stack([torch.randn(shape, generator=g) for g in self.generators])
        if self.device.type == "cuda":
            return draws.pin_memory().to(self.device, non_blocking=True)
        return draws.to(self.device)
