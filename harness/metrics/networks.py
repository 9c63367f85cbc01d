"""The weights of the feature networks of FD_DINOv2 and CMMD: where they come from, checked, read without pickle.

A network's ``metrics.<network>`` config section names its ``url`` (the hub's safetensors, or the official
``.pth``), the ``file`` it is cached as under ``<cache>/feature-networks/``, its ``sha256`` (null: not pinned) and
an optional ``weights_path`` (a local copy: offline clusters, stand-ins). The file is downloaded before any sampling
(harness.run.preflight), is then read from the cache without any network, and must match ``sha256`` when it is
pinned. ``.safetensors`` is read with safetensors; any other file with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from harness.core.errors import HarnessError
from harness.core.files import NotTensors, cache_dir, checksum_problem, download, file_sha256, load_tensors

INSTALL = "pip install -e '.[metrics]' (timm and open_clip_torch)"


def cached_file(spec: Mapping) -> Path:
    return cache_dir() / "feature-networks" / str(spec["file"])


def _setting(name: str) -> str:
    return f"metrics.{name}"


def weights_file(name: str, spec: Mapping, fetch: bool = True) -> Path | None:
    """The network's weights file, checked against its pinned sha256: ``weights_path``, else the cached download,
    else (``fetch``) downloaded now into the cache; None when it is not there and ``fetch`` is false."""
    pinned = spec.get("sha256")
    if spec.get("weights_path"):
        path = Path(spec["weights_path"]).expanduser()
        if not path.is_file():
            raise HarnessError(f"{name} weights {path} not found; fix {_setting(name)}.weights_path (the weights are "
                               f"{spec['url']}), or set it to null to download them.")
    else:
        path = cached_file(spec)
        if not path.is_file():
            if not fetch:
                return None
            download(spec["url"], path, sha256=pinned,
                     fix=f"offline: download {spec['url']} elsewhere and set {_setting(name)}.weights_path=/path/to/it")
            return path
    problem = checksum_problem(path, sha256=pinned) if pinned else None
    if problem:
        fix = f"fix {_setting(name)}.weights_path" if spec.get("weights_path") else "delete it to download it again"
        raise HarnessError(f"{name} weights {path}: {problem}; {fix}, or fix {_setting(name)}.sha256.")
    return path


def identity(name: str, spec: Mapping) -> str:
    """What the network's weights are, for a cell's key: the sha256 of the file when it is here (or pinned), else
    the URL it will come from (a dry run before the download)."""
    path = weights_file(name, spec, fetch=False)
    if path is not None:
        return "sha256:" + file_sha256(path)
    return f"sha256:{spec['sha256']}" if spec.get("sha256") else f"url:{spec['url']}"


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors from ``path``, never unpickling code; one-line HarnessError otherwise."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError  # lazy: only the feature networks' weights need it
        from safetensors.torch import load_file  # lazy: only the feature networks' weights need it

        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise HarnessError(f"cannot read {path} ({type(exc).__name__}: {exc}): truncated or not safetensors; "
                               "delete it to download it again.") from None
    else:
        try:
            state = load_tensors(path)
        except NotTensors as exc:
            raise HarnessError(f"{path} is not a plain state dict of tensors ({exc}); refused, since loading it "
                               "could run code. Use the original weights file.") from None
        except Exception as exc:  # noqa: BLE001 - truncated zip, not a torch file: the same answer
            raise HarnessError(f"cannot read {path} ({type(exc).__name__}): truncated or not a weights file; "
                               "delete it to download it again.") from None
    if not (isinstance(state, dict) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items())):
        raise HarnessError(f"{path} is not a state dict of tensors; use the original weights file.")
    return state


def load_into(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: Path, setting: str) -> None:
    """``module.load_state_dict(state)`` (strict), a mismatch said in one line naming the architecture setting."""
    try:
        result = module.load_state_dict(dict(state), strict=False)
    except RuntimeError as exc:  # shapes that differ
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise HarnessError(f"{source} does not fit the network of {setting} ({first}); fix {setting}.architecture "
                           "or the weights file.") from None
    if result.missing_keys or result.unexpected_keys:
        raise HarnessError(f"{source} does not fit the network of {setting}: missing {result.missing_keys[:3]}, "
                           f"unexpected {result.unexpected_keys[:3]}; fix {setting}.architecture or the weights file.")
