"""scikit-learn's handwritten digits (1,797 real 8x8 images, 17 grey levels 0..16): the CPU default dataset.

It ships inside scikit-learn, so it needs no download. A fixed split holds out 297 images (for the
classifier's accuracy and for reconstruction); the diffusion model and the FID reference use the other 1,500.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import torch

from harness.core.errors import HarnessError

SPLIT_SEED = 0
HELD_OUT = 297
SPLITS = ("train", "test", "all")


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # lazy: scikit-learn: only when the digits are loaded

    digits = load_digits()
    return digits.images.astype(np.uint8), digits.target.astype(np.int64)  # values 0..16


def split_indices(split: str) -> np.ndarray:
    if split not in SPLITS:
        raise HarnessError(f"Unknown digits split {split!r}: choose one of {SPLITS}.")
    n = len(_load()[0])
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    return {"test": order[:HELD_OUT], "train": order[HELD_OUT:], "all": np.arange(n)}[split]


def levels(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Raw images (uint8 in 0..16, [N, 8, 8]) and labels of a split."""
    images, labels = _load()
    idx = split_indices(split)
    return images[idx], labels[idx]


def images(split: str = "train") -> torch.Tensor:
    """float32 [N, 1, 8, 8] scaled to [-1, 1] (the official ``rescaled`` transform of x / 16)."""
    x, _ = levels(split)
    return torch.from_numpy(x).float().div(16.0).mul(2.0).sub(1.0)[:, None]


def images_uint8(split: str = "train") -> torch.Tensor:
    """uint8 [N, 1, 8, 8] in 0..255, the form generated samples take after quantization."""
    x, _ = levels(split)
    return torch.from_numpy(np.rint(x.astype(np.float64) * 255.0 / 16.0).astype(np.uint8))[:, None]


def labels(split: str = "train") -> torch.Tensor:
    return torch.from_numpy(levels(split)[1])


def data_hash() -> str:
    """sha256 of all 1,797 images and labels as scikit-learn ships them (identifies the data a model saw)."""
    x, y = _load()
    return hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
