"""A cell's sampled images on disk: shards ``<first>-<last>.pt`` (images, their indices and a sha256 of both, written
atomically per batch, checked on every load: a bad shard is deleted with a warning and resampled), streamed in index
order one shard at a time (``ShardImages``)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from harness.core.files import NotTensors, load_tensors, save_atomic


def _checksum(indices: torch.Tensor, images: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(str((tuple(images.shape), str(images.dtype))).encode())
    h.update(indices.to(torch.int64).contiguous().numpy())  # the bytes in place: no copy of a 50 MB shard
    h.update(images.contiguous().numpy())
    return h.hexdigest()


class ShardStore:
    def __init__(self, folder: Path, shape: Sequence[int], dtype: torch.dtype = torch.uint8):
        self.folder, self.shape, self.dtype = Path(folder), tuple(shape), dtype
        self._where: dict[int, Path] | None = None

    def clear(self) -> None:
        """Forget every shard (``force=true``: resample)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self._where = None

    def _load(self, path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
        try:
            shard = load_tensors(path)
            idx, imgs, digest = shard["indices"], shard["images"], shard["sha256"]
            ok = tuple(imgs.shape[1:]) == self.shape and imgs.dtype == self.dtype and len(idx) == len(imgs)
            if ok and _checksum(idx, imgs) == digest:
                return idx, imgs
            reason = "its checksum does not match its contents" if ok else f"images of shape {tuple(imgs.shape[1:])}"
        except Exception as err:  # noqa: BLE001 - unreadable, truncated, old format: resampled, never trusted
            reason = str(err) if isinstance(err, NotTensors) else f"unreadable ({type(err).__name__})"
        print(f"warning: sample shard {path.name} is damaged ({reason}): its images are sampled again")
        path.unlink(missing_ok=True)
        return None

    def index(self) -> dict[int, Path]:
        """{image index: shard file} over the valid shards (verified once per store object)."""
        if self._where is None:
            self._where = {}
            for path in sorted(self.folder.glob("*.pt")):
                self._where.update({i: path for i in self._indices(path)})
        return self._where

    def _indices(self, path: Path) -> list[int]:
        """The indices of a valid shard ([] if it is not): its images are freed on return, one shard at a time."""
        loaded = self._load(path)
        return [] if loaded is None else loaded[0].tolist()

    def missing(self, indices: range) -> "Missing":
        """The indices of ``indices`` that no valid shard holds, in order: held as the gaps between the stored ones,
        so memory grows with the images on disk, not with N (a cell of N=1e9 lists nothing before it samples)."""
        return Missing(indices, self.index())

    def write(self, indices: Sequence[int], images: torch.Tensor) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        idx = torch.tensor(list(indices), dtype=torch.int64)
        path = self.folder / f"{idx[0]:07d}-{idx[-1]:07d}.pt"
        save_atomic({"indices": idx, "images": images, "sha256": _checksum(idx, images)}, path)
        if self._where is not None:
            self._where.update({int(i): path for i in idx})
        return path

    def images(self, n: int) -> "ShardImages":
        return ShardImages(self, n)


class Missing(Sequence):
    """The indices of a range that a set of stored indices lacks, as a sequence: runs of consecutive indices
    (``range`` objects) between the stored ones, so its size is that of the stored set, whatever the range's."""

    def __init__(self, indices: range, have):
        self.runs: list[range] = []
        start = indices.start
        for i in sorted(i for i in have if i in indices):  # range membership: O(1)
            if i > start:
                self.runs.append(range(start, i))
            start = i + 1
        if start < indices.stop:
            self.runs.append(range(start, indices.stop))
        self._len = sum(len(r) for r in self.runs)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, key):
        if isinstance(key, slice):
            return [self[i] for i in range(*key.indices(self._len))]
        i = key + self._len if key < 0 else key
        if not 0 <= i < self._len:
            raise IndexError(key)
        for r in self.runs:
            if i < len(r):
                return r[i]
            i -= len(r)
        raise IndexError(key)

    def __iter__(self):
        for r in self.runs:
            yield from r


class ShardImages(Dataset):
    """Images 0..n-1 of a store as a Dataset of [C, H, W] tensors, read shard by shard (one in memory)."""

    def __init__(self, store: ShardStore, n: int):
        where = store.index()
        missing = Missing(range(n), where)
        if missing:
            raise ValueError(f"{len(missing)} of {n} images have no shard (first: {missing[:5]})")
        self.store, self.n, self.where = store, n, where
        self._path: Path | None = None
        self._rows: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        """Image i, a copy: a view would keep its whole shard alive in the batch that holds it."""
        if i < 0 or i >= self.n:
            raise IndexError(i)
        path = self.where[i]
        if path != self._path:
            self._path, self._rows = None, {}  # the previous shard goes before the next is read
            loaded = self.store._load(path)
            if loaded is None:
                raise RuntimeError(f"sample shard {path} changed while it was being read")
            self._path, self._rows = path, {int(k): img for k, img in zip(*loaded)}
        return self._rows[i].clone()

    def head(self, k: int) -> torch.Tensor:
        """The first k images as one tensor (for the sample grid), filled in place."""
        out = torch.empty((min(k, self.n), *self.store.shape), dtype=self.store.dtype)
        for i in range(len(out)):
            out[i] = self[i]
        return out

    def all(self) -> torch.Tensor:
        """Every image in one tensor: for small cells only (exact-score data: 1x8x8); scoring streams instead."""
        return self.head(self.n)


def images_store(cell) -> ShardStore:
    """The cell's sample shards (float32 samples for exact-score data, uint8 images otherwise)."""
    return ShardStore(cell.images_dir, cell.image_shape, torch.float32 if cell.is_exact else torch.uint8)
