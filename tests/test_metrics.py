"""The metric suite (FID, KID, precision/recall, pixel FD) through torch-fidelity's metric functions: values,
repeats, the reference-features cache, safe loading of cached files and weights, the statistics of repeats."""

import importlib
import json
import math
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.models import digits_classifier
from harness.metrics import features, suite as metrics
from harness.diffusion.analytic import frechet_distance
from harness.data import digits
from harness.core.errors import HarnessError
from harness.metrics.suite import Scoring, score, summarize, t_interval
from harness.core.names import repeat_stat
from harness.metrics.references import TensorImages, reference_fingerprint

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("private_caches")  # clitools.private_caches


@pytest.fixture
def spy(monkeypatch):
    """Counts the images that go through the digits-cnn extractor."""
    seen = []
    forward = digits_classifier.DigitsCNNFeatureExtractor.forward

    def counting(self, x):
        seen.append(x.shape[0])
        return forward(self, x)

    monkeypatch.setattr(digits_classifier.DigitsCNNFeatureExtractor, "forward", counting)
    return seen


def noise(n=1500, seed=0):
    return torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def digits_scoring(reference="digits-train", **kw):
    return Scoring(reference=reference, feature_extractor="digits-cnn", image_size=8, **kw)


def one(x, **kw):
    return score(TensorImages(x), 1, digits_scoring(**kw), CPU)[0]


def test_values_train_test_noise():
    same, held_out, rand = one(digits.images_uint8("train")), one(digits.images_uint8("test")), one(noise())
    for m in ("fid", "fd_pixels"):
        assert abs(same[m]) < 1e-3 * held_out[m]  # identical sets: 0 up to round-off
        assert rand[m] > 10 * held_out[m]
    assert 0.1 < held_out["fid"] < 50
    assert rand["kid"] > 10 * max(abs(same["kid"]), held_out["kid"])  # KID is unbiased: ~0 for the same set
    assert same["prc_precision"] == same["prc_recall"] == 1.0  # every image lies in its own k-NN ball
    assert held_out["prc_precision"] > 0.8 > 0.2 > rand["prc_precision"]
    assert set(held_out) == {"fid", "kid", "kid_subset_std", "prc_precision", "prc_recall", "fd_pixels"}


def test_no_pixel_metric_above_16x16():
    s = Scoring(reference="cifar10-train", feature_extractor="inception-v3-compat", image_size=32)
    assert "fd_pixels" not in s.metrics and s.feature_space("fid") == "inception-v3-compat"
    assert digits_scoring().feature_space("fd_pixels") == "pixels"


def test_repeats_are_disjoint_index_ranges():
    a, b = digits.images_uint8("test")[:120], noise(120, seed=3)
    both = score(TensorImages(torch.cat([a, b])), 2, digits_scoring(), CPU)
    assert both == [one(a), one(b)]  # repeat k is images k*N .. (k+1)*N - 1, scored on its own
    with pytest.raises(HarnessError, match="repeats"):
        score(TensorImages(a[:5]), 2, digits_scoring(), CPU)


def test_reference_features_are_cached_safely(spy, tmp_path):
    samples = noise(100)
    first = one(samples)
    assert sum(spy) == 100 + 1500  # samples + reference
    files = sorted((tmp_path / "cache" / "references").glob("*.npz"))
    assert [f.name.split("-")[0:2] for f in files] == [["digits", "train"]] * 2  # digits-cnn and pixels features
    spy.clear()
    assert one(samples) == first and sum(spy) == 100  # the reference came from the cache

    # A pickle payload planted at the cache path is never executed: npz is read with allow_pickle=False.
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for f in files:
        f.write_bytes(pickle.dumps(Payload()))
    spy.clear()
    assert one(samples) == first  # recomputed, not trusted
    assert sum(spy) == 100 + 1500 and not marker.exists()
    np.savez(files[0], features=np.array([Payload()], dtype=object))  # an object array inside a real npz
    assert one(samples) == first and not marker.exists()


