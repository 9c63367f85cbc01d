"""Per-image random streams: image i of a run with base seed s draws its x_T and every per-step noise from its own
stream, keyed by (s, i), in the order the sampler asks for them, so an image never depends on batch size, batch
position, number of workers or a resume (the design of NVlabs/edm ``generate.py``).

Two schemes produce those streams (``NOISE_SCHEMES``; a run records which, since they give different images):

* ``"cpu-generator"`` (the default): one CPU ``torch.Generator`` per image, seeded by ``image_seed(s, i)``; the
  draws are made on the CPU and copied to the device, so CUDA and CPU runs agree bit for bit. Drawing image by image
  on the CPU costs the GPU sampler time at every step.
* ``"philox"``: counter-based draws computed on the device for all images of a batch at once (about 300
  elementwise tensor operations per draw, whatever the batch size; no per-image loop).
  Philox-4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011) is a keyed
  bijection of a 128-bit counter: block b of draw d of image i is ``philox4x32(counter=(b, d), key=image_seed(s, i))``,
  so any element of any draw is computed directly, with no state carried between draws but the draw number. Each
  block's four 32-bit words make two 53-bit uniforms and, by the Box-Muller transform (in float64), two
  standard normals, cast to float32. The integer part is exact on every device; CPU and CUDA results agree to
  float32 rounding (their float64 log/sin/cos may differ in the last float64 bit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from harness.core.errors import HarnessError

CPU_GENERATOR, PHILOX = "cpu-generator", "philox"
NOISE_SCHEMES = (CPU_GENERATOR, PHILOX)
DEFAULT_NOISE_SCHEME = CPU_GENERATOR

# Philox-4x32 constants (Salmon et al. 2011, sec. 4.2; Random123 philox.h): round multipliers and Weyl key increments
PHILOX_M = (0xD2511F53, 0xCD9E8D57)
PHILOX_W = (0x9E3779B9, 0xBB67AE85)
MASK32 = 0xFFFFFFFF
Word = torch.Tensor | int  # a 32-bit word held in int64: tensors, or Python ints for words shared by the batch


def check_noise_scheme(scheme: str) -> str:
    if scheme not in NOISE_SCHEMES:
        raise HarnessError(
            f"Unknown noise scheme {scheme!r}: choose one of {NOISE_SCHEMES} ({DEFAULT_NOISE_SCHEME!r} is the default; "
            "the schemes give different images for the same seed)."
        )
    return scheme


def image_seed(base_seed: int, index: int) -> int:
    """A 64-bit generator seed mixed from (base_seed, index) by NumPy's SeedSequence."""
    if base_seed < 0 or index < 0:
        raise HarnessError(f"Seeds and image indices must be >= 0, got seed={base_seed}, index={index}.")
    return int(np.random.SeedSequence([base_seed, index]).generate_state(1, dtype=np.uint64)[0])


def _mulhilo(m: int, a: Word) -> tuple[Word, Word]:
    """(high, low) 32-bit halves of the 64-bit product m * a, for a constant m < 2^32 and ``a`` in [0, 2^32).

    torch has no unsigned 64-bit multiply, and m * a can reach 2^64, so ``a`` is split into 16-bit halves:
    m * a = (m * a_hi) 2^16 + m * a_lo, each partial product < 2^48 and every intermediate < 2^49 (no int64 overflow).
    """
    p_hi = m * (a >> 16)
    p_lo = m * (a & 0xFFFF)
    t = ((p_hi & 0xFFFF) << 16) + p_lo  # the low 32 bits of the product, plus a carry above them
    return (p_hi >> 16) + (t >> 32), t & MASK32


