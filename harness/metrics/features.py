"""Feature extractors, through torch-fidelity's registry, and extracting features from a stream of images.

* ``digits-cnn`` (harness.models.digits_classifier): the shipped digits classifier's 64-d penultimate features.
* ``pixels``: the raw pixels on [0, 1], flattened (the Frechet distance in this space needs no network; for images
  of at most 16x16, where it has at most 768 dimensions).
* ``inception-v3-compat``: torch-fidelity's port of the TF Inception used by the paper's FID.

torch-fidelity reads its extractors' weights with ``torch.load(weights_only=False)``, which would run any pickle
payload in the file. So a file is handed to it only after ``verified_weights`` has read a private copy of it with
``weights_only=True`` (tensors and plain containers only); that same copy is what torch-fidelity then loads.
"""

from __future__ import annotations

import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import torch
import torch_fidelity
from torch.utils.data import DataLoader, Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from harness.core.errors import HarnessError
from harness.core.files import NotTensors, cache_dir, download, file_digest, load_tensors
from harness.metrics.references import register_once
from harness.models.digits_classifier import DigitsCNNFeatureExtractor

DIGITS = "digits-cnn"
PIXELS = "pixels"
OURS = (DIGITS, PIXELS)  # their weights (if any) are read by the harness with weights_only=True
WEIGHTS_URLS = {"inception-v3-compat": URL_INCEPTION_V3}  # torch-fidelity's extractors the harness can verify
PIXELS_MAX_SIZE = 16


class PixelFeatureExtractor(FeatureExtractorBase):
    """The image itself as features: uint8 [B, C, H, W] -> float [B, C*H*W] on [0, 1]."""

    def __init__(self, name, features_list, feature_extractor_internal_dtype=None, **kwargs):
        super().__init__(name, features_list)
        self.dtype = torch.float64 if feature_extractor_internal_dtype == "float64" else torch.float32

    def forward(self, x):
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting image as torch.Tensor with dtype=torch.uint8")
        vassert(x.shape[-1] <= PIXELS_MAX_SIZE and x.shape[-2] <= PIXELS_MAX_SIZE,
                f"pixel features are for images of at most {PIXELS_MAX_SIZE}x{PIXELS_MAX_SIZE}, got {tuple(x.shape)}")
        return (x.flatten(1).to(self.dtype) / 255.0,)

    @staticmethod
    def get_provided_features_list():
        return ("pixels",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "pixels"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 8, 8, dtype=torch.uint8)


for _name, _cls in ((DIGITS, DigitsCNNFeatureExtractor), (PIXELS, PixelFeatureExtractor)):
    setattr(_cls, "_ddim_harness_registered", True)
    register_once(FEATURE_EXTRACTORS_REGISTRY, torch_fidelity.register_feature_extractor, "feature extractor", _name, _cls)


def check_extractor(name: str) -> type[FeatureExtractorBase]:
    if name not in OURS and name not in WEIGHTS_URLS:
        raise HarnessError(f"unknown or unsupported feature extractor {name!r}: choose one of "
                           f"{sorted(OURS + tuple(WEIGHTS_URLS))} (metrics.feature_extractor).")
    return FEATURE_EXTRACTORS_REGISTRY[name]


def default_layer(name: str, metric: str) -> str:
    return check_extractor(name).get_default_feature_layer_for_metric(metric)


