"""The jobs a cell can run, one entry each (after EDM2's metric specs): what a job samples, scores, splits, costs and how
it is described. A job is ``harness/run/jobs/<name>.py`` with its ``JOB`` and ``conf/job/<name>.yaml`` (``module:`` for
one kept elsewhere); entries load on first use, so the sweeper's start-up imports no torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.core.errors import HarnessError

BUILT_IN = ("sample", "recon", "timing", "figures")


def _images(cell: Any) -> int:
    return cell.n_images


def _none(cell: Any) -> int:
    return 0


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[Any], Any]  # (JobContext) -> None: the job's work on its cell
    describe: Callable[[Any], str]  # (Cell) -> what it computes, e.g. "5 x 250 images scored"
    scored: bool = False  # its images are scored against the dataset's reference: metrics, extractor, reference
    splittable: bool = False  # a cell of it can be split into parts (parts=k)
    reads: str | None = None  # the dataset split it reads itself, e.g. "test_split" (a scored job's reference aside)
    sampler: str | None = None  # the one sampler it takes (None: any)
    exact: bool = True  # runs on exact-score data (which has no held-out images)
    images: Callable[[Any], int] = _images  # (Cell) -> images it samples: the dry run's cost, x NFE x the rate
    stored: Callable[[Any], int] = _none  # (Cell) -> of those, the images its folder holds already (not sampled again)
    nfe: Callable[[Any], int] | None = None  # (Cell) -> network evaluations per image, when not the sampler's
    check: Callable[[Any], None] | None = None  # (job options) -> None; HarnessError names a bad option's fix


_REGISTRY: dict[str, Job] = {}


def register(job: Job) -> Job:
    _REGISTRY[job.name] = job
    return job


def job(name: str, module: str | None = None) -> Job:
    """The registered job ``name``, its module imported on first use; HarnessError for an unknown one."""
    if name not in _REGISTRY:
        path = module or f"harness.run.jobs.{name}"
        try:
            entry = importlib.import_module(path).JOB
        except (ModuleNotFoundError, AttributeError) as err:
            if isinstance(err, ModuleNotFoundError) and not path.startswith(str(err.name)):
                raise
            raise HarnessError(f"Unknown job {name!r}: choose job= one of {BUILT_IN} (a new job is a module with "
                               f"its JOB and a conf/job/<name>.yaml).") from None
        register(entry)
    return _REGISTRY[name]
