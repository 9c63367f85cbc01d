"""FID through torch-fidelity, with the harness's digits feature extractor and reference inputs registered.

* ``digits-cnn``: a torch-fidelity feature extractor giving the penultimate features (64-d) of the shipped
  digits classifier (``harness.digits_classifier``). FID in these features is NOT Inception FID and is
  always reported together with the extractor's name.
* ``digits-train`` / ``digits-test``: torch-fidelity inputs holding the digits splits as uint8 [1, 8, 8].
* ``celeba64-train`` / ``celeba64-test``, ``lsun_bedroom-train``, ``lsun_church-train``: torch-fidelity inputs
  reading a dataset folder (``datasets_root``) with the official preprocessing of ``harness.datasets`` (CelebA's
  128x128 crop resized to 64; LSUN's resize to 256 and centre crop, first 50,000 images). CIFAR-10 uses
  torch-fidelity's own ``cifar10-train`` (torchvision's files under ``datasets_root``; downloaded when allowed).

``compute_fid`` feeds the generated samples (never cached) and a reference (a registered input name) to
``torch_fidelity.calculate_metrics``. The reference statistics are cached by torch-fidelity in
``<harness cache>/fidelity`` as ``{cache name}-{extractor}-stat-fid-{layer}.pt``, computed once per reference,
extractor and weights. torch-fidelity uses the registered name itself as the cache name when given a name (it
ignores ``input2_cache_name`` then), so ``compute_fid`` instead passes the registered input as a (lazily
built) Dataset together with ``input2_cache_name``, a name that fingerprints what the statistics depend on:

    {reference}[-{sha256 of the reference's data, 12 hex}][-w{sha256 of the weights file, 12 hex}][-float64]

(the data part for the harness's own references, the weights part for ``digits-cnn`` and for any extractor
given ``feature_extractor_weights_path``, the dtype part when asked for float64 features), so changed data,
quantization, split or classifier never reuse stale statistics. The data part hashes the digits' uint8 images
themselves; for the dataset-folder references it hashes ``harness.datasets.reference_fingerprint``: the
preprocessing's definition string, the split, the image count and the images' names (CelebA file names, LSUN lmdb
keys), so these references need their data present even when the statistics are cached. torch-fidelity's own
inputs (``cifar10-train``) are fixed, md5-checked files and keep their plain name.

A reference whose data is missing raises the ``harness.datasets.check_available`` message (the path expected and
where to get it) before any feature is extracted, unless torch-fidelity can download it (``datasets_download``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import urllib.error
from functools import lru_cache
from pathlib import Path

import torch
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import DATASETS_REGISTRY, FEATURE_EXTRACTORS_REGISTRY

from .checkpoints import cache_dir as harness_cache_dir
from .digits_classifier import DEFAULT_WEIGHTS, load_classifier
from .errors import HarnessError

DIGITS_EXTRACTOR = "digits-cnn"
DIGITS_REFERENCES = {"digits-train": "train", "digits-test": "test"}
# references read from a dataset folder by harness.datasets: name -> (dataset config name, split)
DATA_REFERENCES = {
    "celeba64-train": ("celeba", "train"),
    "celeba64-test": ("celeba", "test"),
    "lsun_bedroom-train": ("lsun_bedroom", "train"),
    "lsun_church-train": ("lsun_church", "train"),
}
# torch-fidelity's own inputs that read a harness dataset's files (it downloads them when allowed)
FIDELITY_DATA_REFERENCES = {"cifar10-train": ("cifar10", "train"), "cifar10-val": ("cifar10", "test")}
# where the weights of torch-fidelity's extractors come from, for messages
WEIGHTS_URLS = {"inception-v3-compat": URL_INCEPTION_V3}
_MARK = "_ddim_harness_registered"


class DigitsCNNFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor: the digits classifier's penultimate features (and logits).

    Input: uint8 [B, 1, 8, 8] (or [B, 3, 8, 8], averaged over channels) in 0..255.
    Features: ``penultimate`` (64-d, after the ReLU; the default for FID/KID/PRC) and ``logits`` (10-d; ISC).
    """

    def __init__(
        self,
        name,
        features_list,
        feature_extractor_weights_path=None,
        feature_extractor_internal_dtype=None,
        **kwargs,
    ):
        super().__init__(name, features_list)
        vassert(
            feature_extractor_internal_dtype in ("float32", "float64", None),
            "Only 32 and 64 bit floats are supported for internal dtype of this feature extractor",
        )
        # torch_fidelity.helpers.text_to_dtype maps "float64" to float32 in 0.4.0, so resolve it here.
        self.feature_extractor_internal_dtype = torch.float64 if feature_extractor_internal_dtype == "float64" else torch.float32
        self.model = load_classifier(feature_extractor_weights_path)
        self.to(self.feature_extractor_internal_dtype)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting image as torch.Tensor with dtype=torch.uint8")
        vassert(x.dim() == 4 and x.shape[1] in (1, 3), f"Input is not Bx1xHxW or Bx3xHxW: {tuple(x.shape)}")
        vassert(tuple(x.shape[2:]) == (8, 8), f"the {self.name} extractor takes 8x8 digits images, got {tuple(x.shape)}")
        x = x.to(self.feature_extractor_internal_dtype)
        if x.shape[1] == 3:
            x = x.mean(dim=1, keepdim=True)
        penultimate, logits = self.model.features(x)
        out = {"penultimate": penultimate, "logits": logits}
        # float32 like torch-fidelity's own extractors, float64 when asked for (the cache name then says so).
        return tuple(out[name].to(self.feature_extractor_internal_dtype) for name in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "penultimate", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "penultimate", "kid": "penultimate", "prc": "penultimate"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 8, 8, dtype=torch.uint8)


