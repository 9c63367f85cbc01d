"""Every folder a cell writes (``output_root``, its ``images/``, the cache) checked writable before anything is written,
with one message naming the fix: by Hydra callbacks before Hydra makes its job folders (else a traceback from inside
Hydra), and by the runner for each cell (``check_cell_paths``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.core.cli import fail
from harness.core.errors import HarnessError
from harness.core.files import cache_dir
from harness.metrics.features import WEIGHTS_URLS
from harness.run import registry
from harness.run.space import JOB_FOLDER_BYTES, check_free, nearest_existing, os_reason

CACHE_FIX = "set DDIM_HARNESS_CACHE=<a writable folder>"


def check_writable(folder: Path, what: str, fix: str) -> None:
    """Whether ``folder`` can be made (if missing) and written: a file written and deleted in it, or in the nearest
    folder above it that exists (nothing is created); else HarnessError: what, where, why, the fix."""
    folder = Path(folder).expanduser()
    try:
        base = nearest_existing(folder)
        fd, probe = tempfile.mkstemp(dir=base, prefix=".write-check.")
        os.close(fd)
        os.unlink(probe)
    except (OSError, ValueError) as err:
        why = str(err) if isinstance(err, ValueError) else os_reason(err)
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
