"""Pretrained U-Net checkpoints: registry, verified download into a cache, reading and strict loading.

Sources:
* Ho et al. (2020) CIFAR10 / LSUN models converted to PyTorch by pesser/pytorch_diffusion (the
  files the official DDIM code downloads, with its md5 checksums); plain state dicts.
* CelebA 64x64: the DDIM authors' own model, an official training ``ckpt.pth`` list
  ``[model_state (keys prefixed "module."), optimizer_state, epoch, step, ema_state]``, which
  has no public checksum and no direct download link; the user passes its path.
* digits: the harness's small CPU model, shipped inside the package.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from harness.errors import HarnessError
from harness.unet import UNet, build_unet

CELEBA_URL = "https://drive.google.com/file/d/1R_H-fJYXSH79wfSKs9D-fuKQVan5L-GR/view"
PACKAGE_DIR = Path(__file__).resolve().parent
MODEL_CONF_DIR = PACKAGE_DIR.parent / "conf" / "model"


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


def cache_dir() -> Path:
    """``$DDIM_HARNESS_CACHE``, else ``$XDG_CACHE_HOME/ddim-harness``, else ``~/.cache/ddim-harness``."""
    if os.environ.get("DDIM_HARNESS_CACHE"):
        return Path(os.environ["DDIM_HARNESS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ddim-harness"


def checkpoint_dir() -> Path:
    return cache_dir() / "checkpoints"


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    return file_digest(path, "sha256")


def _checksum_problem(path: Path, md5: str | None, sha256: str | None) -> str | None:
    """None when the file matches the given checksums, else 'expected ..., got ...'."""
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is not None:
            got = file_digest(path, algorithm)
            if got != expected.lower():
                return f"expected {algorithm} {expected}, got {got}"
    return None


def download(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    sha256: str | None = None,
    chunk_size: int = 1 << 20,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` (http, https or file) to ``dest``, verified, atomically.

    The bytes go to a uniquely named temporary file next to ``dest`` that replaces ``dest`` only
    once the length and checksums are right; on any failure it is deleted and HarnessError raised.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    fix = "retry; if it keeps failing, download the file yourself and set model.checkpoint.path=/path/to/it"
    try:
        hashes = {a: hashlib.new(a) for a, v in (("md5", md5), ("sha256", sha256)) if v is not None}
        received = 0
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length is not None else None
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name) as bar:
                    while chunk := response.read(chunk_size):
                        out.write(chunk)
                        for h in hashes.values():
                            h.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise HarnessError(f"download of {url} to {dest} failed ({type(exc).__name__}: {exc}); {fix}.") from None
        if total is not None and received != total:
            raise HarnessError(
                f"download of {url} is truncated: got {received} bytes, the server announced {total}; {fix}."
            )
        for algorithm, expected in (("md5", md5), ("sha256", sha256)):
            if expected is not None and hashes[algorithm].hexdigest() != expected.lower():
                raise HarnessError(
                    f"download of {url} has the wrong checksum: expected {algorithm} {expected}, "
                    f"got {hashes[algorithm].hexdigest()} ({received} bytes): the transfer was corrupted or the "
                    f"server now serves a different file; {fix}."
                )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def save_atomic(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary name beside ``path``, then rename: an interruption never leaves a partial file."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
        problem = _checksum_problem(p, entry.md5, entry.sha256)
        if problem:
            raise HarnessError(f"the packaged {entry.name} checkpoint {p} is corrupt ({problem}); reinstall the harness.")
        return p

    dest = checkpoint_dir() / entry.filename
    if dest.is_file():
        problem = _checksum_problem(dest, entry.md5, entry.sha256)
        if problem is None:
            return dest
        if entry.url is None:
            raise HarnessError(f"cached checkpoint {dest} is corrupt ({problem}); delete it and fetch it again.")
        print(f"cached checkpoint {dest} is corrupt ({problem}); deleting it and downloading again")
        dest.unlink()
    if entry.url is None:
        raise HarnessError((entry.hint or f"checkpoint {entry.name!r} has no download URL.").format(cached=dest))
    return download(entry.url, dest, md5=entry.md5, sha256=entry.sha256)


def _strip_prefix(state: Mapping, prefix: str = "module.") -> dict:
    if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


def read_state_dict(path: str | os.PathLike, ema: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint file into a model state dict.

    Accepts the official training list ``[model, optimizer, epoch, step(, ema)]`` (EMA weights at
    index -1 when ``ema``, else the model weights at 0, ``module.`` prefixes removed) or a plain
    state dict (taken as saved). ``info``: path, sha256, format ("list"/"state_dict"), weights
    ("ema"/"raw"/"as_saved").
    """
    path = Path(path)
    fix = "re-download it or point model.checkpoint.path at a valid checkpoint"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, random bytes, pickled objects refused by weights_only, ...
        raise HarnessError(f"cannot read checkpoint {path} (torch.load raised {type(exc).__name__}): the file is "
                           f"truncated, corrupt, not a PyTorch checkpoint, or holds objects other than tensors; "
                           f"{fix}.") from None
    info = {"path": str(path), "sha256": file_sha256(path)}

    if isinstance(obj, (list, tuple)) and len(obj) in (4, 5) and _is_state_dict(obj[0]):
        if ema:
            if len(obj) == 4:
                raise HarnessError(f"checkpoint {path} is a training list without EMA weights; "
                                   "set model.checkpoint.ema=false to use its raw weights.")
            if not _is_state_dict(obj[-1]):
                raise HarnessError(f"checkpoint {path}: the EMA entry (index -1) is not a state dict; {fix}.")
            state, info["weights"] = obj[-1], "ema"
        else:
            state, info["weights"] = obj[0], "raw"
        info["format"] = "list"
    elif _is_state_dict(obj):
        state, info["format"], info["weights"] = obj, "state_dict", "as_saved"
    else:
        kind = f"dict with keys {list(obj)[:5]}" if isinstance(obj, Mapping) else type(obj).__name__
        raise HarnessError(f"checkpoint {path} holds a {kind}, neither a state dict nor the official "
                           f"[model, optimizer, epoch, step, ema] list; {fix}.")
    return _strip_prefix(state), info


