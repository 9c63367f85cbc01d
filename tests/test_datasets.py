"""Datasets (CIFAR-10, CelebA 64, LSUN 256) on small fake folders: official preprocessing geometry, split
membership, availability messages, the torch-fidelity references and their fingerprints, Inception's weights."""

import hashlib
import io
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as F
from omegaconf import OmegaConf
from PIL import Image
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import DATASETS_REGISTRY, FEATURE_EXTRACTORS_REGISTRY

from harness.metrics import features
from harness.data import FloatImages, celeba, check_available, load_split, lsun, reference_dataset
from harness.core.errors import HarnessError
from harness.metrics.suite import Scoring, score
from harness.metrics.references import TensorImages, reference_fingerprint

CONF = Path(__file__).resolve().parents[1] / "conf"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"


@pytest.fixture(autouse=True)
def private_dirs(private_caches, tmp_path, monkeypatch):
    monkeypatch.setenv("DDIM_HARNESS_DATA", str(tmp_path / "default-data"))


@pytest.fixture
def no_fidelity_run(monkeypatch):
    """Fails the test if any feature would be extracted (or Inception would be built)."""

    def refuse(*args, **kwargs):
        raise AssertionError("features were extracted")

    monkeypatch.setattr(features, "extract", refuse)
    monkeypatch.setattr(FEATURE_EXTRACTORS_REGISTRY["inception-v3-compat"], "__init__", refuse)


def coordinate_image(width, height, scale_row=1.0, scale_col=1.0):
    """RGB image with R = row * scale_row and G = col * scale_col (B = 0)."""
    rows, cols = np.mgrid[0:height, 0:width]
    rgb = np.stack([rows * scale_row, cols * scale_col, np.zeros_like(rows)], axis=-1)
    assert rgb.max() < 256
    return Image.fromarray(np.rint(rgb).astype(np.uint8), "RGB")


