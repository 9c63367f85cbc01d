"""The disk a cell writes to: every folder it writes (``output_root``, its ``images/``, the cache) checked writable
before anything is written (by Hydra callbacks before Hydra makes its job folders, and for each cell), its free space
checked against what a sample cell will write, and a disk that fills while it runs said in one line naming the folder
(the shards written so far stay: the same command resumes)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.core.cli import fail
from harness.core.errors import HarnessError
from harness.core.files import FULL_ERRNOS, cache_dir, full_disk
from harness.metrics.features import WEIGHTS_URLS
from harness.run import registry
from harness.tracking.sqlite import sqlite_path

SHARD_BYTES = 4096  # a shard file's overhead (torch.save's zip records, indices, checksum): 2.2 KB measured, x2
JOB_FOLDER_BYTES = 64 * 1024  # Hydra's job folder (.hydra/*.yaml and the job log): 15.5 KB measured, x4
STORE_BYTES = 256 * 1024  # a cell's rows and small artifacts (config.yaml, hydra/*.yaml) in the store: ~12 KB measured
CACHE_FIX = "set DDIM_HARNESS_CACHE=<a writable folder>"


def size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _reason(err: OSError) -> str:
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


def _nearest_existing(folder: Path) -> Path:
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
            raise ValueError(_reason(err)) from None
        if not stat.S_ISDIR(st.st_mode):
            raise ValueError("a file is in the way" + ("" if path == folder else f" ({path} is a file)"))
        return path


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(_nearest_existing(folder)).free


def check_free(folder: Path, need: int, what: str, fix: str) -> None:
    """HarnessError when the disk of ``folder`` has less than ``need`` bytes free (the job folders, before Hydra writes
    them: a full disk takes an empty probe file, then fails on the first byte)."""
    free = free_bytes(folder)
    if free < need:
        raise HarnessError(f"no space left on {folder} for {what}: {size(free)} free ({free} bytes), at least "
                           f"{size(need)} ({need} bytes) needed; free space there, or {fix}.")


def check_writable(folder: Path, what: str, fix: str) -> None:
    """Whether ``folder`` can be made (if missing) and written: a file written and deleted in it, or in the nearest
    folder above it that exists (nothing is created); else HarnessError: what, where, why, the fix."""
    folder = Path(folder).expanduser()
    try:
        base = _nearest_existing(folder)
        fd, probe = tempfile.mkstemp(dir=base, prefix=".write-check.")
        os.close(fd)
        os.unlink(probe)
    except (OSError, ValueError) as err:
        why = str(err) if isinstance(err, ValueError) else _reason(err)
        raise HarnessError(f"cannot write {what} into {folder}: {why}; {fix}.") from None


def check_paths(output_root: str | os.PathLike, sample: bool = True, dry_run: bool = False) -> None:
    """The folders a job writes: ``output_root`` (Hydra's job folders, even for a dry run) and, unless it is a dry
    run, the cache and for sample jobs ``output_root/images`` and the reference features' folder."""
    root = Path(output_root).expanduser()
    check_writable(root, "the job folders (output_root)", "set output_root=<a writable folder>")
    check_free(root, JOB_FOLDER_BYTES, "the job folders (output_root)", "set output_root=<a folder on another disk>")
    if dry_run:
        return
    if sample:
        check_writable(root / "images", "the sample shards (output_root/images)",
                       f"make {root / 'images'} a writable folder, or set output_root=<a writable folder>")
    check_writable(cache_dir(), "the cache (reference features, verified weights)", CACHE_FIX)
    if sample:
        check_writable(cache_dir() / "references", "the reference features (cache/references)",
                       f"make {cache_dir() / 'references'} a writable folder, or {CACHE_FIX}")


def check_cell_paths(cell) -> None:
    """``check_paths`` for one cell, and the cache folder of verified extractor weights when its extractor has some
    (torch-fidelity's Inception)."""
    check_paths(cell.output_root, sample=cell.spec.scored, dry_run=cell.dry_run)
    if cell.dry_run or not cell.spec.scored or cell.is_exact:
        return

    if cell.metrics.get("feature_extractor") in WEIGHTS_URLS:
        folder = cache_dir() / "verified-weights"
        check_writable(folder, "the verified extractor weights (cache/verified-weights)",
                       f"make {folder} a writable folder, or {CACHE_FIX}")


class WritableCallbacks(Callback):
    """Hydra callbacks: the writable folders, before Hydra makes its job folders."""

    @staticmethod
    def _check(config: DictConfig, sample: bool) -> None:
        try:
            check_paths(str(config.output_root), sample=sample, dry_run=bool(config.get("dry_run")))
        except HarnessError as err:
            fail(err)

    def on_run_start(self, config: DictConfig, **_: Any) -> None:
        self._check(config, registry.job(config.job.name, config.job.get("module")).scored)

    def on_multirun_start(self, config: DictConfig, **_: Any) -> None:
        self._check(config, True)  # the job may be swept: the folders of sample jobs


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
        disks.setdefault(os.stat(_nearest_existing(folder)).st_dev, []).append((folder, what, need))
    for items in disks.values():
        need = sum(n for _, _, n in items)
        folder = max(items, key=lambda item: item[2])[0]
        free = free_bytes(folder)
        if need > free:
            parts = ", ".join(f"{what} {size(n)}" for _, what, n in items)
            raise HarnessError(
                f"not enough space on {_nearest_existing(folder)}: the cell writes about {size(need)} ({need} bytes: {parts}) "
                f"and {size(free)} ({free} bytes) are free; free space there, set output_root=<a folder on a larger "
                f"disk>, or lower N (N={cell.N} x repeats={cell.repeats}).")


def disk_full(err: BaseException, cell, uri: str) -> str | None:
    """``no space left on <folder>`` when a full disk caused ``err`` (anywhere in its chain), naming the folder from
    the error, else the cell's folder with the least free space; None for any other error."""
    chain, e = [], err
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if not any(full_disk(e) for e in chain):
        return None
    named = next((e.filename for e in chain if getattr(e, "errno", None) in FULL_ERRNOS and getattr(e, "filename", None)), None)
    if named is not None:
        folder = Path(os.fsdecode(named)).parent
    elif sqlite_path(uri) and any("database or disk is full" in str(e) for e in chain):
        folder = sqlite_path(uri).parent
    else:
        folders = [f for f, _, _ in cell_needs(cell, uri)] + [cache_dir()]  # the cache: reference features, weights
        folder = min(folders, key=free_bytes)
    return (f"no space left on {folder}: free space there and run the same command again (it resumes from the "
            f"images sampled so far, which stay in {cell.images_dir}), or set output_root=<a folder on a larger disk>.")
