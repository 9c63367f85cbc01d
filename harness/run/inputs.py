"""What a cell's input files hold, part of its identity (harness.run.cell): the checkpoint, the extractor's weights and
the reference set, named by content rather than path (docs/architecture.md: a cell's keys). Hashes are computed once
per file version (harness.core.files.file_digest)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.files import file_sha256
from harness.metrics import features as F
from harness.metrics.references import check_reference, datasets_root, reference_fingerprint
from harness.metrics.vit_scores import identity as vit_identity
from harness.metrics.vit_scores import networks_of
from harness.models.checkpoints import checkpoint_dir, entry_for
from harness.models.digits_classifier import DEFAULT_WEIGHTS
from harness.models.hub import cached_snapshot, weights_file


def _sha256(path: Path, setting: str) -> str:
    try:
        return "sha256:" + file_sha256(path)
    except OSError as err:
        raise HarnessError(f"cannot read {path} ({err.strerror or type(err).__name__}); fix {setting}.") from None


def checkpoint_identity(model: Mapping) -> str | None:
    """The content of the model's checkpoint; None for a model without one (exact eps*)."""
    if model.get("kind") == "analytic":
        return None
    ckpt = model.get("checkpoint") or {}
    if ckpt.get("path"):
        path = Path(ckpt["path"]).expanduser()
        return _sha256(weights_file(path) if path.is_dir() else path, "model.checkpoint.path")  # a diffusers folder
    if ckpt.get("hub"):  # its snapshot is downloaded before the key is needed (preflight.check_environment)
        root = cached_snapshot(ckpt["hub"])
        return _sha256(weights_file(root), "model.checkpoint.hub") if root else f"hub:{ckpt['hub']}"
    if ckpt.get("name") is None:
        return None
    entry = entry_for(ckpt["name"], bool(ckpt.get("ema", True)))
    if entry.sha256 or entry.md5:
        return f"sha256:{entry.sha256}" if entry.sha256 else f"md5:{entry.md5}"
    cached = checkpoint_dir() / entry.filename  # no published checksum: the file the user placed there
    return _sha256(cached, "model.checkpoint.path") if cached.is_file() else f"name:{entry.name}"


def extractor_identity(metrics: Mapping) -> str | None:
    """The content of the feature extractor's weights (None: pixels, which have none)."""
    name = metrics.get("feature_extractor")
    F.check_extractor(name)
    if metrics.get("weights_path"):
        return _sha256(F.user_weights(name, metrics["weights_path"]), "metrics.weights_path")
    if name == F.DIGITS:
        return _sha256(DEFAULT_WEIGHTS, "the harness install (reinstall it)")
    if name in F.WEIGHTS_URLS:
        return "hub:" + F.WEIGHTS_URLS[name].rsplit("/", 1)[-1]
    return None


def network_identities(metrics: Mapping) -> dict[str, str]:
    """``<dinov2|clip>_weights``: the content of the weights of the networks of fd_dinov2 and cmmd, when they are on."""
    return {f"{n.section}_weights": vit_identity(n) for n in networks_of(metrics).values()}


def reference_identity(dataset: Mapping) -> str:
    """The reference set's fingerprint (raises HarnessError when its data is missing)."""
    reference = dataset.get("fid_reference")
    check_reference(reference)
    return reference_fingerprint(reference, datasets_root(reference, dataset.get("root")))