def random_image(width, height, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


# ---------------------------------------------------------------- preprocessing geometry


def test_celeba_crop_geometry():
    img = coordinate_image(178, 218)  # CelebA's aligned size: 178 wide, 218 tall
    out = celeba.celeba_crop(img)
    assert out.size == (64, 64)
    # the official Crop(x1=57, x2=185, y1=25, y2=153): rows 57..184, columns 25..152; then a 2x bilinear reduction
    expected = img.crop((25, 57, 25 + 128, 57 + 128)).resize((64, 64), Image.BILINEAR)
    assert np.array_equal(np.asarray(out), np.asarray(expected))
    x = np.asarray(out).astype(float)
    assert 57 <= x[0, 0, 0] <= 59 and 25 <= x[0, 0, 1] <= 27  # the top-left pixel comes from (row 57, col 25)
    i = np.arange(1, 63)
    # inside, output pixel i averages source pixels 2i, 2i+1 of the crop: a one-pixel shift of the crop would show
    assert np.abs(x[1:63, 32, 0] - (57 + 2 * i + 0.5)).max() <= 0.51
    assert np.abs(x[32, 1:63, 1] - (25 + 2 * i + 0.5)).max() <= 0.51


@pytest.mark.parametrize("width,height", [(400, 300), (300, 400)])
def test_lsun_resize_crop_geometry(width, height):
    img = coordinate_image(width, height, 0.6, 0.6)
    out = lsun.lsun_resize_crop(img)
    assert out.size == (256, 256)
    # shorter side 300 -> 256, longer side 400 -> int(256 * 400 / 300) = 341; centre crop offset round(85 / 2) = 42
    if width > height:
        expected = img.resize((341, 256), Image.BILINEAR).crop((42, 0, 42 + 256, 256))
    else:
        expected = img.resize((256, 341), Image.BILINEAR).crop((0, 42, 256, 42 + 256))
    assert np.array_equal(np.asarray(out), np.asarray(expected))
    x = np.asarray(out).astype(float)
    long_scale = 400 / 341  # source pixels per resized pixel along the longer side
    j = np.arange(5, 251)
    src_long = (42 + j + 0.5) * long_scale - 0.5
    src_short = (j + 0.5) * 300 / 256 - 0.5
    if width > height:
        assert np.abs(x[128, 5:251, 1] - 0.6 * src_long).max() < 1.0
        assert np.abs(x[5:251, 128, 0] - 0.6 * src_short).max() < 1.0
    else:
        assert np.abs(x[5:251, 128, 0] - 0.6 * src_long).max() < 1.0
        assert np.abs(x[128, 5:251, 1] - 0.6 * src_short).max() < 1.0


def test_lsun_resize_crop_keeps_256_square():
    img = random_image(256, 256, 0)
    assert np.array_equal(np.asarray(lsun.lsun_resize_crop(img)), np.asarray(img))


# ---------------------------------------------------------------- CelebA


PARTITION = {f"{i:06d}.jpg": p for i, p in enumerate([0, 0, 0, 1, 2, 2, 0], start=1)}


def fake_celeba(root: Path, partition=PARTITION) -> Path:
    d = root / "celeba"
    (d / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(partition):
        random_image(178, 218, k).save(d / "img_align_celeba" / name, quality=95)
    (d / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in partition.items()))
    return d


def test_fake_celeba_splits_and_shapes(tmp_path):
    d = fake_celeba(tmp_path)
    cfg = {"name": "celeba", "root": str(tmp_path)}
    assert check_available(cfg, "train") is None and check_available(cfg, "test") is None
    assert celeba.split_files(cfg, "train") == ["000001.jpg", "000002.jpg", "000003.jpg", "000007.jpg"]
    assert celeba.split_files(cfg, "valid") == ["000004.jpg"]
    assert celeba.split_files(cfg, "test") == ["000005.jpg", "000006.jpg"]
    assert len(celeba.split_files(cfg, "all")) == 7

    ref = reference_dataset(cfg, "train")
    assert len(ref) == 4
    item = ref[3]
    assert item.dtype == torch.uint8 and item.shape == (3, 64, 64)
    with Image.open(d / "img_align_celeba" / "000007.jpg") as img:
        assert torch.equal(item, F.pil_to_tensor(celeba.celeba_crop(img.convert("RGB"))))

    test = load_split(cfg, "test")
    assert isinstance(test, FloatImages) and len(test) == 2 and test.shape == (2, 3, 64, 64)
    batch = test[:5]  # slices give tensors (clamped like a tensor's)
    assert batch.shape == (2, 3, 64, 64) and batch.dtype == torch.float32
    assert batch.min() >= -1 and batch.max() <= 1
    torch.testing.assert_close(batch[1], reference_dataset(cfg, "test")[1].float() / 255 * 2 - 1)
    torch.testing.assert_close(test[0], batch[0])

    # the registered torch-fidelity inputs read the same folder
    via_fidelity = DATASETS_REGISTRY["celeba64-test"](str(tmp_path), False)
    assert len(via_fidelity) == 2 and torch.equal(via_fidelity[0], reference_dataset(cfg, "test")[0])


def test_celeba_incomplete_folder(tmp_path):
    d = fake_celeba(tmp_path)
    (d / "img_align_celeba" / "000006.jpg").unlink()  # the last test image
    cfg = {"name": "celeba", "root": str(tmp_path)}
    assert check_available(cfg, "train") is None
    problem = check_available(cfg, "test")
    assert "000006.jpg" in problem and "mmlab.ie.cuhk.edu.hk" in problem
    assert "Unknown CelebA split" in check_available(cfg, "validation")


def test_celeba_reference_cache_name_tracks_preprocessing_split_and_images(tmp_path, monkeypatch):
    fake_celeba(tmp_path)

    def name(reference="celeba64-train"):
        return reference_fingerprint(reference, tmp_path)

    base = name()
    assert base.startswith("celeba64-train-")
    assert name() == base  # deterministic
    assert name("celeba64-test") != base
    original = celeba.PREPROCESS
    monkeypatch.setattr(celeba, "PREPROCESS", original.replace("resize(64", "resize(63"))
    assert name() != base
    monkeypatch.setattr(celeba, "PREPROCESS", original)
    assert name() == base
    fake_celeba(tmp_path, {**PARTITION, "000008.jpg": 0})  # one more training image
    assert name() != base


class ChannelMeans(FeatureExtractorBase):
    """A tiny stand-in extractor (2 features) to run the whole FID path on a fake dataset."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)

    def forward(self, x):
        x = x.double()
        return (torch.stack([x.mean((1, 2, 3)), x[:, 0].mean((1, 2)) - x[:, 1].mean((1, 2))], 1).float(),)

    @staticmethod
    def get_provided_features_list():
        return ("means",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "means"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 64, 64, dtype=torch.uint8)


def test_celeba_metrics_end_to_end(tmp_path, monkeypatch):
    fake_celeba(tmp_path)
    monkeypatch.setitem(FEATURE_EXTRACTORS_REGISTRY, "test-means", ChannelMeans)
    monkeypatch.setattr(features, "OURS", features.OURS + ("test-means",))
    cfg = {"name": "celeba", "root": str(tmp_path)}
    ref = reference_dataset(cfg, "train")
    samples = torch.stack([ref[i] for i in range(len(ref))])
    scoring = Scoring("celeba64-train", "test-means", 64, kid_subset_size=4, prc_neighborhood=1, datasets_root=str(tmp_path))
    (out,) = score(TensorImages(samples), 1, scoring, torch.device("cpu"))
    assert abs(out["fid"]) < 1e-3 and "fd_pixels" not in out
    assert list((tmp_path / "cache" / "references").glob("celeba64-train-*-test-means-means.npz"))
    (again,) = score(TensorImages(samples[[0, 1, 0, 1]]), 1, scoring, torch.device("cpu"))
    assert again["fid"] > 0


# ---------------------------------------------------------------- LSUN


def write_lmdb(path: Path, images: list[Image.Image]) -> tuple[list[bytes], list[bytes]]:
    """An lmdb folder like fyu/lsun's: hex-hash keys, encoded images (webp and jpeg). Returns sorted keys, values."""
    import lmdb

    items = {}
    for k, img in enumerate(images):
        buf = io.BytesIO()
        img.save(buf, format="WEBP" if k % 2 == 0 else "JPEG", quality=90)
        items[hashlib.sha1(str(k).encode()).hexdigest().encode()] = buf.getvalue()
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for key, value in items.items():
            txn.put(key, value)
    env.close()
    keys = sorted(items)
    return keys, [items[k] for k in keys]


def lmdb_installed() -> bool:
    try:
        import lmdb  # noqa: F401
    except ImportError:
        return False
    return True


def test_lsun_fake_lmdb(tmp_path, monkeypatch):
    cfg = {"name": "lsun_church", "root": str(tmp_path)}
    if not lmdb_installed():  # no lmdb here: the error must say how to get it (not a silent skip)
        (tmp_path / "church_outdoor_train_lmdb").mkdir()
        (tmp_path / "church_outdoor_train_lmdb" / "data.mdb").write_bytes(b"")
        with pytest.raises(HarnessError, match="pip install lmdb"):
            load_split(cfg, "train")
        return
    sizes = [(400, 300), (300, 400), (256, 256), (512, 260), (300, 300)]
    originals = [random_image(w, h, k) for k, (w, h) in enumerate(sizes)]
    keys, encoded = write_lmdb(tmp_path / "church_outdoor_train_lmdb", originals)
    write_lmdb(tmp_path / "church_outdoor_val_lmdb", originals[:2])
    assert check_available(cfg, "train") is None and check_available(cfg, "val") is None

    ref = reference_dataset(cfg, "train")
    assert len(ref) == 5 and ref.keys == keys  # key order, like the official LSUNClass
    for i in range(5):
        item = ref[i]
        assert item.dtype == torch.uint8 and item.shape == (3, 256, 256)
    with Image.open(io.BytesIO(encoded[keys.index(ref.keys[3])])) as img:
        expected = F.pil_to_tensor(lsun.lsun_resize_crop(img.convert("RGB")))
    assert torch.equal(ref[3], expected)

    val = load_split(cfg, "val")
    assert isinstance(val, FloatImages) and val.shape == (2, 3, 256, 256)
    assert val[:].min() >= -1 and val[:].max() <= 1

    assert len(DATASETS_REGISTRY["lsun_church-train"](str(tmp_path), False)) == 5
    base = reference_fingerprint("lsun_church-train", tmp_path)
    assert base.startswith("lsun_church-train-")
    monkeypatch.setattr(lsun, "FID_REFERENCE_IMAGES", 3)  # the reference's image count is part of its name
    assert len(reference_dataset(cfg, "train")) == 3
    assert reference_fingerprint("lsun_church-train", tmp_path) != base


def test_lsun_without_lmdb_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lmdb", None)  # as if not installed
    (tmp_path / "bedroom_train_lmdb").mkdir()
    (tmp_path / "bedroom_train_lmdb" / "data.mdb").write_bytes(b"")
    cfg = {"name": "lsun_bedroom", "root": str(tmp_path)}
    assert "pip install lmdb" in check_available(cfg, "train")
    with pytest.raises(HarnessError, match="pip install lmdb"):
        load_split(cfg, "train")
    with pytest.raises(HarnessError, match="pip install lmdb"):
        reference_fingerprint("lsun_bedroom-train", tmp_path)


# ---------------------------------------------------------------- CIFAR-10


def fake_cifar10(root: Path, per_batch=2, n_test=3) -> tuple[np.ndarray, np.ndarray]:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = []
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        train.append(data)
        entry = {"batch_label": f"training batch {i} of 5", "labels": [i] * per_batch, "data": data,
                 "filenames": [f"t{i}_{k}.png" for k in range(per_batch)]}
        (d / f"data_batch_{i}").write_bytes(pickle.dumps(entry))
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    entry = {"batch_label": "testing batch 1 of 1", "labels": [0] * n_test, "data": test,
             "filenames": [f"s{k}.png" for k in range(n_test)]}
    (d / "test_batch").write_bytes(pickle.dumps(entry))
    meta = {"num_cases_per_batch": per_batch, "label_names": ["airplane", "automobile", "bird", "cat", "deer",
                                                               "dog", "frog", "horse", "ship", "truck"], "num_vis": 3072}
    (d / "batches.meta").write_bytes(pickle.dumps(meta))
    return np.concatenate(train), test


def test_fake_cifar10_recon_path(tmp_path, monkeypatch):
    _, test = fake_cifar10(tmp_path)
    monkeypatch.setenv("DDIM_HARNESS_DATA", str(tmp_path))  # the config's default root
    cfg = OmegaConf.load(CONF / "dataset" / "cifar10.yaml")
    assert cfg.root == str(tmp_path) and cfg.trajectory == "quad" and cfg.test_split == "test"
    assert check_available(cfg, cfg.test_split) is None
    x = load_split(cfg, cfg.test_split)[:1000]  # as the recon job takes it
    assert x.dtype == torch.float32 and x.shape == (3, 3, 32, 32)
    assert x.min() >= -1 and x.max() <= 1
    expected = torch.from_numpy(test.reshape(3, 3, 32, 32)).float() / 255 * 2 - 1  # rows: R plane, G plane, B plane
    torch.testing.assert_close(x, expected)
    assert load_split(cfg, "train").shape == (10, 3, 32, 32)


def test_fake_cifar10_matches_torchvision_and_fidelity_input(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    train, _ = fake_cifar10(tmp_path)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # the fake files have other md5s
    cfg = {"name": "cifar10", "root": str(tmp_path)}
    ours = reference_dataset(cfg, "train")
    tv = tv_cifar.CIFAR10(str(tmp_path), train=True, download=False)
    assert len(tv) == len(ours) == 10
    for i in range(10):
        assert torch.equal(F.pil_to_tensor(tv[i][0]), ours[i])
    fidelity = DATASETS_REGISTRY["cifar10-train"](str(tmp_path), False)  # the FID reference reads the same folder
    assert torch.equal(fidelity[7], ours[7])


# ---------------------------------------------------------------- missing data


MISSING = {
    "cifar10": ("cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "celeba": ("celeba/list_eval_partition.txt", "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"),
    "lsun_bedroom": ("bedroom_train_lmdb", "https://github.com/fyu/lsun"),
    "lsun_church": ("church_outdoor_train_lmdb", "https://github.com/fyu/lsun"),
}


@pytest.mark.parametrize("name", sorted(MISSING))
def test_missing_data_names_path_and_source(name, tmp_path):
    root = tmp_path / "nowhere"
    cfg = OmegaConf.load(CONF / "dataset" / f"{name}.yaml")
    cfg.root = str(root)
    path, hint = MISSING[name]
    problem = check_available(cfg, cfg.train_split)
    assert str(root / path) in problem and hint in problem
    with pytest.raises(HarnessError) as err:
        load_split(cfg, cfg.train_split)
    assert str(root / path) in str(err.value) and hint in str(err.value)


@pytest.mark.parametrize("name", sorted(MISSING))
def test_missing_reference_fails_before_feature_extraction(name, tmp_path, no_fidelity_run):
    cfg = OmegaConf.load(CONF / "dataset" / f"{name}.yaml")
    path, hint = MISSING[name]
    size = int(cfg.image_size)
    scoring = Scoring(cfg.fid_reference, "inception-v3-compat", size, datasets_root=str(tmp_path / "nowhere"),
                      datasets_download=False)
    with pytest.raises(HarnessError) as err:
        score(TensorImages(torch.zeros(4, 3, size, size, dtype=torch.uint8)), 1, scoring, torch.device("cpu"))
    assert str(tmp_path / "nowhere" / path) in str(err.value) and hint in str(err.value)


def test_digits_dispatch_unchanged():
    cfg = OmegaConf.load(CONF / "dataset" / "digits.yaml")
    assert check_available(cfg, "train") is None and check_available(cfg, "test") is None
    assert load_split(cfg, "test").shape == (297, 1, 8, 8)
    with pytest.raises(HarnessError, match="known: digits, cifar10"):
        load_split({"name": "imagenet"}, "train")


def test_dataset_configs():
    for name, trajectory in [("cifar10", "quad"), ("celeba", "uniform"), ("lsun_bedroom", "uniform"), ("lsun_church", "uniform")]:
        cfg = OmegaConf.load(CONF / "dataset" / f"{name}.yaml")
        assert cfg.name == name and cfg.trajectory == trajectory and cfg.channels == 3
        # the paper's datasets add their data folder, the GPU they expect, their blocks and today's metrics
        paper_only = {"root", "expects_gpu", "blocks", "fd_dinov2", "cmmd"}
        assert set(OmegaConf.load(CONF / "dataset" / "digits.yaml")) | paper_only == set(cfg)
        assert cfg.feature_extractor == "inception-v3-compat" and cfg.headline_metric == "fid"
        assert cfg.fid_reference in DATASETS_REGISTRY
        model = OmegaConf.load(CONF / "model" / f"{name}.yaml")
        assert model.architecture.resolution == cfg.image_size


# ---------------------------------------------------------------- Inception weights


def cifar_scoring(tmp_path, **kw):
    return Scoring("cifar10-train", "inception-v3-compat", 32, kid_subset_size=4, prc_neighborhood=1,
                   datasets_root=str(tmp_path / "data"), datasets_download=False, **kw)


def test_inception_missing_weights_file(tmp_path, no_fidelity_run):
    fake_cifar10(tmp_path / "data")
    with pytest.raises(HarnessError) as err:
        score(TensorImages(torch.zeros(4, 3, 32, 32, dtype=torch.uint8)), 1,
              cifar_scoring(tmp_path, weights_path=str(tmp_path / "no-such-weights.pth")), torch.device("cpu"))
    assert str(tmp_path / "no-such-weights.pth") in str(err.value) and INCEPTION_URL in str(err.value)


def test_inception_gets_a_verified_copy_of_the_weights(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    fake_cifar10(tmp_path / "data")
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # the fake files have other md5s
    weights = tmp_path / "inception.pth"
    torch.save({"w": torch.ones(3)}, weights)
    seen = []

    class FakeInception(ChannelMeans):
        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)
            seen.append(kwargs)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "means"

    monkeypatch.setitem(FEATURE_EXTRACTORS_REGISTRY, "inception-v3-compat", FakeInception)
    (out,) = score(TensorImages(torch.zeros(4, 3, 32, 32, dtype=torch.uint8)), 1,
                   cifar_scoring(tmp_path, weights_path=str(weights)), torch.device("cpu"))
    assert out["fid"] > 0 and seen
    path = seen[0]["feature_extractor_weights_path"]
    assert path != str(weights) and torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))


def test_offline_inception_download_is_a_harness_error(tmp_path, monkeypatch):
    monkeypatch.setitem(features.WEIGHTS_URLS, "inception-v3-compat", "http://127.0.0.1:9/weights-inception-6726825d.pth")
    with pytest.raises(HarnessError, match="metrics.weights_path") as err:
        features.verified_weights("inception-v3-compat", None)
    assert "127.0.0.1:9" in str(err.value)
