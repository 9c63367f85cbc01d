"""``dry_run=true``: print every cell a sweep would run, which are done, their NFE and estimated time, and whether
their checkpoint and data are present, without sampling anything. A missing input is printed once, not per cell."""

from __future__ import annotations

from .cell import Cell
from .names import Metric, Param


def _data_status(cell: Cell) -> tuple[bool, str]:
    from .datasets import check_available

    if cell.is_exact:
        return True, f"exact-score data {cell.dataset['name']}: no data needed"
    if cell.job == "sample":
        from .jobs.sample import scoring_of
        from .metrics import reference_cached

        try:
            if reference_cached(scoring_of(cell)):
                return True, f"reference features of {cell.dataset['fid_reference']} cached"
        except Exception:  # noqa: BLE001 - a missing dataset is reported by check_available below
            pass
        problem = check_available(cell.dataset, cell.dataset["train_split"])
        return problem is None, problem or f"{cell.dataset['fid_reference']} data present"
    if cell.job == "recon":
        problem = check_available(cell.dataset, cell.dataset["test_split"])
        return problem is None, problem or f"{cell.dataset['name']} {cell.dataset['test_split']} data present"
    return True, "no data needed"


def _seconds_per_image_nfe(cell: Cell, uri: str) -> float | None:
    """Seconds per image per network evaluation, from the newest finished sample or timing run of this model."""
    from . import tracking

    exp = tracking.experiment_id(uri, cell.tracking.experiment)
    if exp is None:
        return None
    with tracking.store_errors(uri):
        for run in tracking.client(uri).search_runs(
            [exp], filter_string=f"params.{Param.MODEL} = '{cell.model['name']}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"], max_results=50,
        ):
            m, p = run.data.metrics, run.data.params
            if Metric.SECONDS_PER_NFE_IMAGE in m:
                return m[Metric.SECONDS_PER_NFE_IMAGE]
            if Metric.SECONDS_PER_NFE in m and Param.BATCH_SIZE in p:
                return m[Metric.SECONDS_PER_NFE] / int(p[Param.BATCH_SIZE])
    return None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "time unknown (no finished run of this model yet)"
    if seconds < 120:
        return f"~{seconds:.0f} s"
    if seconds < 7200:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def print_plan(cells: list[Cell]) -> int:
    """One line per cell, each missing input once, and a summary; returns the number of cells missing inputs."""
    from . import tracking
    from .checkpoints import availability

    rows, problems = [], {}
    rates: dict[tuple[str, str], float | None] = {}
    for cell in cells:
        uri = tracking.tracking_uri(cell.tracking.uri)
        done = tracking.finished_run(uri, cell.tracking.experiment, cell.key)
        ckpt = cell.model.get("checkpoint") or {}
        if cell.model.get("kind") == "analytic":
            ckpt_ok, ckpt_text = True, "none needed (exact eps*)"
        else:
            ckpt_ok, ckpt_text = availability(ckpt.get("name"), bool(ckpt.get("ema", True)), ckpt.get("path"))
        data_ok, data_text = _data_status(cell)
        for ok, text in ((ckpt_ok, f"checkpoint: {ckpt_text}"), (data_ok, f"data: {data_text}")):
            if not ok:
                problems.setdefault(text, []).append(cell.run_name)
        if (uri, cell.model["name"]) not in rates:
            rates[(uri, cell.model["name"])] = _seconds_per_image_nfe(cell, uri)
        rate = rates[(uri, cell.model["name"])]
        images = cell.n_images * (2 if cell.job == "recon" else 1)
        seconds = None if done or rate is None else images * cell.nfe * rate
        rows.append((cell, done, ckpt_ok and data_ok, seconds))
    for cell, done, ready, seconds in rows:
        state = f"done (run {done.info.run_id})" if done else f"to run, {_duration(seconds)}" if ready else "MISSING inputs"
        print(f"{cell.run_name} [{cell.trajectory}, {cell.repeats} x {cell.N} images]: NFE {cell.nfe}, {state}")
    for text, names in problems.items():
        print(f"MISSING for {len(names)} cell(s): {text}")
    todo = [r for r in rows if not r[1]]
    missing = sum(1 for r in todo if not r[2])
    known = [r[3] for r in todo if r[3] is not None]
    total = _duration(sum(known)) if todo and len(known) == len(todo) else "unknown" if todo else "none"
    print(f"{len(rows)} cells: {len(rows) - len(todo)} done, {len(todo)} to run ({missing} missing inputs); "
          f"estimated time {total} (one worker)")
    return missing
