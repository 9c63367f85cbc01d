"""Disk space: what a sample cell will write (its shards, Hydra's job folder, the store's growth; sizes measured below),
checked against each disk's free space before it samples, and a disk that fills while it runs said in one line naming
the folder; the shards written so far stay, so the same command resumes."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.files import cache_dir
from harness.tracking.sqlite import sqlite_path

SHARD_BYTES = 4096  # a shard file's overhead (torch.save's zip records, indices, checksum): 2.2 KB measured, x2
JOB_FOLDER_BYTES = 64 * 1024  # Hydra's job folder (.hydra/*.yaml and the job log): 15.5 KB measured, x4
STORE_BYTES = 256 * 1024  # a cell's rows and small artifacts (config.yaml, hydra/*.yaml) in the store: ~12 KB measured
FULL = (errno.ENOSPC, errno.EDQUOT)
FULL_WORDS = ("No space left on device", "database or disk is full", "Disk quota exceeded")


def size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def os_reason(err: OSError) -> str:
    if err.errno == errno.ENOTDIR:
        return "a file is in the way (a folder above it is a file)"
    if err.errno == errno.ELOOP:
        return "a symbolic link loop is on its path"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if err.errno == errno.EROFS:
        return "the file system is read-only"
    if err.errno == errno.ENOSPC:
        return "the disk is full"
    return err.strerror or type(err).__name__


def nearest_existing(folder: Path) -> Path:
    """``folder`` (absolute) or the nearest folder above it that exists: where the first one missing will be made and
    its bytes land. A file in the way, or a link that leads nowhere or loops, is a ValueError saying so."""
    path = folder = Path(folder).expanduser().absolute()
    while True:
        try:
            st = os.stat(path)  # follows links
        except FileNotFoundError:
            if os.path.islink(path):
                raise ValueError("it is a symbolic link whose target is missing") from None
            if path.parent == path:
                return path
            path = path.parent
            continue
        except OSError as err:
            raise ValueError(os_reason(err)) from None
        if not stat.S_ISDIR(st.st_mode):
            raise ValueError("a file is in the way" + ("" if path == folder else f" ({path} is a file)"))
        return path


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(nearest_existing(folder)).free


def check_free(folder: Path, need: int, what: str, fix: str) -> None:
    """HarnessError when the disk of ``folder`` has less than ``need`` bytes free (the job folders, before Hydra writes
    them: a full disk takes an empty probe file, then fails on the first byte)."""
    free = free_bytes(folder)
    if free < need:
        raise HarnessError(f"no space left on {folder} for {what}: {size(free)} free ({free} bytes), at least "
                           f"{size(need)} ({need} bytes) needed; free space there, or {fix}.")


def stored_count(folder: Path, indices: range) -> int:
    """How many of ``indices`` the shards in ``folder`` hold, from their names ``<first>-<last>.pt`` (not read)."""
    have = set()
    for path in Path(folder).glob("*.pt"):
        first, _, last = path.stem.partition("-")
        if first.isdigit() and last.isdigit():
            have.update(range(int(first), int(last) + 1))
    return sum(1 for i in have if i in indices)  # range membership: O(1), whatever N


def cell_needs(cell, uri: str) -> list[tuple[Path, str, int]]:
    """(folder, what, bytes) the sample cell will still write."""
    c, h, w = cell.image_shape
    per_image = c * h * w * (4 if cell.is_exact else 1) + 8  # the image (uint8, or float32 samples) and its index
    todo = len(cell.indices) - stored_count(cell.images_dir, cell.indices)
    shards = -(-todo // cell.batch_size)
    needs = [(cell.images_dir, f"{todo} images' shards", todo * per_image + shards * SHARD_BYTES),
             (Path(cell.output_root), "the job folder", JOB_FOLDER_BYTES)]
    if (database := sqlite_path(uri)) is not None:
        grid = int(cell.job_options.get("grid_images", 0)) * c * h * w * int(cell.job_options.get("grid_scale", 1)) ** 2
        needs.append((database.parent, "the tracking store's rows and artifacts", STORE_BYTES + grid))
    return needs


def check_space(cell, uri: str) -> None:
    """One HarnessError, before sampling, when a disk the cell writes to has less free space than the cell will write
    there (its folders on one disk summed): naming the folder, the bytes needed and the bytes free."""
    if not cell.spec.scored or cell.dry_run:
        return
    disks: dict[int, list[tuple[Path, str, int]]] = {}
    for folder, what, need in cell_needs(cell, uri):
        disks.setdefault(os.stat(nearest_existing(folder)).st_dev, []).append((folder, what, need))
    for items in disks.values():
        need = sum(n for _, _, n in items)
        folder = max(items, key=lambda item: item[2])[0]
        free = free_bytes(folder)
        if need > free:
            parts = ", ".join(f"{what} {size(n)}" for _, what, n in items)
            raise HarnessError(
                f"not enough space on {nearest_existing(folder)}: the cell writes about {size(need)} ({need} bytes: {parts}) "
                f"and {size(free)} ({free} bytes) are free; free space there, set output_root=<a folder on a larger "
                f"disk>, or lower N (N={cell.N} x repeats={cell.repeats}).")


def disk_full(err: BaseException, cell, uri: str) -> str | None:
    """``no space left on <folder>`` when a full disk caused ``err`` (anywhere in its chain), naming the folder from
    the error, else the cell's folder with the least free space; None for any other error."""
    chain, e = [], err
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if not any(getattr(e, "errno", None) in FULL or any(w in str(e) for w in FULL_WORDS) for e in chain):
        return None
    named = next((e.filename for e in chain if getattr(e, "errno", None) in FULL and getattr(e, "filename", None)), None)
    if named is not None:
        folder = Path(os.fsdecode(named)).parent
    elif sqlite_path(uri) and any("database or disk is full" in str(e) for e in chain):
        folder = sqlite_path(uri).parent
    else:
        folders = [f for f, _, _ in cell_needs(cell, uri)] + [cache_dir()]  # the cache: reference features, weights
        folder = min(folders, key=free_bytes)
    return (f"no space left on {folder}: free space there and run the same command again (it resumes from the "
            f"images sampled so far, which stay in {cell.images_dir}), or set output_root=<a folder on a larger disk>.")
