"""Checkpoints in the diffusers format: a local ``UNet2DModel`` folder, or a Hugging Face hub repo resolved through
``huggingface_hub`` (its cache when offline), read without pickle and renamed to the official layout in memory.

``model.checkpoint.hub=google/ddpm-cifar10-32`` names a repo; ``model.checkpoint.path=/a/folder`` a local snapshot
(the folder holding ``config.json`` and ``diffusion_pytorch_model.safetensors``, or a pipeline folder with them under
``unet/``). ``.safetensors`` is read with safetensors (no pickle); a ``.bin`` (some repos have only that) with
``torch.load(weights_only=True)``. The renaming (``harness.models.diffusers_format``) is exact and cheap, so it is done in
memory on every load rather than cached; the sha256 recorded is the weights file's, as published.

``HUB_MODELS`` says which hub repo holds which of the paper's models and how it differs from the file the DDIM code
loads (``harness.models.checkpoints.REGISTRY``). Its EMA column comes from the repo names (``ddpm-ema-*``): the model cards
are the same text for every repo (but its id) and say nothing of EMA or of the training step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.core import config
from harness.core.errors import HarnessError
from harness.core.files import file_sha256
from harness.models.diffusers_format import architecture_from_config, to_official

WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
INSTALL = "pip install -e '.[hub]' (huggingface_hub and safetensors)"


@dataclass(frozen=True)
class HubModel:
    repo: str
    model: str | None  # the conf/model config it is one of the paper's models for; None: not one of them
    weights: str  # "ema" / "raw" (from the repo name) / "unstated"
    official: str | None  # the harness.models.checkpoints.REGISTRY entry of the DDIM code's file for the same model
    note: str  # how it differs from that file: recorded on every run as the checkpoint_note tag


_NO_STEP = "the model card gives no training step"
HUB_MODELS: dict[str, HubModel] = {m.repo: m for m in [
    HubModel("google/ddpm-cifar10-32", "cifar10", "unstated", "ema_cifar10",
             "the model card does not say whether these are EMA weights, nor the training step; the DDIM code "
             "samples with the EMA weights of step 790000 (ema_diffusion_cifar10_model/model-790000.ckpt)"),
    HubModel("google/ddpm-ema-church-256", "lsun_church", "ema", "ema_lsun_church",
             f"EMA weights (repo name); {_NO_STEP} (the DDIM code's file is step 4432000)"),
    HubModel("google/ddpm-church-256", "lsun_church", "raw", "lsun_church",
             f"non-EMA weights, while the DDIM code samples with the EMA ones (google/ddpm-ema-church-256); "
             f"{_NO_STEP} (the DDIM code's file is step 4432000)"),
    HubModel("google/ddpm-ema-bedroom-256", "lsun_bedroom", "ema", "ema_lsun_bedroom",
             f"EMA weights (repo name); {_NO_STEP} (the DDIM code's file is step 2388000)"),
    HubModel("google/ddpm-bedroom-256", "lsun_bedroom", "raw", "lsun_bedroom",
             f"non-EMA weights, while the DDIM code samples with the EMA ones (google/ddpm-ema-bedroom-256); "
             f"{_NO_STEP} (the DDIM code's file is step 2388000)"),
    HubModel("google/ddpm-ema-cat-256", None, "ema", "ema_lsun_cat", "LSUN cat: not in the DDIM paper"),
    HubModel("google/ddpm-cat-256", None, "raw", "lsun_cat", "LSUN cat: not in the DDIM paper"),
    HubModel("google/ddpm-ema-celebahq-256", None, "ema", None,
             "CelebA-HQ 256x256, not the paper's CelebA 64x64 model (the DDIM authors' own ckpt.pth, not on the hub)"),
    HubModel("google/ddpm-celebahq-256", None, "raw", None,
             "CelebA-HQ 256x256, not the paper's CelebA 64x64 model (the DDIM authors' own ckpt.pth, not on the hub)"),
]}


def is_diffusers_folder(path: str | os.PathLike) -> bool:
    return Path(path).expanduser().is_dir()


def unet_folder(root: Path) -> Path:
    """The folder holding the UNet2DModel's config.json and weights: ``root`` itself or a pipeline's ``root/unet``."""
    for folder in (root, root / "unet"):
        if (folder / "config.json").is_file() and any((folder / w).is_file() for w in WEIGHTS):
            return folder
    raise HarnessError(f"{root} is not a diffusers UNet2DModel folder: it needs config.json and {WEIGHTS[0]} (or "
                       f"{WEIGHTS[1]}), at its top or under unet/; point model.checkpoint.path at such a folder "
                       "(a hub snapshot) or at an official checkpoint file.")


def weights_file(root: Path) -> Path:
    """The weights file of a diffusers UNet2DModel folder (or of a pipeline's ``unet/``): safetensors first."""
    folder = unet_folder(root)
    return next(folder / w for w in WEIGHTS if (folder / w).is_file())


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    fix = "delete it and download the model again"
    if file.suffix == ".safetensors":
        try:
            from safetensors import SafetensorError  # optional dependency: only diffusers-format checkpoints need it
            from safetensors.torch import load_file  # lazy: only for a diffusers checkpoint
        except ImportError:
            raise HarnessError(f"{file} needs the safetensors package: {INSTALL}.") from None

        try:
            return load_file(str(file), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise HarnessError(f"cannot read {file} ({type(exc).__name__}: {exc}): truncated or not safetensors; "
                               f"{fix}.") from None
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickled objects refused by weights_only, ...
        raise HarnessError(f"cannot read {file} (torch.load raised {type(exc).__name__}): truncated, corrupt or "
                           f"holding objects other than tensors; {fix}.") from None
    if not (isinstance(obj, dict) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())):
        raise HarnessError(f"{file} is not a state dict of tensors; {fix}.")
    return obj


def _fields(architecture: Mapping, keys) -> dict:
    """The ``keys`` of an architecture mapping as plain values (lists of ints for the lists; num_groups default 32)."""
    out = {}
    for k in keys:
        v = architecture.get(k, 32 if k == "num_groups" else None)
        out[k] = [int(x) for x in v] if k in ("ch_mult", "attn_resolutions") and v is not None else v
    return out


def check_architecture(found: Mapping, architecture: Mapping, source: str, config_name: str) -> None:
    """A diffusers config's architecture against the ``model=`` config's (dropout aside: it does not act in
    sampling). The resolution is not in the weights' shapes: without this a mismatch there would load and run."""
    want = _fields(architecture, found)
    diff = [f"{k} {found[k]} (config: {want[k]})" for k in found if found[k] != want[k]]
    if not diff:
        return
    fits = []
    for name in config.names("model"):
        arch = config.load("model", name).get("architecture")
        if arch is not None and _fields(arch, found) == dict(found):
            fits.append(name)
    advice = f"use model={' or model='.join(fits)}" if fits else "no config in conf/model fits it"
    raise HarnessError(f"checkpoint {source} is another network than model config {config_name!r}: "
                       f"{'; '.join(diff)}; {advice}, or point model.checkpoint at a {config_name} model.")


def read_folder(root: str | os.PathLike, architecture: Mapping | None = None,
                config_name: str = "?") -> tuple[dict[str, torch.Tensor], dict]:
    """A diffusers UNet2DModel folder as (official-layout state dict, info with the path and sha256 of the weights
    file). Its config is checked first, against ``architecture`` when given, before any weight is read."""
    folder = unet_folder(Path(root).expanduser())
    source = str(folder / "config.json")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot read {source} ({exc}); download the model again.") from None
    if not isinstance(config, dict):
        raise HarnessError(f"{source} is not a JSON object; download the model again.")
    found = architecture_from_config(config, source)
    if architecture is not None:
        check_architecture(found, architecture, str(folder), config_name)
    file = next(folder / w for w in WEIGHTS if (folder / w).is_file())
    state = to_official(_read_weights(file), len(found["ch_mult"]), str(file))
    return state, {"path": str(file), "sha256": file_sha256(file), "format": "diffusers", "weights": "as_saved"}


def _hub():
    try:
        import huggingface_hub  # optional dependency: only hub checkpoints need it
    except ImportError:
        raise HarnessError(f"model.checkpoint.hub needs the huggingface_hub package: {INSTALL}; or download the "
                           "model folder yourself and set model.checkpoint.path=/path/to/it.") from None
    return huggingface_hub


def _offline_fix(repo: str) -> str:
    return (f"run once online to fill the cache (or `hf download {repo}`), or set "
            f"model.checkpoint.path=/path/to/a/local/snapshot of {repo}")


def snapshot(repo: str) -> Path:
    """The local snapshot of hub repo ``repo`` (only its U-Net config and weights): downloaded into the Hugging Face
    cache, or taken from it when offline (HF_HUB_OFFLINE=1). One-line HarnessError when it cannot be had."""
    if not isinstance(repo, str) or repo.count("/") != 1:
        raise HarnessError(f"model.checkpoint.hub={repo!r} is not a hub repo id: use <owner>/<name>, e.g. "
                           "google/ddpm-cifar10-32.")
    hub = _hub()
    from huggingface_hub import constants, errors  # optional dependency (see _hub)

    incomplete = False
    for weights in WEIGHTS:  # safetensors first: the .bin only for repos that have no safetensors
        patterns = [f"{prefix}{name}" for prefix in ("", "unet/") for name in ("config.json", weights)]
        try:
            folder = Path(hub.snapshot_download(repo, allow_patterns=patterns))
        except errors.RepositoryNotFoundError:
            raise HarnessError(f"hub repo {repo} does not exist (or needs a login); fix model.checkpoint.hub "
                               f"(known: {', '.join(HUB_MODELS)}).") from None
        except errors.IncompleteSnapshotError:  # offline, and the cache lacks this weights file: try the other one
            incomplete = True
            continue
        except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled):
            where = constants.HF_HUB_CACHE
            why = "HF_HUB_OFFLINE=1" if constants.HF_HUB_OFFLINE else "the hub cannot be reached"
            raise HarnessError(f"hub repo {repo} is not in the Hugging Face cache ({where}) and {why}: "
                               f"{_offline_fix(repo)}.") from None
        except (errors.HfHubHTTPError, OSError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise HarnessError(f"download of hub repo {repo} failed ({type(exc).__name__}: {first}); retry, or "
                               f"{_offline_fix(repo)}.") from None
        try:
            unet_folder(folder)
            return folder
        except HarnessError:
            continue
    if incomplete:
        raise HarnessError(f"the cached snapshot of hub repo {repo} is incomplete (an interrupted download) and the "
                           f"hub cannot be reached: {_offline_fix(repo)}.")
    raise HarnessError(f"hub repo {repo} has no UNet2DModel config.json with {WEIGHTS[0]} or {WEIGHTS[1]} at its "
                       "top or under unet/; it is not a DDPM model repo: fix model.checkpoint.hub.")


def check_model(repo: str, config_name: str) -> HubModel | None:
    """The registry entry of ``repo``; HarnessError when the registry knows it holds another model than the
    ``model=`` config asks for (a CelebA-HQ 256 repo under model=lsun_church has the same shapes)."""
    known = HUB_MODELS.get(repo)
    if known is None or known.model == config_name:
        return known
    fits = [m.repo for m in HUB_MODELS.values() if m.model == config_name]
    fix = (f"set model.checkpoint.hub={' or '.join(fits)}" if fits else
           f"no hub repo holds model={config_name}'s weights: set model.checkpoint.name or model.checkpoint.path")
    what = f"the paper's {known.model} model" if known.model else known.note
    other = f" (or use it with model={known.model})" if known.model else ""
    raise HarnessError(f"hub repo {repo} holds {what}, not model={config_name}'s: {fix}{other}.")


def load_source(ckpt: Mapping, config_name: str, architecture: Mapping) -> tuple[dict[str, torch.Tensor], dict]:
    """(official-layout state dict, info) of a diffusers-format checkpoint config, ``path`` (a folder) or ``hub``
    (a repo id), checked against the ``model=`` config. ``info`` adds hub, weights and note (recorded as run tags)."""
    repo = None if ckpt.get("path") is not None else ckpt.get("hub")  # a local path wins, as over the registry
    known = check_model(repo, config_name) if repo else None
    root = snapshot(repo) if repo else Path(ckpt["path"]).expanduser()
    state, info = read_folder(root, architecture, config_name)
    if repo:
        info["hub"] = f"{repo}@{root.name}"  # the snapshot folder is named by the commit it holds
    if known is not None:
        info.update(weights=known.weights, note=known.note)
    return state, info


def cached_snapshot(repo: str) -> Path | None:
    """The snapshot of ``repo`` already in the Hugging Face cache, never downloading; None when it is not there."""
    try:
        hub = _hub()
    except HarnessError:
        return None
    for name in ("config.json", "unet/config.json"):
        config = hub.try_to_load_from_cache(repo, name)
        if isinstance(config, str):
            root = Path(config).parent.parent if name.startswith("unet/") else Path(config).parent
            try:
                weights_file(root)
                return root
            except HarnessError:
                return None
    return None


def availability(repo: str) -> tuple[bool, str]:
    """Whether hub repo ``repo`` can be used, never downloading (for dry runs): cached, or to be downloaded."""
    try:
        hub = _hub()
    except HarnessError as err:
        return False, str(err)
    from huggingface_hub import constants  # optional dependency (see _hub)

    cached = hub.try_to_load_from_cache(repo, "config.json")
    cached_unet = hub.try_to_load_from_cache(repo, "unet/config.json")
    if isinstance(cached, str) or isinstance(cached_unet, str):
        return True, f"hub {repo} (in the Hugging Face cache)"
    if constants.HF_HUB_OFFLINE:
        return False, f"missing: hub {repo} is not in the Hugging Face cache and HF_HUB_OFFLINE=1: {_offline_fix(repo)}"
    return True, f"will download hub {repo} into {constants.HF_HUB_CACHE}"
