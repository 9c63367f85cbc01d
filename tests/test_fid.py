"""FID through torch-fidelity in the digits classifier's features: values, reference cache, errors; the classifier."""

import importlib
import os
import json
import shutil

import pytest
import torch

from harness import digits_classifier, fid
from harness.datasets import digits
from harness.errors import HarnessError
from harness.fid import (
    DigitsCNNFeatureExtractor, TensorImages, compute_fid, reference_statistics_path, register,
)


@pytest.fixture(autouse=True)
def private_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("DDIM_HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.fixture
def spy(monkeypatch):
    """Counts the images that go through the digits-cnn extractor."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    seen = []
    cls = FEATURE_EXTRACTORS_REGISTRY["digits-cnn"]  # the registered class (a reload may have replaced it)
    forward = cls.forward

    def counting(self, x):
        seen.append(x.shape[0])
        return forward(self, x)

    monkeypatch.setattr(cls, "forward", counting)
    return seen


def noise(n=1500, seed=0):
    return torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_fid_values_train_test_noise():
    same = compute_fid(digits.images_uint8("train"), "digits-train", verbose=False)["fid"]
    held_out = compute_fid(digits.images_uint8("test"), "digits-train", verbose=False)["fid"]
    rand = compute_fid(noise(), "digits-train", verbose=False)["fid"]
    assert abs(same) < 1e-3 * held_out  # identical sets: 0 up to round-off
    assert 0.1 < held_out < 50
    assert rand > 10 * held_out


def test_result_names_the_extractor():
    out = compute_fid(digits.images_uint8("test"), "digits-train", verbose=False)
    assert out["feature_extractor"] == "digits-cnn"
    assert out["feature_layer"] == "penultimate"
    assert out["reference"] == "digits-train"
    assert out["n_samples"] == 297
    assert isinstance(out["fid"], float)


def test_reference_statistics_are_cached(spy, tmp_path):
    path = reference_statistics_path("digits-train", "digits-cnn")
    assert path.parent == tmp_path / "cache" / "fidelity"
    assert path.name.startswith("digits-train-") and path.name.endswith("-digits-cnn-stat-fid-penultimate.pt")
    assert not path.exists()
    samples = noise(100)

    first = compute_fid(samples, "digits-train", verbose=False)
    assert path.is_file() and first["reference_statistics"] == str(path) and not first["reference_cached"]
    assert sum(spy) == 100 + 1500  # samples + reference
    mtime = path.stat().st_mtime_ns

    spy.clear()
    second = compute_fid(samples, "digits-train", verbose=False)
    assert sum(spy) == 100  # only the samples: the reference statistics come from the cache
    assert second["reference_cached"] and path.stat().st_mtime_ns == mtime
    assert second["fid"] == pytest.approx(first["fid"], rel=1e-9)
    # the generated samples are never cached: only the reference's files are there
    assert all(p.name.startswith("digits-train-") for p in path.parent.iterdir())


def test_explicit_cache_dir(tmp_path):
    out = compute_fid(noise(50), "digits-test", cache_dir=tmp_path / "elsewhere", verbose=False)
    assert out["reference_statistics"] == str(reference_statistics_path("digits-test", "digits-cnn", tmp_path / "elsewhere"))
    assert (tmp_path / "elsewhere").is_dir() and not (tmp_path / "cache").exists()


def test_cache_name_tracks_data_and_weights(monkeypatch, tmp_path):
    base = reference_statistics_path("digits-train", "digits-cnn")
    assert reference_statistics_path("digits-test", "digits-cnn") != base

    # other weights -> other statistics
    weights = tmp_path / "w.pt"
    state = torch.load(digits_classifier.DEFAULT_WEIGHTS, weights_only=True)
    state["fc1.bias"] = state["fc1.bias"] + 1.0
    torch.save(state, weights)
    assert reference_statistics_path("digits-train", "digits-cnn", feature_extractor_weights_path=weights) != base
    shutil.copy(digits_classifier.DEFAULT_WEIGHTS, tmp_path / "same.pt")
    assert reference_statistics_path("digits-train", "digits-cnn", feature_extractor_weights_path=tmp_path / "same.pt") == base

    # changed data (or quantization) -> other statistics
    original = digits.images_uint8
    monkeypatch.setattr(digits, "images_uint8", lambda split="train": original(split) // 2)
    assert reference_statistics_path("digits-train", "digits-cnn") != base


def test_unknown_names_and_bad_samples():
    x = digits.images_uint8("test")
    with pytest.raises(HarnessError, match="digits-train"):
        compute_fid(x, "no-such-reference", verbose=False)
    with pytest.raises(HarnessError, match="digits-cnn"):
        compute_fid(x, "digits-train", "no-such-extractor", verbose=False)
    with pytest.raises(HarnessError, match="to_uint8"):
        compute_fid(x.float(), "digits-train", verbose=False)
    with pytest.raises(HarnessError, match="8x8"):
        compute_fid(torch.zeros(4, 1, 16, 16, dtype=torch.uint8), "digits-train", verbose=False)
    with pytest.raises(HarnessError):
        reference_statistics_path("no-such-reference", "digits-cnn")


def test_registration_is_idempotent():
    from torch_fidelity.registry import DATASETS_REGISTRY, FEATURE_EXTRACTORS_REGISTRY

    register()
    register()
    module = importlib.reload(fid)
    module.register()
    assert FEATURE_EXTRACTORS_REGISTRY["digits-cnn"] is module.DigitsCNNFeatureExtractor
    ds = DATASETS_REGISTRY["digits-test"]("unused", False)
    assert len(ds) == 297 and ds[0].dtype == torch.uint8 and ds[0].shape == (1, 8, 8)


def test_extractor_inputs():
    x = digits.images_uint8("test")[:20]
    ex = DigitsCNNFeatureExtractor("digits-cnn", ["penultimate", "logits"])
    feats, logits = ex(x)
    assert feats.shape == (20, digits_classifier.FEATURE_DIM) and feats.dtype == torch.float32
    assert logits.shape == (20, 10)
    (rgb,) = DigitsCNNFeatureExtractor("digits-cnn", ["penultimate"])(x.repeat(1, 3, 1, 1))
    torch.testing.assert_close(rgb, feats)
    (f64,) = DigitsCNNFeatureExtractor("digits-cnn", ["penultimate"], feature_extractor_internal_dtype="float64")(x)
    assert f64.dtype == torch.float64
    torch.testing.assert_close(f64.float(), feats, rtol=1e-4, atol=1e-4)
    ds = TensorImages(x)
    assert len(ds) == 20 and torch.equal(ds[3], x[3])


def test_shipped_classifier_accuracy():
    model = digits_classifier.load_classifier()
    acc = digits_classifier.accuracy(model, digits.images_uint8("test"), digits.labels("test"))
    assert acc >= 0.95


def test_training_short(tmp_path):
    _, hist = digits_classifier.train(epochs=2, seed=1, log=None)
    assert hist["epoch_losses"][1] < hist["epoch_losses"][0]

    out = tmp_path / "clf.pt"
    assert digits_classifier.main(["--out", str(out), "--epochs", "1", "--seed", "1"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["epochs"] == 1 and card["seed"] == 1 and card["data_sha256"] == digits.data_hash()
    assert card["sha256"] == digits_classifier_sha(out)
    assert 0.0 <= card["heldout_accuracy"] <= 1.0
    model = digits_classifier.load_classifier(out)
    assert model.fc1.out_features == digits_classifier.FEATURE_DIM


def digits_classifier_sha(path):
    from harness.checkpoints import file_sha256

    return file_sha256(path)


def test_parallel_first_calls_compute_the_reference_statistics_once(tmp_path):
    """Two processes asking for FID against a cold cache at once: one computes the statistics, the other reads them."""
    import subprocess
    import sys

    code = (
        "from harness.fid import compute_fid; from harness.datasets import digits; "
        "compute_fid(digits.images_uint8('test'), 'digits-train', verbose=True)"
    )
    env = dict(os.environ, DDIM_HARNESS_CACHE=str(tmp_path), OMP_NUM_THREADS="1", TORCH_HOME=str(tmp_path / "torch"))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    logs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    writes = [line for log in logs for line in log.splitlines() if line.startswith("Caching") and "stat-fid" in line]
    assert len(writes) == 1, logs  # torch-fidelity announces every statistics file it computes and writes
    assert sum("Loading cached" in log and "stat-fid" in log for log in logs) == 1