def philox4x32(counter: Sequence[Word], key: Sequence[Word], rounds: int = 10) -> tuple[Word, Word, Word, Word]:
    """Philox-4x32-R (R = 10 by default) on 32-bit words in [0, 2^32): broadcastable int64 tensors or Python ints.

    ``counter`` = (c0, c1, c2, c3), ``key`` = (k0, k1). One round (Salmon et al. 2011, sec. 4.2; Random123's
    philox4x32round), with (hi, lo) the halves of the 64-bit products:
        (hi0, lo0) = M0 * c0,  (hi1, lo1) = M1 * c2
        c <- (hi1 ^ c1 ^ k0,  lo1,  hi0 ^ c3 ^ k1,  lo0)
    and between rounds the key is bumped by the Weyl constants: k <- (k0 + W0, k1 + W1) mod 2^32.
    """
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(rounds):
        if r > 0:
            k0, k1 = (k0 + PHILOX_W[0]) & MASK32, (k1 + PHILOX_W[1]) & MASK32
        hi0, lo0 = _mulhilo(PHILOX_M[0], c0)
        hi1, lo1 = _mulhilo(PHILOX_M[1], c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def _uniform53(high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """A float64 uniform on [0, 1), a multiple of 2^-53, from the top 53 bits of the 64-bit word (high, low)."""
    mantissa = (high << 21) | (low >> 11)  # < 2^53, exact in float64
    return mantissa.double() * 2.0**-53


def philox_normal(keys: torch.Tensor, draw: int, numel: int) -> torch.Tensor:
    """Standard normals [len(keys), numel] (float32): element j of draw ``draw`` of each image's stream.

    ``keys`` is an int64 tensor [batch, 2] of 32-bit key words (one row per image). Element j comes from Philox
    block b = j // 2 with counter (b mod 2^32, b // 2^32, draw mod 2^32, draw // 2^32): the block's words (w0, w1)
    and (w2, w3) make uniforms u1, u2 on [0, 1), and the Box-Muller pair r cos(2 pi u2), r sin(2 pi u2) with
    r = sqrt(-2 ln(1 - u1)) (1 - u1 is exact and > 0) are elements 2b and 2b + 1. Element j therefore does not
    depend on ``numel`` or on the other images.
    """
    if draw < 0 or draw >= 2**64:
        raise ValueError(f"draw number out of range: {draw}")
    device = keys.device
    blocks = torch.arange((numel + 1) // 2, dtype=torch.int64, device=device)[None, :]
    counter = (blocks & MASK32, blocks >> 32, draw & MASK32, draw >> 32)  # the draw's words stay Python ints
    w0, w1, w2, w3 = philox4x32(counter, (keys[:, 0:1], keys[:, 1:2]))
    radius = torch.sqrt(-2.0 * torch.log(1.0 - _uniform53(w0, w1)))
    angle = (2.0 * math.pi) * _uniform53(w2, w3)
    pairs = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)  # [batch, blocks, 2]
    return pairs.flatten(1)[:, :numel].float()


def philox_keys(base_seed: int, indices: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """[len(indices), 2] int64 key words (low, high) of each image's 64-bit ``image_seed(base_seed, index)``."""
    seeds = [image_seed(base_seed, i) for i in indices]
    return torch.tensor([[s & MASK32, s >> 32] for s in seeds], dtype=torch.int64, device=device).reshape(-1, 2)


class ImageNoise:
    """Standard normal draws for a batch of images, one independent stream per image (see the module docstring).

    ``scheme="cpu-generator"``: on a CUDA device the next ``prefetch`` draws of every stream are made at once and sent
    in one asynchronous copy, so the sampling loop does not copy to the device at every step; the values are the same
    either way. ``scheme="philox"``: the draws are computed on ``device``; ``prefetch`` does not apply.
    """

    def __init__(
        self,
        base_seed: int,
        indices: Sequence[int],
        device: torch.device | str = "cpu",
        prefetch: int | None = None,
        scheme: str = DEFAULT_NOISE_SCHEME,
    ):
        self.scheme = check_noise_scheme(scheme)
        self.indices = list(indices)
        self.device = torch.device(device)
        if scheme == PHILOX:
            if prefetch is not None:
                raise HarnessError("prefetch applies to the 'cpu-generator' noise scheme only; leave it unset for 'philox'.")
            self.keys = philox_keys(base_seed, self.indices, self.device)
            self.draws = 0
            return
        self.generators = [torch.Generator("cpu").manual_seed(image_seed(base_seed, i)) for i in self.indices]
        self.prefetch = prefetch or (25 if self.device.type == "cuda" else 1)
        self._ready: list[torch.Tensor] = []
        self._shape: tuple[int, ...] | None = None

    def _draw(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in self.generators])

    def randn(self, *shape: int) -> torch.Tensor:
        """A [batch, *shape] float32 tensor on the target device; row k comes from image k's stream."""
        if self.scheme == PHILOX:
            z = philox_normal(self.keys, self.draws, math.prod(shape))
            self.draws += 1
            return z.reshape(len(self.indices), *shape)
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
