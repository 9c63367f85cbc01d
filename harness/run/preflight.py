"""What a cell reads from disk, checked before any sampling: the dataset folder it scores against or reads (downloaded
now where the harness can fetch it) and the extractors' weights, identical to the published files where their
checksums are known (not in a rehearsal, whose stand-ins differ by design)."""

from __future__ import annotations

from harness.core.errors import HarnessError
from harness.data import KNOWN, data_root, ensure_available, published_problem
from harness.metrics.features import verified_weights
from harness.metrics.references import datasets_root, ensure_data
from harness.metrics.suite import scoring_of
from harness.metrics.vit_scores import fetch, networks_of


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