def test_fingerprint_tracks_data_and_weights(monkeypatch, tmp_path):
    base = reference_fingerprint("digits-train", tmp_path)
    assert base.startswith("digits-train-") and reference_fingerprint("digits-test", tmp_path) != base
    original = digits.images_uint8
    monkeypatch.setattr(digits, "images_uint8", lambda split="train": original(split) // 2)
    assert reference_fingerprint("digits-train", tmp_path) != base
    monkeypatch.undo()

    weights = tmp_path / "w.pt"  # other classifier weights: other cached features
    state = torch.load(digits_classifier.DEFAULT_WEIGHTS, weights_only=True)
    state["fc1.bias"] = state["fc1.bias"] + 1.0
    torch.save(state, weights)
    path = metrics._reference_path(digits_scoring(), "digits-cnn", "penultimate", tmp_path)
    assert metrics._reference_path(digits_scoring(weights_path=str(weights)), "digits-cnn", "penultimate", tmp_path) != path
    shutil.copy(digits_classifier.DEFAULT_WEIGHTS, tmp_path / "same.pt")
    assert metrics._reference_path(digits_scoring(weights_path=str(tmp_path / "same.pt")), "digits-cnn", "penultimate",
                                   tmp_path) == path


def test_unknown_names_and_bad_samples():
    x = digits.images_uint8("test")
    with pytest.raises(HarnessError, match="digits-train"):
        one(x, reference="no-such-reference")
    with pytest.raises(HarnessError, match="digits-cnn"):
        score(TensorImages(x), 1, Scoring("digits-train", "no-such-extractor", 8), CPU)
    with pytest.raises(HarnessError, match="to_uint8"):
        TensorImages(x.float())


def test_weights_pickle_payload_never_runs(tmp_path):
    """A weights file for a torch-fidelity extractor (which loads with weights_only=False) is verified first."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "inception.pth"
    torch.save({"conv.weight": torch.zeros(1), "evil": Payload()}, bad)
    with pytest.raises(HarnessError, match="not a plain state dict"):
        features.verified_weights("inception-v3-compat", bad)
    assert not marker.exists()
    planted = features.hub_weights_file("inception-v3-compat")  # a file planted in torch hub's cache
    planted.parent.mkdir(parents=True)
    shutil.copy(bad, planted)
    with pytest.raises(HarnessError):
        features.verified_weights("inception-v3-compat", None)
    assert not marker.exists()
    good = tmp_path / "good.pth"
    torch.save({"conv.weight": torch.ones(2)}, good)
    copy = features.verified_weights("inception-v3-compat", good)
    assert copy != str(good) and torch.equal(torch.load(copy, weights_only=True)["conv.weight"], torch.ones(2))
    with pytest.raises(HarnessError, match="not found"):
        features.verified_weights("inception-v3-compat", tmp_path / "missing.pth")


def test_registration_is_idempotent():
    from torch_fidelity.registry import DATASETS_REGISTRY, FEATURE_EXTRACTORS_REGISTRY

    module = importlib.reload(features)
    assert FEATURE_EXTRACTORS_REGISTRY["pixels"] is module.PixelFeatureExtractor
    ds = DATASETS_REGISTRY["digits-test"]("unused", False)
    assert len(ds) == 297 and ds[0].dtype == torch.uint8 and ds[0].shape == (1, 8, 8)


def test_extractor_inputs():
    x = digits.images_uint8("test")[:20]
    ex = digits_classifier.DigitsCNNFeatureExtractor("digits-cnn", ["penultimate", "logits"])
    feats, logits = ex(x)
    assert feats.shape == (20, digits_classifier.FEATURE_DIM) and feats.dtype == torch.float32 and logits.shape == (20, 10)
    (rgb,) = digits_classifier.DigitsCNNFeatureExtractor("digits-cnn", ["penultimate"])(x.repeat(1, 3, 1, 1))
    torch.testing.assert_close(rgb, feats)
    (pixels,) = features.PixelFeatureExtractor("pixels", ["pixels"])(x)
    assert pixels.shape == (20, 64) and float(pixels.max()) <= 1.0
    torch.testing.assert_close(pixels[4], x[4].flatten().float() / 255)


def test_t_interval_known_answer():
    # mean 2, sd 1 over n = 4: half-width t_{0.975, 3} * 1 / 2 = 3.182446 / 2
    low, high = t_interval([1.0, 2.0, 3.0, 2.0 + 0.0])
    sd = float(np.std([1, 2, 3, 2], ddof=1))
    assert (high - low) / 2 == pytest.approx(3.182446305 * sd / 2, rel=1e-8)
    assert math.isnan(t_interval([1.0])[0])
    s = summarize([{"fid": 1.0}, {"fid": 2.0}, {"fid": 3.0}])
    assert s["fid"] == 2.0 and s["fid_r2"] == 3.0 and s[repeat_stat("fid", "min")] == 1.0
    assert s[repeat_stat("fid", "ci95_high")] - 2.0 == pytest.approx(4.302652730 * 1.0 / math.sqrt(3), rel=1e-8)
    assert "fid_std" not in summarize([{"fid": 1.0}])


def test_fid_infinity_known_answer():
    """Two 64-d Gaussians with a Frechet distance known by hand: N(0, I) and N(0.1 * 1, diag(s)), s from 0.5 to 1.5
    (diagonal covariances commute: FD = |mu1 - mu2|^2 + sum (1 - sqrt(s))^2). At N = 250, FID's bias (positive, ~1/N)
    is twice the distance; FID-inf (Chong & Forsyth's extrapolation to 1/N -> 0) is far closer."""
    d, rng = 64, np.random.default_rng(0)
    s = np.linspace(0.5, 1.5, d)
    truth = 0.1**2 * d + float(((1 - np.sqrt(s)) ** 2).sum())
    mu2, sigma2 = np.full(d, 0.1), np.diag(s)
    fid, fid_inf = [], []
    for r in range(12):
        x = rng.standard_normal((250, d))
        fid.append(frechet_distance(mu2, sigma2, x.mean(0), np.cov(x, rowvar=False)))
        fid_inf.append(metrics.fid_infinity(x, mu2, sigma2, seed=r))
    bias, bias_inf = np.mean(fid) - truth, np.mean(fid_inf) - truth
    assert bias > 1.5 * truth  # the problem: at N = 250 in 64-d, FID is mostly bias
    assert abs(bias_inf) < 0.15 * bias and np.mean(np.abs(np.subtract(fid_inf, truth))) < 0.25 * bias
    assert metrics.fid_infinity(x, mu2, sigma2, seed=3) == metrics.fid_infinity(x, mu2, sigma2, seed=3)  # reproducible
    with pytest.raises(HarnessError, match="raise N"):
        metrics.fid_infinity(x[:2], mu2, sigma2)


def test_fid_infinity_is_scored_beside_fid():
    s = digits_scoring(fid_infinity=True)
    assert s.metrics[:2] == ["fid", "fid_inf"] and "fid_inf" not in digits_scoring().metrics
    held_out = one(digits.images_uint8("test"), fid_infinity=True)
    assert set(held_out) == {"fid", "fid_inf", "kid", "kid_subset_std", "prc_precision", "prc_recall", "fd_pixels",
                             "fd_pixels_inf"}
    # the test images are drawn as the reference was: FID (N = 297) is mostly its positive bias, FID-inf nearer 0
    assert abs(held_out["fid_inf"]) < 0.5 * held_out["fid"]


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
    from harness.core.files import file_sha256

    assert card["sha256"] == file_sha256(out) and 0.0 <= card["heldout_accuracy"] <= 1.0


@pytest.mark.slow
def test_parallel_first_calls_compute_the_reference_features_once(tmp_path):
    """Two processes scoring against a cold cache at once: one computes the reference features, the other waits."""
    code = ("import torch; from harness.metrics.suite import Scoring, score; from harness.metrics.references import TensorImages; "
            "from harness.data import digits; from harness.models import digits_classifier as d; f = d.DigitsCNNFeatureExtractor.forward; "
            "d.DigitsCNNFeatureExtractor.forward = lambda s, x: (print('images', x.shape[0], flush=True), f(s, x))[1]; "
            "score(TensorImages(digits.images_uint8('test')), 1, Scoring('digits-train', 'digits-cnn', 8), torch.device('cpu'))")
    env = dict(os.environ, DDIM_HARNESS_CACHE=str(tmp_path), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    counted = [sum(int(line.split()[1]) for line in out.splitlines() if line.startswith("images")) for out in outs]
    assert sorted(counted) == [297, 297 + 1500]  # the reference was extracted by one process only


def test_fid_infinity_is_on_for_the_digits_and_off_elsewhere():
    import dataclasses

    from clitools import cells

    from harness.metrics.suite import scoring_of

    (d,), (g,) = cells("dataset=digits"), cells("dataset=gmm_glyphs64")
    assert d.metrics["fid_infinity"] is True and scoring_of(d).fid_infinity
    assert g.metrics["fid_infinity"] is False and cells("metrics.fid_infinity=true")[0].metrics["fid_infinity"] is True
    without = dataclasses.replace(g, metrics={k: v for k, v in g.metrics.items() if k != "fid_infinity"})
    assert without.key == g.key  # false: the key of a cell run before the option existed
    assert dataclasses.replace(g, metrics={**g.metrics, "fid_infinity": True}).key != g.key
