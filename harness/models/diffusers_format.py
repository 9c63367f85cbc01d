"""The diffusers ``UNet2DModel`` format of the Ho et al. U-Net, read into the official layout.

The Hugging Face hub publishes the DDPM models (``google/ddpm-cifar10-32``, the LSUN church and bedroom models, ...)
as a diffusers ``UNet2DModel``: a ``config.json`` and ``diffusion_pytorch_model.safetensors`` (or ``.bin``). The
network is the same one the DDIM code runs (``harness.diffusion.unet``); only the names differ, one to one:

    time_embedding.linear_{1,2}                     temb.dense.{0,1}
    down_blocks.{l}.resnets.{i}.{...}               down.{l}.block.{i}.{...}
        time_emb_proj / conv_shortcut               temb_proj / nin_shortcut
    down_blocks.{l}.attentions.{i}.{...}            down.{l}.attn.{i}.{...}
        group_norm, to_q, to_k, to_v, to_out.0      norm, q, k, v, proj_out   (linear [C, C] -> 1x1 conv [C, C, 1, 1])
        (diffusers < 0.14 files: query, key, value, proj_attn)
    down_blocks.{l}.downsamplers.0.conv             down.{l}.downsample.conv
    mid_block.resnets.{0,1} / attentions.0          mid.block_{1,2} / mid.attn_1
    up_blocks.{j}.{resnets,attentions,upsamplers}   up.{L-1-j}.{block,attn,upsample}   (diffusers counts up blocks
                                                                                        from the bottom)
    conv_norm_out                                   norm_out

The config decides whether the file is that network at all: the settings below are the ones under which a
``UNet2DModel`` computes exactly the official model (sinusoidal [sin, cos] embedding with the ``half - 1`` divisor,
GroupNorm eps 1e-6, SiLU, single-head attention, the TensorFlow (0, 1, 0, 1) padding before a stride-2 conv). A
config that differs in any of them is refused by name, before any weight is read. Pure functions: no file I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from harness.core.errors import HarnessError

# UNet2DModel.__init__ defaults (diffusers 0.42), applied to keys a config.json leaves out, as diffusers does.
_DEFAULTS = {
    "sample_size": None, "in_channels": 3, "out_channels": 3, "center_input_sample": False,
    "time_embedding_type": "positional", "time_embedding_dim": None, "freq_shift": 0, "flip_sin_to_cos": True,
    "mid_block_type": "UNetMidBlock2D", "layers_per_block": 2, "mid_block_scale_factor": 1, "downsample_padding": 1,
    "downsample_type": "conv", "upsample_type": "conv", "act_fn": "silu", "attention_head_dim": 8,
    "norm_num_groups": 32, "attn_norm_num_groups": None, "norm_eps": 1e-5, "resnet_time_scale_shift": "default",
    "add_attention": True, "class_embed_type": None, "num_class_embeds": None,
}
# What the official network needs; any other value computes a different function.
_REQUIRED = {
    "center_input_sample": False, "time_embedding_type": "positional", "freq_shift": 1, "flip_sin_to_cos": False,
    "mid_block_type": "UNetMidBlock2D", "mid_block_scale_factor": 1, "downsample_padding": 0,
    "downsample_type": "conv", "upsample_type": "conv", "act_fn": "silu", "norm_eps": 1e-6,
    "resnet_time_scale_shift": "default", "add_attention": True, "class_embed_type": None, "num_class_embeds": None,
}
_DOWN = {"DownBlock2D": False, "AttnDownBlock2D": True}
_UP = {"UpBlock2D": False, "AttnUpBlock2D": True}


def architecture_from_config(config: Mapping, source: str = "config.json") -> dict:
    """The ``harness.diffusion.unet`` architecture (conf/model ``architecture`` fields but dropout) a UNet2DModel config
    describes; HarnessError naming the first setting the official network cannot compute."""
    cls = config.get("_class_name", "UNet2DModel")
    if cls != "UNet2DModel":
        raise HarnessError(f"{source} describes a diffusers {cls}, not a UNet2DModel; point model.checkpoint at the "
                           "U-Net folder of a DDPM pipeline (the one holding the UNet2DModel config.json).")
    cfg = {**_DEFAULTS, **config}
    for key, want in _REQUIRED.items():
        if cfg[key] != want:
            raise HarnessError(f"{source}: {key}={cfg[key]!r} (the official DDPM U-Net needs {want!r}); this "
                               "UNet2DModel is not the Ho et al. / DDIM network, so the harness cannot run it.")
    channels = [int(c) for c in cfg.get("block_out_channels") or ()]
    down, up = list(cfg.get("down_block_types") or ()), list(cfg.get("up_block_types") or ())
    unknown = [b for b in down if b not in _DOWN] + [b for b in up if b not in _UP]
    if not channels or len(down) != len(channels) or len(up) != len(channels) or unknown:
        raise HarnessError(f"{source}: block types {down} / {up} with block_out_channels {channels} are not the "
                           "DDPM U-Net's (DownBlock2D/AttnDownBlock2D and UpBlock2D/AttnUpBlock2D, one per level).")
    if any(_DOWN[d] != _UP[u] for d, u in zip(down, reversed(up))):
        raise HarnessError(f"{source}: attention in down blocks {down} and up blocks {up} is not mirrored, as the "
                           "DDPM U-Net's is.")
    ch = channels[0]
    if any(c % ch for c in channels) or cfg["sample_size"] is None:
        raise HarnessError(f"{source}: block_out_channels {channels} are not multiples of the first, or sample_size "
                           "is missing; not a DDPM U-Net config.")
    heads = cfg["attention_head_dim"]
    attn_channels = {c for c, d in zip(channels, down) if _DOWN[d]} | {channels[-1]}
    if heads is not None and any(int(heads) != c for c in attn_channels):
        raise HarnessError(f"{source}: attention_head_dim={heads} splits attention into several heads; the DDPM "
                           "U-Net has one head per block (attention_head_dim null).")
    if cfg["attn_norm_num_groups"] not in (None, cfg["norm_num_groups"]):
        raise HarnessError(f"{source}: attn_norm_num_groups={cfg['attn_norm_num_groups']} differs from "
                           f"norm_num_groups={cfg['norm_num_groups']}; the DDPM U-Net uses one GroupNorm size.")
    if cfg["time_embedding_dim"] not in (None, 4 * ch):
        raise HarnessError(f"{source}: time_embedding_dim={cfg['time_embedding_dim']}; the DDPM U-Net's is 4 x "
                           f"{ch} = {4 * ch}.")
    size = cfg["sample_size"]
    size = int(size[0] if isinstance(size, (list, tuple)) else size)
    return {
        "in_channels": int(cfg["in_channels"]), "out_ch": int(cfg["out_channels"]), "ch": ch,
        "ch_mult": [c // ch for c in channels], "num_res_blocks": int(cfg["layers_per_block"]),
        "attn_resolutions": [size >> level for level, d in enumerate(down) if _DOWN[d]],
        "resamp_with_conv": True, "resolution": size, "num_groups": int(cfg["norm_num_groups"]),
    }


_ATTN_PARTS = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out",
               "query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}
_RESNET_PARTS = {"norm1": "norm1", "conv1": "conv1", "time_emb_proj": "temb_proj", "norm2": "norm2",
                 "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
_KEY = re.compile(
    r"(?P<where>down_blocks\.(?P<dl>\d+)|up_blocks\.(?P<ul>\d+)|mid_block)\."
    r"(?:(?P<kind>resnets|attentions)\.(?P<i>\d+)\.(?P<part>to_out\.0|[a-z_0-9]+)|"
    r"(?P<sampler>downsamplers|upsamplers)\.0\.conv)\.(?P<param>weight|bias)$")
_TOP = {"conv_in": "conv_in", "conv_out": "conv_out", "conv_norm_out": "norm_out",
        "time_embedding.linear_1": "temb.dense.0", "time_embedding.linear_2": "temb.dense.1"}


def _official_name(key: str, levels: int) -> str | None:
    head, _, param = key.rpartition(".")
    if head in _TOP and param in ("weight", "bias"):
        return f"{_TOP[head]}.{param}"
    m = _KEY.match(key)
    if m is None:
        return None
    if m["sampler"]:
        if m["dl"] is not None and m["sampler"] == "downsamplers":
            return f"down.{m['dl']}.downsample.conv.{m['param']}"
        if m["ul"] is not None and m["sampler"] == "upsamplers":
            return f"up.{levels - 1 - int(m['ul'])}.upsample.conv.{m['param']}"
        return None
    parts = _RESNET_PARTS if m["kind"] == "resnets" else _ATTN_PARTS
    if m["part"] not in parts:
        return None
    leaf = f"{parts[m['part']]}.{m['param']}"
    i = int(m["i"])
    if m["where"] == "mid_block":
        name = {("resnets", 0): "block_1", ("resnets", 1): "block_2", ("attentions", 0): "attn_1"}.get((m["kind"], i))
        return f"mid.{name}.{leaf}" if name else None
    level, side = (int(m["dl"]), "down") if m["dl"] is not None else (levels - 1 - int(m["ul"]), "up")
    return f"{side}.{level}.{'block' if m['kind'] == 'resnets' else 'attn'}.{i}.{leaf}"


def to_official(state: Mapping[str, torch.Tensor], levels: int, source: str = "the weights") -> dict[str, torch.Tensor]:
    """Rename a UNet2DModel state dict (``levels`` = len(block_out_channels)) to the official layout; attention
    projections, linear layers in diffusers, become the official 1x1 convolutions (same numbers, [C, C, 1, 1]).
    Deterministic and exact: no arithmetic on the values. A key with no official counterpart is refused."""
    out, unknown = {}, []
    for key, value in state.items():
        name = _official_name(key, levels)
        if name is None:
            unknown.append(key)
            continue
        if re.search(r"\.attn(_1|\.\d+)\.(q|k|v|proj_out)\.weight$", name) and value.dim() == 2:
            value = value[:, :, None, None]
        if name in out:
            raise HarnessError(f"{source} holds two tensors for the official {name} (e.g. both to_q and query); "
                               "re-download the model.")
        out[name] = value
    if unknown:
        more = f" (+{len(unknown) - 4} more)" if len(unknown) > 4 else ""
        raise HarnessError(f"{source} has keys the DDPM U-Net does not: {', '.join(unknown[:4])}{more}; it is not a "
                           "DDPM UNet2DModel (see harness/models/diffusers_format.py for the layout it reads).")
    return out
