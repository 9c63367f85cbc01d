"""Sampling the images of a cell in batches into its shard store, so an interrupted cell resumes exactly.

Image i draws x_T and all its noise from its own (seed, i) stream (harness.diffusion.noise), so it depends on (seed, i) only.
Each batch is written to the store as soon as it is done; a rerun samples only the indices the store lacks, so the
final images are exactly those of an uninterrupted run, whatever the batch sizes of the two runs. The network is
wrapped in a counter, so the evaluations per image are counted, not assumed. A network output that is not finite
stops the cell with a message naming the images and the step, instead of turning into black images and a silly FID.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from harness.core.errors import HarnessError
from harness.core.runtime import synchronize
from harness.diffusion.images import to_uint8
from harness.diffusion.noise import DEFAULT_NOISE_SCHEME
from harness.diffusion.samplers import CountingModel, SamplerInfo
from harness.diffusion.sampling import Model, sample_seeded
from harness.diffusion.schedule import NoiseSchedule
from harness.run.shards import ShardStore


@dataclass
class Generated:
    sampled: int  # images sampled by this call (the rest were in the store)
    seconds: float  # wall time of this call's sampling (device-synchronised)
    nfe: float | None  # network evaluations per image, counted (None when nothing was sampled)


def _check_finite(indices: Sequence[int]):
    def check(i: int, t: int, x: torch.Tensor, x0: torch.Tensor) -> None:
        bad = ~torch.isfinite(x.flatten(1)).all(dim=1)
        if bad.any():
            which = [indices[k] for k in torch.nonzero(bad).flatten().tolist()]
            raise HarnessError(
                f"the model produced non-finite values (NaN or inf) for {len(which)} of {len(indices)} images "
                f"(indices {which[:8]}{' ...' if len(which) > 8 else ''}) at step {i + 1} (t={t}): check the checkpoint "
                "and the precision (fp16 overflows more easily; try precision=fp32)."
            )
    return check


def generate(
    model: Model,
    store: ShardStore,
    *,
    sampler: SamplerInfo,
    indices: Sequence[int],
    seed: int,
    tau: Sequence[int],
    schedule: NoiseSchedule,
    eta: float | str,
    batch_size: int,
    device: torch.device,
    noise_scheme: str = DEFAULT_NOISE_SCHEME,
    progress=None,
    after_batch: Callable[[int], None] | None = None,
) -> Generated:
    """Sample the images ``indices`` (all of a cell's, or a part's block) that ``store`` lacks. ``after_batch(k)``
    runs after the k-th new batch."""
    todo = store.missing(indices)
    counted = CountingModel(model)
    steps = len(tau)
    if progress is not None:
        progress.update(len(indices) - len(todo))
    start = time.perf_counter()
    for k, first in enumerate(range(0, len(todo), batch_size)):
        idx = todo[first : first + batch_size]
        check = _check_finite(idx)

        def step(i, t, x, x0, idx=idx, check=check):
            check(i, t, x, x0)
            if progress is not None:
                progress.update(len(idx) / steps)

        x = sample_seeded(counted, idx, seed, store.shape, tau, schedule, eta, device, step, noise_scheme, sampler.sample)
        store.write(idx, (to_uint8(x) if store.dtype == torch.uint8 else x.to(store.dtype)).cpu())
        if after_batch is not None:
            after_batch(k + 1)
    synchronize(device)
    nfe = counted.image_evaluations / len(todo) if todo else None
    return Generated(sampled=len(todo), seconds=time.perf_counter() - start, nfe=nfe)
