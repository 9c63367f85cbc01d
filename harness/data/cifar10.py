"""CIFAR-10 (Krizhevsky, 2009): 50,000 train and 10,000 test 32x32 RGB images, as the official code reads them.

The official code uses torchvision's ``CIFAR10`` with ``ToTensor`` and ``2x - 1`` (plus a random horizontal flip
for training only, not applied here). This module reads the same pickled batches torchvision reads (with an unpickler
that builds dicts, lists and numpy arrays only, never other objects),
``{root}/cifar-10-batches-py/{data_batch_1..5,test_batch}``, from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz.
The FID references ``cifar10-train`` / ``cifar10-val`` are these images too (harness.metrics.references replaces
torch-fidelity's torchvision-based inputs of those names, which on any copy but the original files fail torchvision's
md5 check and then try to download). Reconstruction (Table 2) uses the test split.

``cifar10.md5`` holds the published md5 of the archive and of every file in it (torchvision's ``CIFAR10``
records them): ``published_problem`` refuses a folder that differs, ``download_folder`` fetches a missing one.
"""

from __future__ import annotations

import pickle
import tarfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from harness.core.errors import HarnessError
from harness.core.files import download, file_digest
from harness.data import data_root, to_float

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
BASE_FOLDER = "cifar-10-batches-py"
FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
META_FILE = "batches.meta"
SPLITS = tuple(FILES)
ARCHIVE = "cifar-10-python.tar.gz"
CHECKSUMS = Path(__file__).with_name("cifar10.md5")  # "<md5>  <file name>" lines, as md5sum writes them
IMAGE_SHAPE = (3, 32, 32)


def published_md5() -> dict[str, str]:
    """{file name: its published md5}: the archive and every file of ``cifar-10-batches-py``."""
    pairs = (line.split() for line in CHECKSUMS.read_text().splitlines() if line.strip())
    return {name: md5 for md5, name in pairs}


def download_url(dataset_cfg: Mapping) -> str:
    """Where the archive comes from: ``URL``, or a mirror given as ``+dataset.download_url=<url>`` (http, https or
    file; its md5 must still be the published one)."""
    return str(dataset_cfg.get("download_url") or URL)


def folder(dataset_cfg: Mapping) -> Path:
    return data_root(dataset_cfg) / BASE_FOLDER


def check_available(dataset_cfg: Mapping, split: str) -> str | None:
    """None when the whole ``cifar-10-batches-py`` folder is there (torchvision wants both splits and the meta file)."""
    if split not in SPLITS:
        return f"Unknown CIFAR-10 split {split!r}: choose one of {SPLITS}."
    d = folder(dataset_cfg)
    missing = [f for f in (*FILES["train"], *FILES["test"], META_FILE) if not (d / f).is_file()]
    if not missing:
        return None
    root = d.parent
    return (
        f"CIFAR-10 not found: expected {d}/ holding {', '.join(missing)}. Download {URL} and extract it into {root} "
        f"(or run python -c \"import torchvision; torchvision.datasets.CIFAR10('{root}', download=True)\"), "
        f"or point dataset.root (default $DDIM_HARNESS_DATA, else ./data) at the folder that holds {BASE_FOLDER}/."
    )


def published_problem(dataset_cfg: Mapping) -> str | None:
    """None when every file of the folder has its published md5, else one line naming the first file that differs
    and the fix (a damaged, truncated or re-packed copy gives other FID reference statistics than the paper's)."""
    d, want = folder(dataset_cfg), published_md5()
    for name in (*FILES["train"], *FILES["test"], META_FILE):
        got = file_digest(d / name, "md5")
        if got != want[name]:
            return (f"CIFAR-10 folder {d} differs from the published files: {name} has md5 {got}, the published file "
                    f"{want[name]} ({(d / name).stat().st_size} bytes here; a damaged, truncated or re-packed copy). "
                    f"Delete {d} and rerun to download {download_url(dataset_cfg)} again, or extract the original "
                    f"archive (md5 {want[ARCHIVE]}) into {d.parent}.")
    return None


