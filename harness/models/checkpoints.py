"""Pretrained U-Net checkpoints: the registry of known files and where each comes from, resolved to a verified
local file (downloaded into the cache when needed). Reading and loading them is ``harness.models.loading``.

Sources:
* Ho et al. (2020) CIFAR10 / LSUN models converted to PyTorch by pesser/pytorch_diffusion (the
  files the official DDIM code downloads, with its md5 checksums); plain state dicts.
* CelebA 64x64: the DDIM authors' own model, an official training ``ckpt.pth`` list
  ``[model_state (keys prefixed "module."), optimizer_state, epoch, step, ema_state]``, which
  has no public checksum and no direct download link; the user passes its path.
* digits: the harness's small CPU model, shipped inside the package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.files import cache_dir, checksum_problem, download
from harness.models.hub import availability as hub_availability
from harness.models.hub import unet_folder

CELEBA_URL = "https://drive.google.com/file/d/1R_H-fJYXSH79wfSKs9D-fuKQVan5L-GR/view"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # harness/, which holds assets/


@dataclass(frozen=True)
class CheckpointEntry:
    name: str
    filename: str  # relative to checkpoint_dir(), or to the package for a packaged file
    url: str | None = None
    md5: str | None = None
    sha256: str | None = None  # None: recorded in the run info, not verified
    weights: str | None = None  # "ema" / "raw" for plain state dicts; None: decided when reading a list
    packaged: bool = False
    hint: str | None = None  # how to obtain a file that cannot be downloaded


def _converted(name: str, url_id: str, md5: str, step: int, dataset: str) -> CheckpointEntry:
    ema = name.startswith("ema_")
    folder = f"{'ema_' if ema else ''}diffusion_{dataset}_model"
    return CheckpointEntry(
        name=name,
        filename=f"{folder}/model-{step}.ckpt",
        url=f"https://heibox.uni-heidelberg.de/f/{url_id}/?dl=1",
        md5=md5,
        weights="ema" if ema else "raw",
    )


REGISTRY: dict[str, CheckpointEntry] = {
    e.name: e
    for e in [
        _converted("cifar10", "869980b53bf5416c8a28", "82ed3067fd1002f5cf4c339fb80c4669", 790000, "cifar10"),
        _converted("ema_cifar10", "2e4f01e2d9ee49bab1d5", "1fa350b952534ae442b1d5235cce5cd3", 790000, "cifar10"),
        _converted("lsun_bedroom", "f179d4f21ebc4d43bbfe", "f70280ac0e08b8e696f42cb8e948ff1c", 2388000, "lsun_bedroom"),
        _converted("ema_lsun_bedroom", "b95206528f384185889b", "1921fa46b66a3665e450e42f36c2720f", 2388000, "lsun_bedroom"),
        _converted("lsun_cat", "fac870bd988348eab88e", "bbee0e7c3d7abfb6e2539eaf2fb9987b", 1761000, "lsun_cat"),
        _converted("ema_lsun_cat", "0701aac3aa69457bbe34", "646f23f4821f2459b8bafc57fd824558", 1761000, "lsun_cat"),
        _converted("lsun_church", "2711a6f712e34b06b9d8", "eb619b8a5ab95ef80f94ce8a5488dae3", 4432000, "lsun_church"),
        _converted("ema_lsun_church", "44ccb50ef3c6436db52e", "fdc68a23938c2397caba4a260bc2445f", 4432000, "lsun_church"),
        CheckpointEntry(
            name="celeba",
            filename="ddim_celeba/ckpt.pth",
            hint=(
                "The CelebA 64x64 model is the DDIM authors' own checkpoint and cannot be downloaded "
                f"automatically: download ckpt.pth from {CELEBA_URL} (Google Drive) and set "
                "model.checkpoint.path=/path/to/ckpt.pth (or place it at {cached})."
            ),
        ),
        CheckpointEntry(
            name="digits",
            filename="assets/digits_unet.pt",
            sha256="f7dcd3caafb5410f0b71db9a676f957eb849a890699e8fffeb7def3c29426ac1",  # see assets/digits_unet.json
            weights="ema",
            packaged=True,
        ),
    ]
}


def entry_for(name: str, ema: bool = True) -> CheckpointEntry:
    """The registry entry for ``name``; with ``ema`` the ``ema_<name>`` entry when there is one."""
    if ema and f"ema_{name}" in REGISTRY:
        name = f"ema_{name}"
    if name not in REGISTRY:
        raise HarnessError(
            f"unknown checkpoint {name!r}; known: {sorted(REGISTRY)}. "
            "Set model.checkpoint.name to one of them, or model.checkpoint.path to a local file."
        )
    return REGISTRY[name]


def checkpoint_dir() -> Path:
    return cache_dir() / "checkpoints"


def resolve(name: str | None, ema: bool = True, path: str | os.PathLike | None = None) -> Path:
    """Local file for a checkpoint: ``path`` if given, else the registry entry (downloaded if needed)."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise HarnessError(f"checkpoint file {p} does not exist; fix model.checkpoint.path.")
        return p
    if name is None:
        raise HarnessError("no checkpoint configured: set model.checkpoint.name or model.checkpoint.path.")
    entry = entry_for(name, ema)

    if entry.packaged:
        p = PACKAGE_DIR / entry.filename
        if not p.is_file():
            raise HarnessError(f"the packaged {entry.name} checkpoint {p} is missing; reinstall the harness.")
        problem = checksum_problem(p, entry.md5, entry.sha256)
        if problem:
            raise HarnessError(f"the packaged {entry.name} checkpoint {p} is corrupt ({problem}); reinstall the harness.")
        return p

    dest = checkpoint_dir() / entry.filename
    if dest.is_file():
        problem = checksum_problem(dest, entry.md5, entry.sha256)
        if problem is None:
            return dest
        if entry.url is None:
            raise HarnessError(f"cached checkpoint {dest} is corrupt ({problem}); delete it and fetch it again.")
        print(f"cached checkpoint {dest} is corrupt ({problem}); deleting it and downloading again")
        dest.unlink()
    if entry.url is None:
        raise HarnessError((entry.hint or f"checkpoint {entry.name!r} has no download URL.").format(cached=dest))
    return download(entry.url, dest, md5=entry.md5, sha256=entry.sha256)


def availability(name: str | None, ema: bool = True, path: str | os.PathLike | None = None,
                 hub: str | None = None) -> tuple[bool, str]:
    """Whether a checkpoint can be used without asking the user, and how: never downloads (for dry runs)."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            try:
                return True, f"diffusers folder {unet_folder(p)}"
            except HarnessError as err:
                return False, f"missing: {err}"
        return (True, f"local file {p}") if p.is_file() else (False, f"missing: {p} (fix model.checkpoint.path)")
    if hub is not None:
        return hub_availability(hub)
    if name is None:
        return False, "missing: set model.checkpoint.name, model.checkpoint.path or model.checkpoint.hub"
    try:
        entry = entry_for(name, ema)
    except HarnessError as err:
        return False, str(err)
    if entry.packaged:
        p = PACKAGE_DIR / entry.filename
        return (True, f"packaged {p.name}") if p.is_file() else (False, f"missing packaged file {p}: reinstall")
    dest = checkpoint_dir() / entry.filename
    if dest.is_file():
        return True, f"cached {dest}"
    if entry.url is not None:
        return True, f"will download {entry.url} to {dest}"
    return False, "missing: " + (entry.hint or "no download URL").format(cached=dest)
