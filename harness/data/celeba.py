"""CelebA 64x64 as the official DDIM code preprocesses it: the aligned 178x218 images, a 128x128 crop around
(cx, cy) = (89, 121), resized to 64x64 (torchvision ``Resize(64)``: bilinear, antialiased on PIL images).

The official transform is ``Crop(x1=cy - 64, x2=cy + 64, y1=cx - 64, y2=cx + 64)`` (``F.crop(img, x1, y1, x2 - x1,
y2 - y1)``: top 57, left 25, height and width 128), ``Resize(64)`` and ``ToTensor`` (plus a random horizontal flip
for training only, not applied here). FID reference statistics must come from this same preprocessing.

Files (torchvision's ``CelebA`` layout): ``{root}/celeba/img_align_celeba/000001.jpg ... 202599.jpg`` (from
``img_align_celeba.zip``) and ``{root}/celeba/list_eval_partition.txt`` (lines ``000001.jpg 0``: 0 train, 1 valid,
2 test), both from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive). The attribute, identity and
landmark files torchvision also insists on are not needed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torchvision.transforms.functional as F
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from harness.core.errors import HarnessError
from harness.data import FloatImages, data_root

URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
BASE_FOLDER = "celeba"
IMAGE_FOLDER = "img_align_celeba"
PARTITION_FILE = "list_eval_partition.txt"
SPLITS = {"train": 0, "valid": 1, "test": 2, "all": None}

CX, CY = 89, 121
CROP_TOP, CROP_LEFT, CROP_SIZE = CY - 64, CX - 64, 128
IMAGE_SIZE = 64
IMAGE_SHAPE = (3, IMAGE_SIZE, IMAGE_SIZE)
# Names the preprocessing in the FID reference's cache name: change it whenever celeba_crop changes.
PREPROCESS = (
    f"crop(top={CROP_TOP},left={CROP_LEFT},height={CROP_SIZE},width={CROP_SIZE})"
    f">resize({IMAGE_SIZE},bilinear,antialias)>rgb-uint8"
)


def celeba_crop(img: Image.Image) -> Image.Image:
    """The official CelebA preprocessing of a 178x218 aligned image: the 128x128 crop at (57, 25), then 64x64."""
    img = F.crop(img, CROP_TOP, CROP_LEFT, CROP_SIZE, CROP_SIZE)
    return F.resize(img, IMAGE_SIZE, interpolation=InterpolationMode.BILINEAR, antialias=True)


def folder(dataset_cfg: Mapping) -> Path:
    return data_root(dataset_cfg) / BASE_FOLDER


def split_files(dataset_cfg: Mapping, split: str) -> list[str]:
    """The image file names of a split, in ``list_eval_partition.txt`` order."""
    if split not in SPLITS:
        raise HarnessError(f"Unknown CelebA split {split!r}: choose one of {tuple(SPLITS)}.")
    path = folder(dataset_cfg) / PARTITION_FILE
    want = SPLITS[split]
    files = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[1].isdigit():
                raise HarnessError(f"{path} line {n}: expected '<image>.jpg <0|1|2>', got {line.strip()!r}; re-download it from {URL}.")
            if want is None or int(fields[1]) == want:
                files.append(fields[0])
    return files


def _missing_message(d: Path, what: str) -> str:
    return (
        f"CelebA not found: {what}. Expected {d / PARTITION_FILE} and the aligned images {d / IMAGE_FOLDER}/000001.jpg ... "
        f"202599.jpg. Download img_align_celeba.zip and Eval/{PARTITION_FILE} from {URL} (Google Drive links there), "
        f"unzip the images into {d}/, or point dataset.root (default $DDIM_HARNESS_DATA, else ./data) at the folder "
        f"that holds {BASE_FOLDER}/."
    )


def check_available(dataset_cfg: Mapping, split: str) -> str | None:
    """None when the partition file, the image folder and the split's first and last images are there."""
    if split not in SPLITS:
        return f"Unknown CelebA split {split!r}: choose one of {tuple(SPLITS)}."
    d = folder(dataset_cfg)
    if not (d / PARTITION_FILE).is_file():
        return _missing_message(d, f"{d / PARTITION_FILE} is missing")
    if not (d / IMAGE_FOLDER).is_dir():
        return _missing_message(d, f"{d / IMAGE_FOLDER}/ is missing")
    try:
        files = split_files(dataset_cfg, split)
    except HarnessError as exc:
        return str(exc)
    if not files:
        return _missing_message(d, f"{d / PARTITION_FILE} lists no {split} images")
    for name in {files[0], files[-1]}:
        if not (d / IMAGE_FOLDER / name).is_file():
            return _missing_message(d, f"{d / IMAGE_FOLDER / name} (a {split} image) is missing")
    return None


class CelebA64(Dataset):
    """uint8 [3, 64, 64] images of a CelebA split after ``celeba_crop``."""

    def __init__(self, dataset_cfg: Mapping, split: str):
        self.image_dir = folder(dataset_cfg) / IMAGE_FOLDER
        self.files = split_files(dataset_cfg, split)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        with Image.open(self.image_dir / self.files[i]) as img:
            return F.pil_to_tensor(celeba_crop(img.convert("RGB")))


def images(dataset_cfg: Mapping, split: str):
    """The split as float32 on [-1, 1], read lazily (``FloatImages``: a slice gives a tensor [n, 3, 64, 64])."""
    return FloatImages(CelebA64(dataset_cfg, split), IMAGE_SHAPE)


def reference_dataset(dataset_cfg: Mapping, split: str) -> Dataset:
    return CelebA64(dataset_cfg, split)


def reference_fingerprint(dataset_cfg: Mapping, split: str) -> dict:
    files = split_files(dataset_cfg, split)
    return {
        "dataset": "celeba",
        "split": split,
        "preprocess": PREPROCESS,
        "n_images": len(files),
        "files_sha256": hashlib.sha256("\n".join(files).encode()).hexdigest(),
    }