def download_folder(dataset_cfg: Mapping) -> Path:
    """Download the archive (its published md5 checked), extract ``cifar-10-batches-py/`` into the root and delete
    the archive. Any failure is one HarnessError; nothing partial is left in the folder's place."""
    root, url = data_root(dataset_cfg), download_url(dataset_cfg)
    archive = root / ARCHIVE
    fix = f"retry, or download {url} yourself and extract it into {root} (offline: copy cifar-10-batches-py/ there)"
    print(f"CIFAR-10 not found in {root}: downloading {url}", flush=True)
    try:
        download(url, archive, md5=published_md5()[ARCHIVE], fix=fix)
        extract_archive(archive, root)
    finally:
        archive.unlink(missing_ok=True)
    return root / BASE_FOLDER


def extract_archive(archive: Path, root: Path) -> None:
    """The ``cifar-10-batches-py/`` files of ``archive`` into ``root`` (regular files only, no paths outside it)."""
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(BASE_FOLDER + "/")]
            if not members:
                raise tarfile.TarError(f"no {BASE_FOLDER}/ in the archive")
            tar.extractall(root, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise HarnessError(f"cannot extract {archive} ({type(err).__name__}: {err}); delete {root / BASE_FOLDER} and "
                           f"rerun, or extract the archive into {root} yourself.") from None


class _BatchUnpickler(pickle.Unpickler):
    """Reads a CIFAR-10 batch (a dict of lists, bytes and one numpy array) and nothing else: any other global a pickle
    names (``os.system``, ...) is refused before it is looked up, so a planted file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # protocol 2 spells bytes with encode

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR-10 batch")
        return super().find_class(module, name)


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            entry = _BatchUnpickler(f, encoding="latin1").load()
        if not isinstance(entry, dict) or "data" not in entry:
            raise ValueError("no 'data' entry")
        return entry
    except Exception as err:  # noqa: BLE001 - refused or damaged: one message, the file is never trusted
        raise HarnessError(f"{path} is not a CIFAR-10 python batch ({type(err).__name__}: {str(err)[:200]}); refused. "
                           f"Re-extract {URL}.") from None


def read_uint8(dataset_cfg: Mapping, split: str) -> torch.Tensor:
    """uint8 [N, 3, 32, 32] of a split, in file order (torchvision's order)."""
    d = folder(dataset_cfg)
    arrays = []
    for name in FILES[split]:
        entry = _read_batch(d / name)
        arrays.append(np.asarray(entry["data"], dtype=np.uint8))
    data = np.concatenate(arrays)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise HarnessError(f"{d}: CIFAR-10 batches hold {data.shape} arrays, expected [N, 3072]; re-extract {URL}.")
    return torch.from_numpy(data.reshape(-1, *IMAGE_SHAPE).copy())


class CIFAR10Images(Dataset):
    """uint8 [3, 32, 32] images of a split (the official preprocessing is none beyond ToTensor)."""

    def __init__(self, dataset_cfg: Mapping, split: str):
        self.images = read_uint8(dataset_cfg, split)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        return self.images[i]


def images(dataset_cfg: Mapping, split: str) -> torch.Tensor:
    """float32 [N, 3, 32, 32] on [-1, 1] (10,000 test images: 120 MB)."""
    return to_float(read_uint8(dataset_cfg, split))


def reference_dataset(dataset_cfg: Mapping, split: str) -> Dataset:
    return CIFAR10Images(dataset_cfg, split)


def reference_fingerprint(dataset_cfg: Mapping, split: str) -> dict:
    d = folder(dataset_cfg)
    return {"dataset": "cifar10", "split": split, "preprocess": "none",
            "files_md5": {f: file_digest(d / f, "md5") for f in FILES[split]}}
