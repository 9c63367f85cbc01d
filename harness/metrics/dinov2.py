"""FD_DINOv2's features as EDM2 computes them (NVlabs/edm2 ``calculate_metrics.py``, ``DINOv2Detector``, after
layer6ai-labs/dgm-eval): uint8 images resized to 224x224 bicubic with antialiasing, divided by 255, normalised with
ImageNet's mean and std, through DINOv2 ViT-L/14 (Oquab et al. 2023; facebookresearch/dinov2's ``dinov2_vitl14``);
the features are its normalised CLS token, 1,024-d.

The network is timm's ``vit_large_patch14_dinov2`` (the same blocks as facebookresearch/dinov2's ViT), built at
224x224. The weights (timm's hub safetensors or the official ``dinov2_vitl14_pretrain.pth``, harness.metrics.networks)
hold position embeddings for 518x518 (37x37 patches), which the official model resamples to the input's 16x16 patches
at every call (``interpolate_pos_encoding``: bicubic, without antialiasing, scale factor (16 + 0.1) / 37); here that is
done once, when the weights are loaded (``resample_pos_embed``), with the same arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own alias

from harness.core.errors import HarnessError
from harness.metrics import networks

NAME = "dinov2-vit-l-14"  # the feature space's name (tags features.fd_dinov2, the reference cache)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's (EDM2's DINOv2Detector)
INTERPOLATE_OFFSET = 0.1  # facebookresearch/dinov2: interpolate_offset of dinov2_vitl14 (hub/backbones.py)


def preprocess(x: torch.Tensor, size: int = 224) -> torch.Tensor:
    """uint8 [B, C, H, W] (C = 1 or 3) -> the network's float input [B, 3, size, size], as EDM2's ``resize_mode='torch'``:
    bicubic resize with antialiasing of the 0..255 values, then /255 and ImageNet's mean and std."""
    x = x.to(torch.float32)
    if x.shape[1] == 1:  # grayscale as RGB
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True) / 255
    mean, std = (torch.tensor(v, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) for v in (MEAN, STD))
    return (x - mean) / std


def resample_pos_embed(pos_embed: torch.Tensor, grid: int, offset: float = INTERPOLATE_OFFSET) -> torch.Tensor:
    """[1, 1 + M*M, D] -> [1, 1 + grid*grid, D]: the class position kept, the M x M patch positions resampled bicubic
    (no antialiasing) with scale factor (grid + offset) / M, as facebookresearch/dinov2's ``interpolate_pos_encoding``."""
    n = pos_embed.shape[1] - 1
    m = int(round(n ** 0.5))
    if m * m != n:
        raise HarnessError(f"DINOv2 position embeddings of {n} patches are not a square grid; use the original weights.")
    if m == grid:
        return pos_embed
    dim, scale = pos_embed.shape[-1], (grid + offset) / m
    patches = pos_embed[:, 1:].float().reshape(1, m, m, dim).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, scale_factor=(scale, scale), mode="bicubic", antialias=False)
    if patches.shape[-2:] != (grid, grid):
        raise HarnessError(f"resampling {m}x{m} position embeddings gave {tuple(patches.shape[-2:])}, not {grid}x{grid}.")
    patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)
    return torch.cat([pos_embed[:, :1].float(), patches], dim=1).to(pos_embed.dtype)


def library():
    try:
        import timm  # optional dependency (the metrics extra): only FD_DINOv2 needs it
    except ImportError:
        raise HarnessError(f"metrics.fd_dinov2 needs timm: {networks.INSTALL}; or set metrics.fd_dinov2=false.") from None
    return timm


def build(spec: Mapping) -> torch.nn.Module:
    """timm's DINOv2 ViT at ``spec['image_size']`` without a head, its architecture overridden by the non-null
    ``spec['architecture']`` entries (a stand-in's smaller depth and width), random weights."""
    overrides = {k: v for k, v in dict(spec.get("architecture") or {}).items() if v is not None}
    return library().create_model(spec["arch"], pretrained=False, num_classes=0, img_size=int(spec["image_size"]),
                                **overrides)


def load(spec: Mapping) -> torch.nn.Module:
    """The network with its weights (downloaded already by the cell's checks, else now), in eval mode."""
    path = networks.weights_file("dinov2", spec)
    state = networks.read_state(path)
    state.pop("mask_token", None)  # the official file's masked-image-modelling token: unused for features
    model = build(spec)
    if "pos_embed" in state:
        state["pos_embed"] = resample_pos_embed(state["pos_embed"], int(spec["image_size"]) // model.patch_embed.patch_size[0])
    networks.load_into(model, state, path, "metrics.dinov2")
    return model.eval().requires_grad_(False)


class DINOv2Features(torch.nn.Module):
    """uint8 images -> DINOv2's normalised CLS token (``features`` [B, D]), EDM2's preprocessing first."""

    def __init__(self, model: torch.nn.Module, image_size: int = 224):
        super().__init__()
        self.model, self.image_size = model, image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(preprocess(x, self.image_size))
