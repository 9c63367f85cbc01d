"""The checks of a cell before any work that look outside its config: the device, the checkpoint, the dataset folder
it scores against or reads (downloaded now where the harness can fetch it) and the extractors' weights, identical to
the published files where their checksums are known (not in a rehearsal, whose stand-ins differ by design)."""

from __future__ import annotations

from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.runtime import gpu_problem, select_device
from harness.data import KNOWN, data_root, ensure_available, published_problem
from harness.metrics.features import verified_weights
from harness.metrics.references import datasets_root, ensure_data
from harness.metrics.suite import scoring_of
from harness.metrics.vit_scores import fetch, networks_of
from harness.models.hub import availability, check_model, snapshot, unet_folder
from harness.run.cell import Cell, cell_hash


_CHECKED: set[str] = set()  # the environments check_environment found ready in this process


def check_environment(cell: Cell) -> None:
    """The checks that need no model but look outside the config (the device, the checkpoint, the data the cell
    reads), once per process for each environment: a sweep's worker runs many cells of one dataset."""
    environment = cell_hash({"device": cell.device, "job": cell.job, "dataset": dict(cell.dataset),
                             "checkpoint": cell.model.get("checkpoint"), "metrics": dict(cell.metrics),
                             "dry_run": cell.dry_run, "rehearsal": cell.rehearsal})
    if environment in _CHECKED:
        return
    _check_environment(cell)
    _CHECKED.add(environment)


def _check_environment(cell: Cell) -> None:
    select_device(cell.device)
    checkpoint = cell.model.get("checkpoint") or {}
    path, hub = checkpoint.get("path"), checkpoint.get("hub")
    if hub and not path:
        check_model(hub, cell.model.get("name"))
        ok, text = availability(hub)
        if not ok and not cell.dry_run:  # a dry run lists it among the missing inputs
            raise HarnessError(text.removeprefix("missing: ") + ".")
        if not cell.dry_run:  # downloaded now, before any sampling: the cell's key names the weights by content
            snapshot(hub)
    if path and not Path(path).expanduser().exists():
        raise HarnessError(f"checkpoint file {Path(path).expanduser()} does not exist; fix model.checkpoint.path.")
    if path and Path(path).expanduser().is_dir():
        unet_folder(Path(path).expanduser())
    if not cell.dry_run and not cell.rehearsal:  # before the data (CIFAR-10 is downloaded next); the dry run names the device
        problem = gpu_problem(cell.device, bool(cell.dataset.get("expects_gpu")), f"dataset={cell.dataset['name']}")
        if problem:
            raise HarnessError(problem)
    check_data(cell)


def check_data(cell) -> None:
    """HarnessError (one line naming the difference and the fix) unless the cell's data folder is ready. A dry run
    downloads nothing: its plan lists the missing inputs (harness.run.dryrun)."""
    if cell.dry_run:
        return
    dataset = dict(cell.dataset)
    if dataset.get("name") in KNOWN and dataset.get("name") != "digits":
        data_root(dataset)  # a root no folder can be at (a link loop): said first, before any download
    if cell.spec.scored and not cell.is_exact:
        verified_weights(cell.metrics["feature_extractor"], cell.metrics.get("weights_path"))
    _check_folder(cell)
    if cell.spec.scored and not cell.is_exact:  # FD_DINOv2's and CMMD's networks: after the data (their
        for network in networks_of(cell.metrics).values():  # download is the larger), downloaded now, checked
            fetch(network)


def _check_folder(cell) -> None:
    dataset = dict(cell.dataset)
    if cell.is_exact or dataset.get("name") not in KNOWN or dataset.get("name") == "digits":
        return
    if cell.spec.scored:
        scoring = scoring_of(cell)
        ensure_data(scoring.reference, datasets_root(scoring.reference, scoring.datasets_root),
                    scoring.datasets_download, dataset)
    elif cell.spec.reads is not None:
        ensure_available(dataset, dataset[cell.spec.reads])
    else:
        return
    if not cell.rehearsal:
        problem = published_problem(dataset)
        if problem:
            raise HarnessError(problem)
