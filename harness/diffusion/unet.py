"""The DDPM U-Net of Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models" (NeurIPS 2020).

This is the noise-prediction network eps_theta(x_t, t) that DDIM (Song, Meng & Ermon, ICLR 2021)
reuses unchanged. It follows the PyTorch port used by the official DDIM code (ermongroup/ddim,
models/diffusion.py, itself after pesser/pytorch_diffusion) closely enough that the state-dict
keys are identical, so the converted Ho et al. checkpoints and the DDIM authors' CelebA model load
with ``strict=True``. The key layout is::

    temb.dense.{0,1}.*                       conv_in.*
    down.{level}.block.{i}.{norm1,conv1,temb_proj,norm2,conv2,nin_shortcut}.*
    down.{level}.attn.{i}.{norm,q,k,v,proj_out}.*
    down.{level}.downsample.conv.*           (every level but the last)
    mid.{block_1,attn_1,block_2}.*
    up.{level}.block.{0..num_res_blocks}.*   up.{level}.attn.{i}.*
    up.{level}.upsample.conv.*               (every level but 0)
    norm_out.*                               conv_out.*

The only addition is ``num_groups`` (GroupNorm groups), hard-coded to 32 in the official code,
so that small CPU models can be built. The model holds parameters only, no buffers.

Batch independence: on the CPU, oneDNN/MKL choose GEMM kernels by problem size, so a plain 1x1 convolution or
linear layer gives an image bitwise different results in batches of different sizes. Here the 1x1 convolutions
run as one small matrix product per image, the timestep MLP runs once when the batch shares its timestep (a [1] ``t``), and a batch of one
is evaluated as a batch of two; with that, an image's output does not depend on the batch it is in (tested
bitwise on the CPU). The arithmetic is the official model's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.core.errors import HarnessError


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of timesteps ``t`` (shape [B]) as in Ho et al. / the official code."""
    half = dim // 2
    scale = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * -scale)
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def group_norm(channels: int, num_groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=num_groups, num_channels=channels, eps=1e-6, affine=True)


class Upsample(nn.Module):
    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x


