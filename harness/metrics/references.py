"""The reference image sets the metrics compare samples against, as torch-fidelity registered inputs.

* ``digits-train`` / ``digits-test``: the digits splits as uint8 [1, 8, 8] (harness.data.digits).
* ``celeba64-train`` / ``celeba64-test``, ``lsun_bedroom-train``, ``lsun_church-train``: a dataset folder read with
  the official preprocessing (CelebA's 128x128 crop resized to 64; LSUN's resize to 256 and centre crop, first 50,000
  images), by harness.data.
* ``cifar10-train`` / ``cifar10-val``: the CIFAR-10 python batches under the data root, read by
  harness.data.cifar10. These names are torch-fidelity's own inputs, which go through torchvision's ``CIFAR10``:
  its md5 check fails on any copy but the original files and it then tries to download (a long URLError traceback
  offline, after the sampling). The harness replaces them with the same images in the same order read from the
  folder; a missing folder is downloaded (``ensure_data``) and, outside a rehearsal, a folder that differs from the
  published files is refused (harness.run.preflight) before any sampling.

``reference_fingerprint`` names what a reference's features depend on (the data itself for the harness's own
references: the digits' bytes, or the preprocessing, split, count and image names or checksums of a folder), so
cached reference features are never reused for changed data.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity.registry import DATASETS_REGISTRY

from harness.core.errors import HarnessError
from harness.data import check_available, default_data_root, digits, ensure_available, reference_dataset
from harness.data import reference_fingerprint as folder_fingerprint

DIGITS_REFERENCES = {"digits-train": "train", "digits-test": "test"}
# references read from a dataset folder by harness.data: name -> (dataset config name, split)
DATA_REFERENCES = {
    "celeba64-train": ("celeba", "train"),
    "celeba64-test": ("celeba", "test"),
    "lsun_bedroom-train": ("lsun_bedroom", "train"),
    "lsun_church-train": ("lsun_church", "train"),
    "cifar10-train": ("cifar10", "train"),
    "cifar10-val": ("cifar10", "test"),
}
REPLACED = ("cifar10-train", "cifar10-val")  # torch-fidelity's inputs of these names are replaced (module docstring)
_MARK = "_ddim_harness_registered"


class TensorImages(Dataset):
    """A uint8 tensor [N, C, H, W] as a Dataset of [C, H, W] images."""

    def __init__(self, images: torch.Tensor):
        if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4:
            got = f"{images.dtype} {tuple(images.shape)}" if torch.is_tensor(images) else type(images).__name__
            raise HarnessError(f"Metrics take images as a uint8 tensor [N, C, H, W] in 0..255, got {got}; "
                               "quantize model outputs with harness.diffusion.images.to_uint8 first.")
        self.images = images.detach().cpu().contiguous()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i]


def _digits_factory(split: str):
    def create(root, download):  # torch-fidelity's (root, download) signature; the digits need neither

        return TensorImages(digits.images_uint8(split))

    setattr(create, _MARK, True)
    return create


def _data_factory(dataset: str, split: str):
    def create(root, download):  # the data cannot be downloaded automatically: check_available says where from

        return reference_dataset({"name": dataset, "root": root}, split)

    setattr(create, _MARK, True)
    return create


def ours(obj) -> bool:
    return bool(getattr(obj, _MARK, False))


def register_once(registry: dict, register_fn, kind: str, name: str, obj) -> None:
    """torch-fidelity refuses duplicate names: an entry of ours (e.g. after a module reload) is replaced in place,
    and one registered by someone else is an error."""
    existing = registry.get(name)
    if existing is None:
        register_fn(name, obj)
    elif ours(existing):
        registry[name] = obj
    else:
        raise HarnessError(f"torch-fidelity already has a different {kind} named {name!r}.")


def register() -> None:
    factories = {name: _digits_factory(split) for name, split in DIGITS_REFERENCES.items()}
    factories.update({name: _data_factory(*where) for name, where in DATA_REFERENCES.items()})
    for name, factory in factories.items():
        if name in REPLACED:
            DATASETS_REGISTRY[name] = factory
        else:
            register_once(DATASETS_REGISTRY, torch_fidelity.register_dataset, "input", name, factory)


register()


def check_reference(reference: str) -> None:
    if not isinstance(reference, str) or reference not in DATASETS_REGISTRY:
        raise HarnessError(f"unknown metrics reference {reference!r}; known (torch-fidelity registered inputs): "
                           f"{sorted(DATASETS_REGISTRY)}. Set dataset.fid_reference to one of them.")


def datasets_root(reference: str, root: str | Path | None) -> Path:
    """``root``, else the harness's data folder for its own references, else torch-fidelity's default."""
    if root is not None:
        return Path(root).expanduser()
    if reference in DATA_REFERENCES:
        return default_data_root()
    return Path(torch.hub._get_torch_home()) / "fidelity_datasets"  # torch-fidelity's default


def data_problem(reference: str, root: Path) -> str | None:
    """``check_available``'s message when a reference backed by a harness dataset lacks its files, else None."""
    where = DATA_REFERENCES.get(reference)
    if where is None:
        return None

    dataset, split = where
    return check_available({"name": dataset, "root": str(root)}, split)


def reference_fingerprint(reference: str, root: Path) -> str:
    """``{reference}[-{sha256 of what its images are, 12 hex}]`` (see the module docstring)."""
    if reference in DIGITS_REFERENCES and ours(DATASETS_REGISTRY.get(reference)):
        x = digits.images_uint8(DIGITS_REFERENCES[reference]).contiguous()
        return f"{reference}-{hashlib.sha256(str(tuple(x.shape)).encode() + x.numpy().tobytes()).hexdigest()[:12]}"
    if reference in DATA_REFERENCES and ours(DATASETS_REGISTRY.get(reference)):
        problem = data_problem(reference, root)
        if problem:
            raise HarnessError(f"metrics reference {reference}: {problem}")
        dataset, split = DATA_REFERENCES[reference]
        spec = folder_fingerprint({"name": dataset, "root": str(root)}, split)
        return f"{reference}-{hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]}"
    return reference


def ensure_data(reference: str, root: Path, download: bool = True, dataset_cfg: dict | None = None) -> None:
    """The reference's dataset folder is there, downloaded now if missing and the harness can fetch it (CIFAR-10),
    else one HarnessError saying where to get it. ``dataset_cfg``: the cell's dataset config (its download_url)."""
    if reference not in DATA_REFERENCES:
        return

    dataset, split = DATA_REFERENCES[reference]
    try:
        ensure_available({**(dataset_cfg or {}), "name": dataset, "root": str(root)}, split, download)
    except HarnessError as err:
        raise HarnessError(f"metrics reference {reference}: {err}") from None


def reference_images(reference: str, root: Path, download: bool = True) -> Dataset:
    """The reference's images (uint8 [C, H, W] items); a missing dataset is one HarnessError saying where to get it."""
    check_reference(reference)
    ensure_data(reference, root, download)
    factory = DATASETS_REGISTRY[reference]
    if not ours(factory):
        os.makedirs(root, exist_ok=True)
    return factory(str(root), download)
