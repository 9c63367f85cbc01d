"""FD_DINOv2 and CMMD in the metric suite (harness.metrics.suite): their networks as feature extractors, which a
cell's ``metrics`` section turns on, and CMMD of a repeat from its embeddings.

* ``fd_dinov2``: the Frechet distance in DINOv2 ViT-L/14 features with EDM2's preprocessing (harness.metrics.dinov2),
  and with ``metrics.fid_infinity`` its extrapolation ``fd_dinov2_inf``, computed as FID is (suite.feature_metrics).
* ``cmmd``: CMMD in CLIP ViT-L/14-336 embeddings (harness.metrics.clip, harness.metrics.cmmd).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from harness.core.names import Metric
from harness.metrics import clip, cmmd, dinov2, networks

LAYER = "features"
NETWORKS = {dinov2.NAME: ("dinov2", dinov2), clip.NAME: ("clip", clip)}  # feature space: (config section, module)


@dataclass(frozen=True)
class Network:
    """A network of the suite as a cell's config sets it: its feature space and its ``metrics.<section>``."""

    space: str
    spec: tuple  # the config section's items (hashable)

    @property
    def section(self) -> str:
        return NETWORKS[self.space][0]

    def settings(self) -> dict:
        return dict(self.spec)


def networks_of(metrics: Mapping) -> dict[str, Network]:
    """{feature space: Network} of the metrics a cell's ``metrics`` section turns on (none by default)."""
    on = {dinov2.NAME: bool(metrics.get("fd_dinov2")), clip.NAME: bool(metrics.get("cmmd"))}
    return {space: Network(space, tuple(_plain(metrics[NETWORKS[space][0]]).items())) for space, yes in on.items() if yes}


def _plain(section: Mapping) -> dict:
    return {k: (tuple(sorted(_plain(v).items())) if isinstance(v, Mapping) else v) for k, v in dict(section).items()}


def _spec(network: Network) -> dict:
    return {k: (dict(v) if isinstance(v, tuple) and k == "architecture" else v) for k, v in network.settings().items()}


def metrics(spaces: Mapping[str, Network], fid_infinity: bool) -> list[str]:
    out = [Metric.FD_DINOV2] + [Metric.FD_DINOV2_INF] * fid_infinity if dinov2.NAME in spaces else []
    return out + ([Metric.CMMD] if clip.NAME in spaces else [])


def feature_space(metric: str) -> str | None:
    return {Metric.FD_DINOV2: dinov2.NAME, Metric.FD_DINOV2_INF: dinov2.NAME, Metric.CMMD: clip.NAME}.get(metric)


def fetch(network: Network) -> None:
    """The network's weights here (downloaded now when missing) and its library importable: before any sampling."""
    spec = _spec(network)
    NETWORKS[network.space][1].library()  # importable: else one line naming the extra to install
    networks.weights_file(network.section, spec)


def identity(network: Network) -> str:
    """What determines the network's features besides its settings: the content of its weights."""
    return networks.identity(network.section, _spec(network))


def cache_part(network: Network) -> str:
    """A short name of the network's weights and settings, for its reference features' cache file."""
    text = repr((identity(network), sorted((k, v) for k, v in network.settings().items() if k != "weights_path")))
    return "w" + hashlib.sha256(text.encode()).hexdigest()[:12]


class VitExtractor(FeatureExtractorBase):
    """A network of this module as a torch-fidelity extractor (for suite's ``extract``): uint8 -> [B, D]."""

    def __init__(self, name: str, module: torch.nn.Module):
        super().__init__(name, [LAYER])
        self.module = module

    def forward(self, x):
        return (self.module(x),)

    @staticmethod
    def get_provided_features_list():
        return (LAYER,)


def make_extractor(network: Network, device: torch.device) -> VitExtractor:
    """The network as an extractor on ``device``, built once per process for the same settings and weights (a sweep's
    cells in one worker share it; building the ViT-L and reading its 1.2 GB costs seconds)."""
    return _extractor(network, identity(network), str(device))


@lru_cache(maxsize=2)
def _extractor(network: Network, weights: str, device: str) -> VitExtractor:
    spec = _spec(network)
    if network.space == dinov2.NAME:
        module = dinov2.DINOv2Features(dinov2.load(spec), int(spec["image_size"]))
    else:
        module = clip.CLIPEmbeddings(clip.load(spec), int(spec["image_size"]))
    return VitExtractor(network.space, module).requires_grad_(False).eval().to(torch.device(device))


def cmmd_score(gen: torch.Tensor, ref: torch.Tensor, kernel: Mapping) -> float:
    """CMMD of a repeat's embeddings against the reference's, with the kernel settings ``metrics.cmmd_*``."""
    return cmmd.mmd2(gen, ref, sigma=float(kernel["cmmd_sigma"]), scale=float(kernel["cmmd_scale"]),
                     estimator=str(kernel["cmmd_estimator"]))