def hub_weights_file(name: str) -> Path:
    """Where torch hub keeps an extractor's weights (``$TORCH_HOME/hub/checkpoints/<file name of the URL>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_URLS[name].rsplit("/", 1)[-1]


def user_weights(name: str, weights_path: str | Path) -> Path:
    """``metrics.weights_path`` as a file that exists, else one HarnessError saying where the weights come from."""
    path = Path(weights_path).expanduser()
    if not path.is_file():
        source = f" (the {name} weights are {WEIGHTS_URLS[name]})" if name in WEIGHTS_URLS else ""
        raise HarnessError(f"feature extractor weights {path} not found; fix metrics.weights_path{source}, or set it "
                           "to null for the default weights.")
    return path


@lru_cache(maxsize=8)
def _verified_copy(path: str, size: int, mtime_ns: int) -> str:
    folder = cache_dir() / "verified-weights"
    folder.mkdir(parents=True, exist_ok=True)
    fd, copy = tempfile.mkstemp(dir=folder, suffix=".pth")
    try:
        with open(fd, "wb") as out, open(path, "rb") as src:
            shutil.copyfileobj(src, out)
        state = load_tensors(copy)
        if not (isinstance(state, dict) and all(torch.is_tensor(v) for v in state.values())):
            raise ValueError("not a state dict of tensors")
    except Exception as err:  # noqa: BLE001 - any refusal is the same answer: not a plain weights file
        Path(copy).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise HarnessError(f"cannot copy the feature extractor weights {path} into {folder} ({err}).") from None
        why = str(err) if isinstance(err, NotTensors) else f"{type(err).__name__}: {str(err)[:200]}"
        raise HarnessError(f"feature extractor weights {path} are not a plain state dict of tensors ({why}); refused, "
                           "since loading them could run code. Use the original weights file.") from None
    return copy


def verified_weights(name: str, weights_path: str | Path | None) -> str | None:
    """The weights file torch-fidelity may load for extractor ``name``: None for the harness's own extractors
    (which read with weights_only=True themselves), else a verified private copy of ``weights_path`` or of the torch
    hub file (downloaded once, its sha256 checked against the hash prefix in its file name, as torch hub does)."""
    check_extractor(name)
    if name in OURS:
        return str(user_weights(name, weights_path)) if weights_path else None
    url = WEIGHTS_URLS[name]
    if weights_path:
        path = user_weights(name, weights_path)
    else:
        path = hub_weights_file(name)
        if not path.is_file():
            download(url, path, fix=f"offline: download {url} elsewhere and set metrics.weights_path")
        prefix = path.stem.rsplit("-", 1)[-1]
        if not file_digest(path).startswith(prefix):
            raise HarnessError(f"{path} does not match the sha256 prefix {prefix} in its name: delete it to download it again.")
    st = path.stat()
    return _verified_copy(str(path.resolve()), st.st_size, st.st_mtime_ns)


def make_extractor(name: str, layers: list[str], weights_path: str | Path | None, device: torch.device) -> FeatureExtractorBase:
    cls = check_extractor(name)
    kwargs = {}
    weights = verified_weights(name, weights_path)
    if weights is not None:
        kwargs["feature_extractor_weights_path"] = weights
    extractor = cls(name, list(dict.fromkeys(layers)), **kwargs)
    return extractor.requires_grad_(False).eval().to(device)


@torch.no_grad()
def extract(images: Dataset, extractors: dict[str, FeatureExtractorBase], batch_size: int, device: torch.device,
            progress=None, chunk: int | None = None) -> dict[tuple[str, str], torch.Tensor]:
    """Features of every image, streamed in batches (images are never all in memory): {(extractor, layer): [N, D]}.
    With ``chunk`` (a repeat's N) no batch crosses a multiple of it, so a repeat's features come from the same batches
    whatever follows it: a cell grown by repeats scores its first repeats bitwise as the smaller cell did (a network
    on a GPU may pick other kernels for another batch shape)."""
    out: dict[tuple[str, str], list[torch.Tensor]] = {}
    n, chunk = len(images), chunk or len(images)
    batches = [range(i, min(i + batch_size, start + chunk, n)) for start in range(0, n, chunk)
               for i in range(start, min(start + chunk, n), batch_size)]
    for batch in DataLoader(images, batch_sampler=batches, num_workers=0):
        batch = batch.to(device)
        for name, fe in extractors.items():
            for layer, feats in fe.convert_features_tuple_to_dict(fe(batch)).items():
                out.setdefault((name, layer), []).append(feats.float().cpu())
        if progress is not None:
            progress.update(len(batch))
    return {k: torch.cat(v) for k, v in out.items()}