def _shapes(state: Mapping) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _matching_configs(shapes: Mapping[str, tuple], conf_dir: Path = MODEL_CONF_DIR) -> list[str]:
    """Names of the model configs in ``conf_dir`` whose architecture has exactly these keys/shapes."""
    from omegaconf import OmegaConf

    names = []
    for yaml in sorted(conf_dir.glob("*.yaml")):
        try:
            cfg = OmegaConf.load(yaml)
            with torch.device("meta"):
                model = build_unet(cfg.architecture)
        except Exception:
            continue
        if _shapes(model.state_dict()) == shapes:
            names.append(yaml.stem)
    return names


def load_model(
    model: UNet,
    path_or_state: str | os.PathLike | Mapping,
    *,
    ema: bool = True,
    config_name: str = "?",
) -> dict:
    """Load a checkpoint file (or a state dict) into ``model`` with strict=True; return the info dict.

    A key or shape mismatch raises HarnessError naming the file and the config and suggesting the
    ``model=`` config that fits the checkpoint.
    """
    if isinstance(path_or_state, Mapping):
        state, info = _strip_prefix(path_or_state), {"path": None, "sha256": None, "format": "state_dict",
                                                      "weights": "as_saved"}
    else:
        state, info = read_state_dict(path_or_state, ema=ema)
    source = info["path"] or "<state dict>"
    want, have = _shapes(model.state_dict()), _shapes(state)
    if want != have:
        missing = sorted(set(want) - set(have))
        unexpected = sorted(set(have) - set(want))
        wrong = [f"{k}: checkpoint {have[k]} vs model {want[k]}" for k in sorted(set(want) & set(have))
                 if want[k] != have[k]]
        details = "; ".join(
            f"{label} ({len(items)}): {', '.join(items[:4])}{f' (+{len(items) - 4} more)' if len(items) > 4 else ''}"
            for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong))
            if items
        )
        fits = _matching_configs(have)
        advice = (f"the checkpoint fits model={' or model='.join(fits)}" if fits else
                  "no config in conf/model fits it; choose the model= config (or architecture) it was trained with")
        raise HarnessError(
            f"checkpoint {source} does not fit model config {config_name!r}: {details}. "
            f"{advice}, or set model.checkpoint.path to a checkpoint of this architecture."
        )
    model.load_state_dict(state, strict=True)
    return info


def load_checkpoint(model_cfg: Mapping) -> tuple[UNet, dict]:
    """Build the UNet of a model config (``name``, ``architecture``, ``checkpoint``) and load its weights.

    Returns the model on the CPU in eval mode and the info dict (path, sha256, format, weights,
    checkpoint name, config name).
    """
    name = model_cfg.get("name", "?")
    ckpt = model_cfg.get("checkpoint") or {}
    ckpt_name, ema, path = ckpt.get("name"), bool(ckpt.get("ema", True)), ckpt.get("path")
    if ckpt_name is None and path is None:
        raise HarnessError(f"model config {name!r} has no checkpoint: set model.checkpoint.name or "
                           "model.checkpoint.path (build_unet gives an untrained model for training).")
    file = resolve(ckpt_name, ema=ema, path=path)
    model = build_unet(model_cfg["architecture"])
    info = load_model(model, file, ema=ema, config_name=name)
    entry = entry_for(ckpt_name, ema) if path is None else None
    if entry is not None and info["weights"] == "as_saved" and entry.weights:
        info["weights"] = entry.weights
    info.update(checkpoint=entry.name if entry else None, config=name)
    return model.eval(), info


def availability(name: str | None, ema: bool = True, path: str | os.PathLike | None = None) -> tuple[bool, str]:
    """Whether a checkpoint can be used without asking the user, and how: never downloads (for dry runs)."""
    if path is not None:
        p = Path(path).expanduser()
        return (True, f"local file {p}") if p.is_file() else (False, f"missing: {p} (fix model.checkpoint.path)")
    if name is None:
        return False, "missing: set model.checkpoint.name or model.checkpoint.path"
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
