"""LSUN bedroom and church_outdoor at 256x256, as the official DDIM code reads them.

Files: fyu/lsun's lmdb folders ``{root}/{category}_{split}_lmdb/`` (``data.mdb``), e.g. ``bedroom_train_lmdb`` and
``church_outdoor_train_lmdb``, made by https://github.com/fyu/lsun (``python download.py -c bedroom`` then unzip
``bedroom_train_lmdb.zip`` and ``bedroom_val_lmdb.zip``). Each value is an encoded image (webp or jpeg) read with
PIL, in key order (the official ``LSUNClass``); the transform is ``Resize(256)`` (shorter side to 256, bilinear,
antialiased) then ``CenterCrop(256)`` (plus a random horizontal flip for training only, not applied here).

Reading lmdb needs the optional ``lmdb`` package (``pip install lmdb``, or the ``lsun`` extra of this project).
The FID references ``lsun_bedroom-train`` and ``lsun_church-train`` hold the first ``FID_REFERENCE_IMAGES`` images
of the training lmdb in key order (keys are image hashes, so effectively a fixed random subset): statistics of
the 3 million bedrooms would take hours, and 50,000 is the customary reference size.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from itertools import islice
from pathlib import Path

import torchvision.transforms.functional as F
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from harness.core.errors import HarnessError
from harness.data import FloatImages, data_root

URL = "https://github.com/fyu/lsun"
CATEGORIES = {"lsun_bedroom": "bedroom", "lsun_church": "church_outdoor"}
SPLITS = ("train", "val")
IMAGE_SIZE = 256
IMAGE_SHAPE = (3, IMAGE_SIZE, IMAGE_SIZE)
FID_REFERENCE_IMAGES = 50_000
# Names the preprocessing in the FID reference's cache name: change it whenever lsun_resize_crop changes.
PREPROCESS = f"resize({IMAGE_SIZE},bilinear,antialias)>center_crop({IMAGE_SIZE})>rgb-uint8"
LMDB_HINT = "reading LSUN needs the lmdb package: pip install lmdb (or pip install 'ddim-harness[lsun]')"


def lsun_resize_crop(img: Image.Image) -> Image.Image:
    """The official LSUN preprocessing: shorter side to 256 (``Resize(256)``), then the central 256x256."""
    img = F.resize(img, IMAGE_SIZE, interpolation=InterpolationMode.BILINEAR, antialias=True)
    return F.center_crop(img, [IMAGE_SIZE, IMAGE_SIZE])


def category(dataset_cfg: Mapping) -> str:
    name = dataset_cfg["name"]
    if name not in CATEGORIES:
        raise HarnessError(f"No LSUN category for dataset {name!r} (known: {', '.join(CATEGORIES)}).")
    return CATEGORIES[name]


def lmdb_path(dataset_cfg: Mapping, split: str) -> Path:
    return data_root(dataset_cfg) / f"{category(dataset_cfg)}_{split}_lmdb"


def import_lmdb():
    try:
        import lmdb  # lazy: optional dependency (pip install '.[lsun]')
    except ImportError:
        raise HarnessError(f"LSUN: {LMDB_HINT}.") from None
    return lmdb


def _lmdb_importable() -> bool:
    try:
        import_lmdb()
    except HarnessError:
        return False
    return True


def check_available(dataset_cfg: Mapping, split: str) -> str | None:
    """None when ``{root}/{category}_{split}_lmdb/data.mdb`` is there and the lmdb package is installed."""
    if split not in SPLITS:
        return f"Unknown LSUN split {split!r}: choose one of {SPLITS}."
    path = lmdb_path(dataset_cfg, split)
    problems = []
    if not (path / "data.mdb").is_file():
        cat = category(dataset_cfg)
        problems.append(
            f"LSUN {cat} {split} not found: expected the lmdb folder {path}/ (with data.mdb). Get it from {URL}: "
            f"python download.py -o {path.parent} -c {cat}, then unzip {path.name}.zip in {path.parent}; or point "
            f"dataset.root (default $DDIM_HARNESS_DATA, else ./data) at the folder that holds {path.name}/."
        )
    if not _lmdb_importable():
        problems.append(f"LSUN: {LMDB_HINT}.")
    return " ".join(problems) or None


_ENVS: dict = {}


def _env(path: Path):
    """One shared read-only environment per folder and process: lmdb refuses to open one twice in a process."""
    key = (str(path.resolve()), os.getpid())
    if key not in _ENVS:
        # the official LSUNClass's settings: read-only, no lock file (the data folder may be read-only), no readahead
        _ENVS[key] = import_lmdb().open(str(path), max_readers=1, readonly=True, lock=False, readahead=False, meminit=False)
    return _ENVS[key]


class LSUNImages(Dataset):
    """uint8 [3, 256, 256] images of an lmdb folder after ``lsun_resize_crop``, in key order (first ``limit``).

    Read it in one process (torch-fidelity does: no DataLoader workers): lmdb environments do not survive a fork.
    """

    def __init__(self, path: str | Path, limit: int | None = None):
        self.path = Path(path)
        env = _env(self.path)
        self.entries = int(env.stat()["entries"])
        with env.begin(write=False) as txn:
            self.keys = list(islice(txn.cursor().iternext(keys=True, values=False), limit))

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i):
        with _env(self.path).begin(write=False) as txn:
            buf = txn.get(self.keys[i])
        if buf is None:
            raise HarnessError(f"{self.path}: key {self.keys[i]!r} vanished; the lmdb changed while being read.")
        with Image.open(io.BytesIO(buf)) as img:
            return F.pil_to_tensor(lsun_resize_crop(img.convert("RGB")))


def images(dataset_cfg: Mapping, split: str):
    """The split as float32 on [-1, 1], read lazily (``FloatImages``: a slice gives a tensor [n, 3, 256, 256])."""
    return FloatImages(LSUNImages(lmdb_path(dataset_cfg, split)), IMAGE_SHAPE)


def reference_dataset(dataset_cfg: Mapping, split: str) -> Dataset:
    return LSUNImages(lmdb_path(dataset_cfg, split), limit=FID_REFERENCE_IMAGES)


def reference_fingerprint(dataset_cfg: Mapping, split: str) -> dict:
    ds = reference_dataset(dataset_cfg, split)  # lists the keys only (50,000 keys: well under a second)
    return {
        "dataset": f"lsun-{category(dataset_cfg)}",
        "split": split,
        "preprocess": PREPROCESS,
        "limit": FID_REFERENCE_IMAGES,
        "n_images": len(ds),
        "entries": ds.entries,
        "keys_sha256": hashlib.sha256(b"\n".join(ds.keys)).hexdigest(),
    }
