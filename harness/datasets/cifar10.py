"""CIFAR-10 (Krizhevsky, 2009): 50,000 train and 10,000 test 32x32 RGB images, as the official code reads them.

The official code uses torchvision's ``CIFAR10`` with ``ToTensor`` and ``2x - 1`` (plus a random horizontal flip
for training only, not applied here). This module reads the same pickled batches torchvision reads (with an unpickler that builds
dicts, lists and numpy arrays only, never other objects),
``{root}/cifar-10-batches-py/{data_batch_1..5,test_batch}``, from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz
(without torchvision's md5 check of every file on each load). The FID reference is torch-fidelity's own
``cifar10-train`` (torchvision's ``CIFAR10``): given ``datasets_root=root`` it reads this same folder, and downloads
the archive there when downloads are allowed. Reconstruction (Table 2) uses the test split.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import HarnessError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
BASE_FOLDER = "cifar-10-batches-py"
FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
META_FILE = "batches.meta"
SPLITS = tuple(FILES)
IMAGE_SHAPE = (3, 32, 32)


def folder(dataset_cfg: Mapping) -> Path:
    from . import data_root

    return data_root(dataset_cfg) / BASE_FOLDER


def check_available(dataset_cfg: Mapping, split: str) -> str | None:
    """None when the whole ``cifar-10-batches-py`` folder is there (torchvision wants both splits and the meta file)."""
    if split not in SPLITS:
        return f"Unknown CIFAR-10 split {split!r}: choose one of {SPLITS}."
    d = folder(dataset_cfg)
    missing = [f for f in (*FILES["train"], *FILES["test"], META_FILE) if not (d / f).is_file()]
    if not missing:
        return None
    root = d.parent
    return (
        f"CIFAR-10 not found: expected {d}/ holding {', '.join(missing)}. Download {URL} and extract it into {root} "
        f"(or run python -c \"import torchvision; torchvision.datasets.CIFAR10('{root}', download=True)\"), "
        f"or point dataset.root (default $DDIM_HARNESS_DATA, else ./data) at the folder that holds {BASE_FOLDER}/."
    )


class _BatchUnpickler(pickle.Unpickler):
    """Reads a CIFAR-10 batch (a dict of lists, bytes and one numpy array) and nothing else: any other global a pickle
    names (``os.system``, ...) is refused before it is looked up, so a planted file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # protocol 2 spells bytes with encode

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR-10 batch")
        return super().find_class(module, name)


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            entry = _BatchUnpickler(f, encoding="latin1").load()
        if not isinstance(entry, dict) or "data" not in entry:
            raise ValueError("no 'data' entry")
        return entry
    except Exception as err:  # noqa: BLE001 - refused or damaged: one message, the file is never trusted
        raise HarnessError(f"{path} is not a CIFAR-10 python batch ({type(err).__name__}: {str(err)[:200]}); refused. "
                           f"Re-extract {URL}.") from None


def read_uint8(dataset_cfg: Mapping, split: str) -> torch.Tensor:
    """uint8 [N, 3, 32, 32] of a split, in file order (torchvision's order)."""
    d = folder(dataset_cfg)
    arrays = []
    for name in FILES[split]:
        entry = _read_batch(d / name)
        arrays.append(np.asarray(entry["data"], dtype=np.uint8))
    data = np.concatenate(arrays)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise HarnessError(f"{d}: CIFAR-10 batches hold {data.shape} arrays, expected [N, 3072]; re-extract {URL}.")
    return torch.from_numpy(data.reshape(-1, *IMAGE_SHAPE).copy())


class CIFAR10Images(Dataset):
    """uint8 [3, 32, 32] images of a split (the official preprocessing is none beyond ToTensor)."""

    def __init__(self, dataset_cfg: Mapping, split: str):
        self.images = read_uint8(dataset_cfg, split)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i]


def images(dataset_cfg: Mapping, split: str) -> torch.Tensor:
    """float32 [N, 3, 32, 32] on [-1, 1] (10,000 test images: 120 MB)."""
    from . import to_float

    return to_float(read_uint8(dataset_cfg, split))


def reference_dataset(dataset_cfg: Mapping, split: str) -> Dataset:
    return CIFAR10Images(dataset_cfg, split)


def reference_fingerprint(dataset_cfg: Mapping, split: str) -> dict:
    d = folder(dataset_cfg)
    return {"dataset": "cifar10", "split": split, "preprocess": "none", "files": {f: (d / f).stat().st_size for f in FILES[split]}}