class TensorImages(Dataset):
    """A uint8 tensor [N, C, H, W] (e.g. generated samples after ``harness.images.to_uint8``) as a Dataset."""

    def __init__(self, images: torch.Tensor):
        if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4:
            got = f"{images.dtype} {tuple(images.shape)}" if torch.is_tensor(images) else type(images).__name__
            raise HarnessError(
                f"FID takes images as a uint8 tensor [N, C, H, W] in 0..255, got {got}; "
                "quantize model outputs with harness.images.to_uint8 first."
            )
        self.images = images.detach().cpu().contiguous()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i]


class _DigitsSplit(Dataset):
    def __init__(self, split: str):
        from .datasets import digits

        self.images = digits.images_uint8(split).contiguous()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i]


class _LazyRegisteredInput(Dataset):
    """A torch-fidelity registered input, built on first use (not at all when the statistics are cached)."""

    def __init__(self, name: str, datasets_root: str, download: bool):
        self.name, self.datasets_root, self.download = name, datasets_root, download
        self._dataset = None

    def _get(self) -> Dataset:
        if self._dataset is None:
            factory = DATASETS_REGISTRY[self.name]
            if not _ours(factory):  # the digits need no files
                os.makedirs(self.datasets_root, exist_ok=True)
            self._dataset = factory(self.datasets_root, self.download)
        return self._dataset

    def __len__(self) -> int:
        return len(self._get())

    def __getitem__(self, i):
        return self._get()[i]


def _digits_factory(split: str):
    def create(root, download):  # torch-fidelity's (root, download) signature; the digits need neither
        return _DigitsSplit(split)

    setattr(create, _MARK, True)
    return create


def _data_factory(dataset: str, split: str):
    def create(root, download):  # the data cannot be downloaded automatically: check_available says where from
        from .datasets import reference_dataset

        return reference_dataset({"name": dataset, "root": root}, split)

    setattr(create, _MARK, True)
    return create


def _ours(obj) -> bool:
    return bool(getattr(obj, _MARK, False)) or (
        isinstance(obj, type)
        and obj.__module__ == DigitsCNNFeatureExtractor.__module__
        and obj.__qualname__ == DigitsCNNFeatureExtractor.__qualname__
    )


