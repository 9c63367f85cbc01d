"""Datasets: each module loads one dataset as the official code preprocesses it; ``load_split`` dispatches by name.

* ``digits``: scikit-learn's 8x8 digits (ships with scikit-learn; always available).
* ``cifar10``: ``{root}/cifar-10-batches-py/`` (torchvision's layout); splits train / test.
* ``celeba``: ``{root}/celeba/img_align_celeba/*.jpg`` and ``{root}/celeba/list_eval_partition.txt`` (torchvision's
  layout), the official 128x128 crop resized to 64x64; splits train / valid / test / all.
* ``lsun_bedroom``, ``lsun_church``: ``{root}/{bedroom,church_outdoor}_{train,val}_lmdb/`` (fyu/lsun's download.py),
  shorter side resized to 256 and centre-cropped; splits train / val; reading them needs the ``lmdb`` package.

``root`` is the dataset config's ``root`` (the configs default it to ``$DDIM_HARNESS_DATA``, else ``data``).
``check_available`` says what is missing (the exact path and where to get it) without reading the images.
"""

from __future__ import annotations

import errno
import importlib
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch.utils.data import Dataset

from harness.core.errors import HarnessError

DATA_ENV = "DDIM_HARNESS_DATA"
_MODULES = {"cifar10": "cifar10", "celeba": "celeba", "lsun_bedroom": "lsun", "lsun_church": "lsun"}
KNOWN = ("digits", *_MODULES)


def default_data_root() -> Path:
    """``$DDIM_HARNESS_DATA``, else ``data`` (relative to the working directory), as in the dataset configs."""
    return Path(os.environ.get(DATA_ENV) or "data").expanduser()


def data_root(dataset_cfg: Mapping) -> Path:
    """The dataset config's ``root``, else ``default_data_root()``; HarnessError when no folder can be there (a
    symbolic link loop on its path, a file in the way). A root that does not exist yet is fine (downloads make it)."""
    root = dataset_cfg.get("root") if hasattr(dataset_cfg, "get") else None
    root = Path(str(root)).expanduser() if root else default_data_root()
    try:
        if not root.is_dir() and root.exists():
            raise HarnessError(f"dataset.root {root} is a file, not a folder: point dataset.root (or ${DATA_ENV}) at "
                               "the folder that holds the dataset.")
    except OSError as err:  # is_dir() and exists() return False on a loop in Python >= 3.12, raise before
        raise _unusable_root(root, err) from None
    try:
        os.stat(root)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise _unusable_root(root, err) from None
    return root


def _unusable_root(root: Path, err: OSError) -> HarnessError:
    why = ("a symbolic link loop is on its path" if err.errno == errno.ELOOP else
           "a file is in the way on its path" if err.errno == errno.ENOTDIR else err.strerror or type(err).__name__)
    return HarnessError(f"dataset.root {root} cannot be used: {why}; point dataset.root (or ${DATA_ENV}) at a real "
                        "folder, or fix the link.")


def to_float(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 in 0..255 -> float32 on [-1, 1]: the official ``2 * ToTensor(img) - 1``."""
    return images_uint8.float().div(255.0).mul(2.0).sub(1.0)


class FloatImages(Dataset):
    """A uint8 image Dataset ([C, H, W] items) seen as float32 on [-1, 1], read lazily.

    Stands in for an image tensor where one would not fit in memory: ``len``, ``shape``, ``dtype``, an int index
    (one image [C, H, W]) and a slice (a float32 tensor [n, C, H, W], read now), as the jobs use them.
    """

    dtype = torch.float32

    def __init__(self, images: Dataset, image_shape: tuple[int, int, int]):
        self.images, self.image_shape = images, tuple(image_shape)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.image_shape)

    def __getitem__(self, i):
        if isinstance(i, slice):
            idx = range(len(self))[i]
            if not idx:
                return torch.empty((0, *self.image_shape), dtype=self.dtype)
            return to_float(torch.stack([self.images[j] for j in idx]))
        return to_float(self.images[i])


def _module(name: str):
    if name not in _MODULES:
        raise HarnessError(f"No image loader for dataset {name!r} (known: {', '.join(KNOWN)}).")
    return importlib.import_module(f".{_MODULES[name]}", __name__)


def check_available(dataset_cfg: Mapping, split: str) -> str | None:
    """None when the split's data is present (and readable), else a message naming the path expected and its source."""
    name = dataset_cfg["name"]
    if name == "digits":
        return None if split in digits.SPLITS else f"Unknown digits split {split!r}: choose one of {digits.SPLITS}."
    return _module(name).check_available(dataset_cfg, split)


def ensure_available(dataset_cfg: Mapping, split: str, download: bool = True) -> None:
    """The split's folder is there: downloaded now when missing and the dataset's module can fetch it
    (``download_folder``: CIFAR-10), else one HarnessError naming the path and where to get it."""
    problem = check_available(dataset_cfg, split)
    if problem and download and dataset_cfg["name"] in _MODULES and hasattr(_module(dataset_cfg["name"]), "download_folder"):
        _module(dataset_cfg["name"]).download_folder(dataset_cfg)
        problem = check_available(dataset_cfg, split)
    if problem:
        raise HarnessError(problem)


def published_problem(dataset_cfg: Mapping) -> str | None:
    """How the dataset's folder differs from the published files, where the harness knows their checksums
    (CIFAR-10), in one line naming the fix; None when it does not (or no checksums are known)."""
    if dataset_cfg["name"] not in _MODULES:
        return None
    check = getattr(_module(dataset_cfg["name"]), "published_problem", None)
    return check(dataset_cfg) if check else None


def _require(dataset_cfg: Mapping, split: str):
    module = _module(dataset_cfg["name"])
    problem = module.check_available(dataset_cfg, split)
    if problem:
        raise HarnessError(problem)
    return module


def load_split(dataset_cfg: Mapping, split: str) -> torch.Tensor | FloatImages:
    """Images of a split as float32 [N, C, H, W] on [-1, 1]: a tensor (digits, CIFAR-10) or, for the large
    datasets (CelebA, LSUN), a ``FloatImages`` that reads images when indexed (slicing gives a tensor)."""
    if dataset_cfg["name"] == "digits":
        return digits.images(split)
    return _require(dataset_cfg, split).images(dataset_cfg, split)


def reference_dataset(dataset_cfg: Mapping, split: str) -> Dataset:
    """The images an FID reference holds: uint8 [3, H, W] items after the official preprocessing."""
    return _require(dataset_cfg, split).reference_dataset(dataset_cfg, split)


def reference_fingerprint(dataset_cfg: Mapping, split: str) -> dict:
    """What a reference's statistics depend on (preprocessing, split, image count and identities), cheaply."""
    return _require(dataset_cfg, split).reference_fingerprint(dataset_cfg, split)
