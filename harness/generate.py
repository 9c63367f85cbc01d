"""Sampling N images of a cell in batches, saved as index-named shards so an interrupted cell resumes exactly.

Image i of a cell is ``sample_seeded(..., indices=[i], base_seed=seed)``: it depends on (seed, i) only. Each batch is
written atomically to ``<cell_dir>/samples/<first>-<last>.pt`` (uint8 images and their indices) as soon as it is done.
A re-run loads the shards it finds and samples only the missing indices, so the final N images are exactly those
of an uninterrupted run, whatever the batch sizes of the two runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .checkpoints import save_atomic
from .errors import HarnessError
from .images import to_uint8
from .sampling import Model, sample_seeded
from .schedule import NoiseSchedule


@dataclass
class Generated:
    images: torch.Tensor  # uint8 [N, C, H, W], in index order
    sampled: int  # images sampled by this call (the rest came from shards)
    seconds: float  # wall time of this call's sampling (device-synchronised)


def _load_shards(folder: Path, n: int, shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.zeros((n, *shape), dtype=torch.uint8)
    done = torch.zeros(n, dtype=torch.bool)
    for path in sorted(folder.glob("*.pt")):
        try:
            shard = torch.load(path, map_location="cpu", weights_only=True)
            idx, imgs = shard["indices"], shard["images"]
        except Exception:  # a damaged shard is resampled, never trusted
            path.unlink(missing_ok=True)
            continue
        if tuple(imgs.shape[1:]) != tuple(shape) or (idx >= n).any():
            raise HarnessError(
                f"Sample shard {path} does not belong to this cell (shape {tuple(imgs.shape[1:])}, indices up to {int(idx.max())}); "
                f"delete {folder} to start the cell afresh."
            )
        images[idx], done[idx] = imgs, True
    return images, done


def generate(
    model: Model,
    *,
    n: int,
    shape: Sequence[int],
    seed: int,
    tau: Sequence[int],
    schedule: NoiseSchedule,
    eta: float | str,
    batch_size: int,
    device: torch.device,
    shard_dir: Path | None = None,
    progress: bool = True,
    after_batch: Callable[[int], None] | None = None,
) -> Generated:
    """Sample images 0..n-1 (resuming from ``shard_dir`` if given). ``after_batch(k)`` runs after the k-th new batch."""
    if shard_dir is not None:
        shard_dir.mkdir(parents=True, exist_ok=True)
        images, done = _load_shards(shard_dir, n, shape)
    else:
        images, done = torch.zeros((n, *shape), dtype=torch.uint8), torch.zeros(n, dtype=torch.bool)
    todo = torch.nonzero(~done).flatten().tolist()
    nfe = len(tau)
    bar = tqdm(total=n, initial=n - len(todo), desc="sampling", unit="img", disable=not progress, mininterval=1.0)
    start = time.perf_counter()
    for k, first in enumerate(range(0, len(todo), batch_size)):
        idx = todo[first : first + batch_size]
        x = sample_seeded(
            model, idx, seed, shape, tau, schedule, eta, device,
            callback=lambda *_: bar.update(len(idx) / nfe),
        )
        batch = to_uint8(x).cpu()
        images[idx] = batch
        if shard_dir is not None:
            save_atomic({"indices": torch.tensor(idx), "images": batch}, shard_dir / f"{idx[0]:07d}-{idx[-1]:07d}.pt")
        if after_batch is not None:
            after_batch(k + 1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    bar.n = n
    bar.close()
    return Generated(images=images, sampled=len(todo), seconds=seconds)