def _register_one(registry: dict, register_fn, kind: str, name: str, obj) -> None:
    existing = registry.get(name)
    if existing is None:
        register_fn(name, obj)
    elif _ours(existing):
        registry[name] = obj
    else:
        raise HarnessError(f"torch-fidelity already has a different {kind} named {name!r}.")


def register() -> None:
    """Register ``digits-cnn``, ``digits-train``/``-test`` and ``DATA_REFERENCES`` with torch-fidelity; idempotent.

    torch-fidelity refuses duplicate names, so an existing entry of ours (e.g. after a module reload) is
    replaced in place, and one registered by someone else is an error.
    """
    _register_one(
        FEATURE_EXTRACTORS_REGISTRY, torch_fidelity.register_feature_extractor, "feature extractor",
        DIGITS_EXTRACTOR, DigitsCNNFeatureExtractor,
    )
    factories = {name: _digits_factory(split) for name, split in DIGITS_REFERENCES.items()}
    factories.update({name: _data_factory(*where) for name, where in DATA_REFERENCES.items()})
    for name, factory in factories.items():
        _register_one(DATASETS_REGISTRY, torch_fidelity.register_dataset, "input", name, factory)

register()


def known_references() -> list[str]:
    return sorted(DATASETS_REGISTRY)


def known_feature_extractors() -> list[str]:
    return sorted(FEATURE_EXTRACTORS_REGISTRY)


def _check_extractor(feature_extractor: str) -> type[FeatureExtractorBase]:
    if feature_extractor not in FEATURE_EXTRACTORS_REGISTRY:
        raise HarnessError(
            f"unknown FID feature extractor {feature_extractor!r}; known: {known_feature_extractors()}. "
            "Set fid.feature_extractor to one of them."
        )
    return FEATURE_EXTRACTORS_REGISTRY[feature_extractor]


def _check_reference(reference: str) -> None:
    if not isinstance(reference, str) or reference not in DATASETS_REGISTRY:
        raise HarnessError(
            f"unknown FID reference {reference!r}; known (torch-fidelity registered inputs): {known_references()}. "
            "Set dataset.fid_reference to one of them."
        )


@lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _file_sha256(path: str | Path, feature_extractor: str | None = None) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        source = ""
        if feature_extractor in WEIGHTS_URLS:
            url = WEIGHTS_URLS[feature_extractor]
            source = (
                f" The {feature_extractor} weights are {url} (torch hub caches them as "
                f"$TORCH_HOME/hub/checkpoints/{url.rsplit('/', 1)[-1]}): download that file and give its path, "
                "or set fid.weights_path=null to let torch hub fetch it."
            )
        raise HarnessError(
            f"feature extractor weights {p} not found; fix feature_extractor_weights_path (fid.weights_path).{source}"
        )
    st = p.stat()
    return _sha256_cached(str(p.resolve()), st.st_size, st.st_mtime_ns)


def _datasets_root(reference: str, datasets_root: str | Path | None) -> Path:
    """``datasets_root``, else the harness's data folder for its own references, else torch-fidelity's default."""
    if datasets_root is not None:
        return Path(datasets_root).expanduser()
    if reference in DATA_REFERENCES:
        from .datasets import default_data_root

        return default_data_root()
    return Path(torch.hub._get_torch_home()) / "fidelity_datasets"  # torch-fidelity's default


def _data_problem(reference: str, datasets_root: Path) -> str | None:
    """``check_available``'s message when a reference backed by a harness dataset lacks its files, else None."""
    where = DATA_REFERENCES.get(reference) or FIDELITY_DATA_REFERENCES.get(reference)
    if where is None:
        return None
    from .datasets import check_available

    dataset, split = where
    return check_available({"name": dataset, "root": str(datasets_root)}, split)


