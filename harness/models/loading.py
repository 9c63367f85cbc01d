"""Reading a checkpoint file safely (``weights_only=True``: tensors and plain containers only, never arbitrary
pickles) into a state dict, and loading it strictly into the configured U-Net, with messages that name the fix."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from harness.core import config
from harness.core.errors import HarnessError
from harness.core.files import NotTensors, file_sha256, load_tensors
from harness.diffusion.unet import UNet, build_unet
from harness.models.checkpoints import entry_for, resolve
from harness.models.hub import is_diffusers_folder, load_source


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
        obj = load_tensors(path)
    except NotTensors as exc:  # pickled objects (or instructions) the safe loader refuses: it says which
        raise HarnessError(f"cannot read checkpoint {path}: {exc}; {fix}.") from None
    except Exception as exc:  # truncated zip, random bytes, ...
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


def _matching_configs(shapes: Mapping[str, tuple]) -> list[str]:
    """Names of the model configs (conf/model) whose architecture has exactly these keys/shapes."""
    names = []
    for name in config.names("model"):
        try:
            cfg = config.load("model", name)
            with torch.device("meta"):
                model = build_unet(cfg.architecture)
        except Exception:
            continue
        if _shapes(model.state_dict()) == shapes:
            names.append(name)
    return names


def load_model(
    model: UNet,
    path_or_state: str | os.PathLike | Mapping,
    *,
    ema: bool = True,
    config_name: str = "?",
    source_info: dict | None = None,
) -> dict:
    """Load a checkpoint file (or a state dict, read from ``source_info``'s file) into ``model`` with strict=True;
    return the info dict.

    A key or shape mismatch raises HarnessError naming the file and the config and suggesting the
    ``model=`` config that fits the checkpoint.
    """
    if isinstance(path_or_state, Mapping):
        state = _strip_prefix(path_or_state)
        info = dict(source_info or {"path": None, "sha256": None, "format": "state_dict", "weights": "as_saved"})
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

    The weights come from ``checkpoint.path`` (an official file, or a diffusers UNet2DModel folder), else
    ``checkpoint.hub`` (a Hugging Face repo id, ``harness.models.hub``), else the registry entry ``checkpoint.name``.
    Returns the model on the CPU in eval mode and the info dict (path, sha256, format, weights,
    checkpoint name, config name; for the diffusers format also hub and note).
    """
    name = model_cfg.get("name", "?")
    ckpt = model_cfg.get("checkpoint") or {}
    ckpt_name, ema, path, hub = ckpt.get("name"), bool(ckpt.get("ema", True)), ckpt.get("path"), ckpt.get("hub")
    if ckpt_name is None and path is None and hub is None:
        raise HarnessError(f"model config {name!r} has no checkpoint: set model.checkpoint.name, .path or .hub "
                           "(build_unet gives an untrained model for training).")
    diffusers_format = is_diffusers_folder(path) if path is not None else hub is not None  # path, then hub, then name
    if diffusers_format:
        state, source_info = load_source(dict(ckpt), name, model_cfg["architecture"])
        model = build_unet(model_cfg["architecture"])
        info = load_model(model, state, config_name=name, source_info=source_info)
        info.update(checkpoint=None if path is not None else hub, config=name)
        return model.eval(), info
    file = resolve(ckpt_name, ema=ema, path=path)
    model = build_unet(model_cfg["architecture"])
    info = load_model(model, file, ema=ema, config_name=name)
    entry = entry_for(ckpt_name, ema) if path is None else None
    if entry is not None and info["weights"] == "as_saved" and entry.weights:
        info["weights"] = entry.weights
    info.update(checkpoint=entry.name if entry else None, config=name)
    return model.eval(), info


