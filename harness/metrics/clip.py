"""CMMD's embeddings as google-research's ``cmmd`` computes them (``embedding.py``, ``ClipEmbeddingModel``; and
sayakpaul/cmmd-pytorch): images on [0, 1] resized to 336x336 with ``torch.nn.functional.interpolate(mode="bicubic")``
(no antialiasing), normalised with CLIP's mean and std (``CLIPImageProcessor``, no crop, no rescale), through OpenAI's
CLIP ViT-L/14-336 image tower with its projection (768-d ``image_embeds``), then divided by their L2 norm.

The network is open_clip's ``ViT-L-14-336`` vision tower with QuickGELU (OpenAI's activation), its weights the
``visual.*`` tensors of open_clip's file of OpenAI's model (timm/vit_large_patch14_clip_336.openai on the hub,
harness.metrics.networks).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own alias

from harness.core.errors import HarnessError
from harness.metrics import networks

NAME = "clip-vit-l-14-336"  # the feature space's name (tags features.cmmd, the reference cache)
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)  # OpenAI CLIP's


def preprocess(x: torch.Tensor, size: int = 336) -> torch.Tensor:
    """uint8 [B, C, H, W] (C = 1 or 3) -> [B, 3, size, size]: /255, bicubic resize (no antialiasing), CLIP's
    normalisation, in this order as in cmmd's ``embed``."""
    x = x.to(torch.float32) / 255
    if x.shape[1] == 1:  # grayscale as RGB (cmmd's io_util tiles the channel)
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(size, size), mode="bicubic")
    mean, std = (torch.tensor(v, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) for v in (MEAN, STD))
    return (x - mean) / std


def library():
    try:
        import open_clip  # optional dependency (the metrics extra): only CMMD needs it
    except ImportError:
        raise HarnessError(f"metrics.cmmd needs open_clip_torch: {networks.INSTALL}; or set metrics.cmmd=false.") from None
    return open_clip


def build(spec: Mapping) -> torch.nn.Module:
    """open_clip's vision tower of ``spec['arch']`` (QuickGELU), its vision config overridden by the non-null
    ``spec['architecture']`` entries (``embed_dim`` and open_clip's vision_cfg keys: a stand-in's smaller tower)."""
    open_clip = library()
    from open_clip.model import CLIPVisionCfg, _build_vision_tower  # open_clip's own constructor of the image tower

    config = open_clip.get_model_config(spec["arch"])
    if config is None:
        raise HarnessError(f"open_clip has no model {spec['arch']!r}; fix metrics.clip.arch (e.g. ViT-L-14-336).")
    overrides = {k: v for k, v in dict(spec.get("architecture") or {}).items() if v is not None}
    embed_dim = int(overrides.pop("embed_dim", config["embed_dim"]))
    vision = CLIPVisionCfg(**{**config["vision_cfg"], **overrides})
    if vision.image_size != int(spec["image_size"]):
        raise HarnessError(f"{spec['arch']} takes {vision.image_size}x{vision.image_size} images, metrics.clip.image_size "
                           f"is {spec['image_size']}: fix one of them.")
    return _build_vision_tower(embed_dim, vision, quick_gelu=True)


def load(spec: Mapping) -> torch.nn.Module:
    """The vision tower with the ``visual.*`` weights of the file (downloaded already by the cell's checks), eval mode."""
    path = networks.weights_file("clip", spec)
    state = {k.removeprefix("visual."): v for k, v in networks.read_state(path).items() if k.startswith("visual.")}
    if not state:
        raise HarnessError(f"{path} holds no visual.* tensors: it is not an open_clip CLIP file; fix metrics.clip.")
    model = build(spec)
    networks.load_into(model, state, path, "metrics.clip")
    return model.eval().requires_grad_(False)


class CLIPEmbeddings(torch.nn.Module):
    """uint8 images -> L2-normalised CLIP image embeddings [B, D], cmmd's preprocessing first."""

    def __init__(self, model: torch.nn.Module, image_size: int = 336):
        super().__init__()
        self.model, self.image_size = model, image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.model(preprocess(x, self.image_size))
        return e / torch.linalg.vector_norm(e, dim=-1, keepdim=True)