def _data_fingerprint(reference: str, datasets_root: Path | None = None) -> str | None:
    """sha256 (12 hex) of what a harness reference's statistics depend on (see the module docstring)."""
    if reference in DIGITS_REFERENCES and _ours(DATASETS_REGISTRY.get(reference)):
        from .datasets import digits

        x = digits.images_uint8(DIGITS_REFERENCES[reference]).contiguous()
        return hashlib.sha256(str(tuple(x.shape)).encode() + x.numpy().tobytes()).hexdigest()[:12]
    if reference in DATA_REFERENCES and _ours(DATASETS_REGISTRY.get(reference)):
        from .datasets import reference_fingerprint

        root = _datasets_root(reference, datasets_root)
        problem = _data_problem(reference, root)
        if problem:
            raise HarnessError(f"FID reference {reference}: {problem}")
        dataset, split = DATA_REFERENCES[reference]
        spec = reference_fingerprint({"name": dataset, "root": str(root)}, split)
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return None


def _weights_fingerprint(feature_extractor: str, weights_path: str | Path | None) -> str | None:
    if weights_path is not None:
        return _file_sha256(weights_path, feature_extractor)[:12]
    if feature_extractor == DIGITS_EXTRACTOR:
        return _file_sha256(DEFAULT_WEIGHTS)[:12]
    return None  # torch-fidelity's own extractors: fixed weights named by their download URL


def reference_cache_name(
    reference: str,
    feature_extractor: str = DIGITS_EXTRACTOR,
    *,
    feature_extractor_weights_path: str | Path | None = None,
    feature_extractor_internal_dtype: str | None = None,
    datasets_root: str | Path | None = None,
) -> str:
    """The torch-fidelity cache name of a reference (see the module docstring)."""
    _check_reference(reference)
    _check_extractor(feature_extractor)
    parts = [reference]
    data = _data_fingerprint(reference, datasets_root)
    if data:
        parts.append(data)
    weights = _weights_fingerprint(feature_extractor, feature_extractor_weights_path)
    if weights:
        parts.append(f"w{weights}")
    if feature_extractor_internal_dtype == "float64":
        parts.append("float64")
    return "-".join(parts)


def _cache_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else harness_cache_dir() / "fidelity"


def reference_statistics_path(
    reference: str,
    feature_extractor: str = DIGITS_EXTRACTOR,
    cache_dir: str | Path | None = None,
    *,
    feature_layer: str | None = None,
    feature_extractor_weights_path: str | Path | None = None,
    feature_extractor_internal_dtype: str | None = None,
    datasets_root: str | Path | None = None,
) -> Path:
    """Where torch-fidelity keeps (or will keep) the reference's FID statistics (mu, sigma)."""
    cls = _check_extractor(feature_extractor)
    layer = feature_layer or cls.get_default_feature_layer_for_metric("fid")
    name = reference_cache_name(
        reference,
        feature_extractor,
        feature_extractor_weights_path=feature_extractor_weights_path,
        feature_extractor_internal_dtype=feature_extractor_internal_dtype,
        datasets_root=datasets_root,
    )
    return _cache_root(cache_dir) / f"{name}-{feature_extractor}-stat-fid-{layer}.pt"


