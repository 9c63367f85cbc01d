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
    """Standard normal draws for a batch of images, one independent stream per image.

    On a CUDA device the next ``prefetch`` draws of every stream are made at once and sent in one asynchronous
    copy, so the sampling loop does not copy to the device at every step; the values are the same either way.
    """

    def __init__(
        self, base_seed: int, indices: Sequence[int], device: torch.device | str = "cpu", prefetch: int | None = None
    ):
        self.indices = list(indices)
        self.device = torch.device(device)
        self.generators = [torch.Generator("cpu").manual_seed(image_seed(base_seed, i)) for i in self.indices]
        self.prefetch = prefetch or (25 if self.device.type == "cuda" else 1)
        self._ready: list[torch.Tensor] = []
        self._shape: tuple[int, ...] | None = None

    def _draw(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in self.generators])

    def randn(self, *shape: int) -> torch.Tensor:
        """A [batch, *shape] float32 tensor on the target device; row k comes from image k's stream."""
        if self.prefetch == 1:
            return self._draw(shape).to(self.device)
        if self._shape not in (None, shape):  # prefetched draws have another shape: never reuse them
            raise ValueError(f"ImageNoise prefetched draws of shape {self._shape}, asked for {shape}")
        if not self._ready:
            block = torch.stack([self._draw(shape) for _ in range(self.prefetch)])
            if self.device.type == "cuda":
                block = block.pin_memory()
            self._ready = list(block.to(self.device, non_blocking=True).unbind(0))
            self._shape = shape
        return self._ready.pop(0)