class Downsample(nn.Module):
    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_conv:
            # Asymmetric padding (right and bottom only), as in the TensorFlow original.
            return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 convolution (same parameters and keys as nn.Conv2d) computed as one matrix product per image."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        y = torch.matmul(self.weight[:, :, 0, 0], x.reshape(b, c, hgt * wid)) + self.bias[:, None]
        return y.reshape(b, -1, hgt, wid)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, dropout: float, num_groups: int):
        super().__init__()
        self.norm1 = group_norm(in_channels, num_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)
        self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = group_norm(out_channels, num_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = PointwiseConv2d(in_channels, out_channels)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """``temb`` is [B, temb_ch], or [1, temb_ch] when all images share the timestep (broadcast)."""
        h = self.conv1(swish(self.norm1(x)))
        h = h + self.temb_proj(swish(temb))[:, :, None, None]
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions, scale C^-0.5, with a residual connection."""

    def __init__(self, channels: int, num_groups: int):
        super().__init__()
        self.norm = group_norm(channels, num_groups)
        self.q = PointwiseConv2d(channels, channels)
        self.k = PointwiseConv2d(channels, channels)
        self.v = PointwiseConv2d(channels, channels)
        self.proj_out = PointwiseConv2d(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        h = self.norm(x)
        # [B, C, H, W] -> [B, 1 head, H*W, C]; SDPA's default scale is C^-0.5.
        q, k, v = (f(h).reshape(b, 1, c, hgt * wid).transpose(2, 3) for f in (self.q, self.k, self.v))
        h = F.scaled_dot_product_attention(q, k, v)
        h = h.transpose(2, 3).reshape(b, c, hgt, wid)
        return x + self.proj_out(h)


class UNet(nn.Module):
    """eps_theta(x, t): ``x`` is [B, in_channels, resolution, resolution], ``t`` is [B] raw timesteps."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_ch: int,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        attn_resolutions: Sequence[int],
        dropout: float,
        resamp_with_conv: bool,
        resolution: int,
        num_groups: int = 32,
    ):
        super().__init__()
        ch_mult = tuple(ch_mult)
        self.ch = ch
        self.temb_ch = 4 * ch
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.resolution = resolution
        self.in_channels = in_channels

        def res_block(cin: int, cout: int) -> ResnetBlock:
            return ResnetBlock(cin, cout, self.temb_ch, dropout, num_groups)

        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(ch, self.temb_ch), nn.Linear(self.temb_ch, self.temb_ch)])

        self.conv_in = nn.Conv2d(in_channels, ch, 3, stride=1, padding=1)

        in_ch_mult = (1,) + ch_mult
        curr_res = resolution
        self.down = nn.ModuleList()
        for i_level in range(self.num_resolutions):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i_level], ch * ch_mult[i_level]
            for _ in range(num_res_blocks):
                block.append(res_block(block_in, block_out))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in, num_groups))
            down = nn.Module()
            down.block, down.attn = block, attn
            if i_level != self.num_resolutions - 1:
                down.downsample = Downsample(block_in, resamp_with_conv)
                curr_res //= 2
            self.down.append(down)

        self.mid = nn.Module()
        self.mid.block_1 = res_block(block_in, block_in)
        self.mid.attn_1 = AttnBlock(block_in, num_groups)
        self.mid.block_2 = res_block(block_in, block_in)

        self.up = nn.ModuleList()
        for i_level in reversed(range(self.num_resolutions)):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[i_level]
            for i_block in range(num_res_blocks + 1):
                skip_in = ch * (in_ch_mult[i_level] if i_block == num_res_blocks else ch_mult[i_level])
                block.append(res_block(block_in + skip_in, block_out))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in, num_groups))
            up = nn.Module()
            up.block, up.attn = block, attn
            if i_level != 0:
                up.upsample = Upsample(block_in, resamp_with_conv)
                curr_res *= 2
            self.up.insert(0, up)

        self.norm_out = group_norm(block_in, num_groups)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``t`` holds one timestep per image ([B]) or one for the whole batch ([] or [1]), as the sampler passes it."""
        assert x.shape[2] == x.shape[3] == self.resolution, f"expected {self.resolution}x{self.resolution} input"
        if x.shape[0] == 1:  # oneDNN runs a batch of one through other convolution kernels
            return self.forward(x.expand(2, -1, -1, -1), t)[:1]

        temb = timestep_embedding(t.reshape(-1), self.ch)
        temb = self.temb.dense[1](swish(self.temb.dense[0](temb)))

        hs = [self.conv_in(x)]
        for i_level, down in enumerate(self.down):
            for i_block in range(self.num_res_blocks):
                h = down.block[i_block](hs[-1], temb)
                if len(down.attn) > 0:
                    h = down.attn[i_block](h)
                hs.append(h)
            if i_level != self.num_resolutions - 1:
                hs.append(down.downsample(hs[-1]))

        h = hs[-1]
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h, temb)), temb)

        for i_level in reversed(range(self.num_resolutions)):
            up = self.up[i_level]
            for i_block in range(self.num_res_blocks + 1):
                h = up.block[i_block](torch.cat([h, hs.pop()], dim=1), temb)
                if len(up.attn) > 0:
                    h = up.attn[i_block](h)
            if i_level != 0:
                h = up.upsample(h)

        return self.conv_out(swish(self.norm_out(h)))


ARCHITECTURE_FIELDS = (
    "in_channels", "out_ch", "ch", "ch_mult", "num_res_blocks", "attn_resolutions",
    "dropout", "resamp_with_conv", "resolution", "num_groups",
)


def build_unet(architecture: Mapping) -> UNet:
    """Build a :class:`UNet` from a config's ``architecture`` mapping (a dict or an OmegaConf node)."""
    unknown = sorted(set(architecture) - set(ARCHITECTURE_FIELDS))
    missing = sorted(set(ARCHITECTURE_FIELDS[:-1]) - set(architecture))
    if unknown or missing:
        raise HarnessError(
            f"model architecture config: unknown fields {unknown}, missing fields {missing}; "
            f"the fields are {list(ARCHITECTURE_FIELDS)} (num_groups is optional, default 32)."
        )
    kwargs = {key: architecture[key] for key in architecture}
    kwargs["ch_mult"] = tuple(int(m) for m in architecture["ch_mult"])
    kwargs["attn_resolutions"] = tuple(int(r) for r in architecture["attn_resolutions"])
    kwargs["dropout"] = float(architecture["dropout"])
    kwargs["resamp_with_conv"] = bool(architecture["resamp_with_conv"])
    for key in ("in_channels", "out_ch", "ch", "num_res_blocks", "resolution", "num_groups"):
        if key in kwargs:
            kwargs[key] = int(kwargs[key])
    return UNet(**kwargs)