def compute_fid(
    samples_uint8: torch.Tensor,
    reference: str,
    feature_extractor: str = DIGITS_EXTRACTOR,
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 500,
    device="cpu",
    verbose: bool = True,
    feature_layer: str | None = None,
    feature_extractor_weights_path: str | Path | None = None,
    feature_extractor_internal_dtype: str | None = None,
    datasets_root: str | Path | None = None,
    datasets_download: bool = True,
) -> dict:
    """FID of uint8 samples [N, C, H, W] against a registered reference, in ``feature_extractor``'s features.

    ``cache_dir``: torch-fidelity's ``cache_root`` (default ``<harness cache>/fidelity``). ``datasets_root``:
    where registered datasets that need files are kept: the dataset config's ``root`` (default: the harness's data
    folder for ``DATA_REFERENCES``, torch-fidelity's ``$TORCH_HOME/fidelity_datasets`` for its own inputs such as
    ``cifar10-train``). ``datasets_download``: let torch-fidelity download its own inputs when missing.
    ``feature_extractor_weights_path``: a local weights file (e.g. the Inception weights on an offline cluster).
    Returns ``fid``, ``feature_extractor``, ``feature_layer``, ``reference``, ``n_samples``,
    ``reference_statistics`` (the cached file) and ``reference_cached`` (whether it existed before the call).
    """
    cls = _check_extractor(feature_extractor)
    _check_reference(reference)
    samples = TensorImages(samples_uint8)
    if len(samples) < 2:
        raise HarnessError(f"FID needs at least 2 samples, got {len(samples)}; raise N.")
    layer = feature_layer or cls.get_default_feature_layer_for_metric("fid")
    if layer not in cls.get_provided_features_list():
        raise HarnessError(
            f"feature extractor {feature_extractor!r} has no feature {layer!r}; it provides {list(cls.get_provided_features_list())}."
        )
    cache_root = _cache_root(cache_dir)
    datasets_root = _datasets_root(reference, datasets_root)
    cache_name = reference_cache_name(
        reference,
        feature_extractor,
        feature_extractor_weights_path=feature_extractor_weights_path,
        feature_extractor_internal_dtype=feature_extractor_internal_dtype,
        datasets_root=datasets_root,
    )
    stats_path = cache_root / f"{cache_name}-{feature_extractor}-stat-fid-{layer}.pt"
    cached = stats_path.is_file()
    if not cached:
        problem = _data_problem(reference, datasets_root)
        if problem and not (datasets_download and reference in FIDELITY_DATA_REFERENCES):
            raise HarnessError(f"FID reference {reference}: {problem}")
    cuda = torch.device(device).type == "cuda"

    kwargs = dict(
        input1=samples,
        input2=_LazyRegisteredInput(reference, str(datasets_root), datasets_download),
        input2_cache_name=cache_name,
        fid=True,
        feature_extractor=feature_extractor,
        feature_layer_fid=layer,
        cuda=cuda,
        batch_size=int(batch_size),
        cache_root=str(cache_root),
        cache=True,
        samples_shuffle=False,
        save_cpu_ram=True,  # DataLoader without worker processes: tensors, or files read in this process
        verbose=verbose,
    )
    if feature_extractor_weights_path is not None:
        kwargs["feature_extractor_weights_path"] = str(Path(feature_extractor_weights_path).expanduser())
    if feature_extractor_internal_dtype is not None:
        kwargs["feature_extractor_internal_dtype"] = feature_extractor_internal_dtype
    try:
        if cached:
            metrics = torch_fidelity.calculate_metrics(**kwargs)
        else:  # parallel jobs: the first computes the reference statistics, the others wait and read them
            cache_root.mkdir(parents=True, exist_ok=True)
            with open(stats_path.with_name(stats_path.name + ".lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                metrics = torch_fidelity.calculate_metrics(**kwargs)
    except ValueError as exc:  # torch-fidelity reports bad inputs/options with ValueError (vassert)
        raise HarnessError(f"torch-fidelity rejected the FID inputs ({feature_extractor} vs {reference}): {exc}") from exc
    except urllib.error.URLError as exc:  # offline: torch hub weights or a torch-fidelity dataset
        hint = ""
        if feature_extractor in WEIGHTS_URLS and feature_extractor_weights_path is None:
            hint = f" The {feature_extractor} weights come from {WEIGHTS_URLS[feature_extractor]}: offline, download it elsewhere and set fid.weights_path."
        if reference in FIDELITY_DATA_REFERENCES and not cached:
            hint += f" {reference} is downloaded into {datasets_root}: offline, put the data there (see dataset.root)."
        raise HarnessError(f"FID ({feature_extractor} vs {reference}) needed a download that failed: {exc}.{hint}") from exc
    return {
        "fid": float(metrics[torch_fidelity.KEY_METRIC_FID]),
        "feature_extractor": feature_extractor,
        "feature_layer": layer,
        "reference": reference,
        "n_samples": len(samples),
        "reference_statistics": str(stats_path),
        "reference_cached": cached,
    }
