"""``dry_run=true``: one line per cell (a cell in parts once, with its part plan): done or not, NFE, whether its
checkpoint and data are there, and its device time at the model's newest measured rate; each missing input once; with
``pilot`` (harness.report.pilot), the repeats that would decide its within-noise comparisons."""

from __future__ import annotations

from collections.abc import Callable

from harness.core.errors import HarnessError
from harness.core.names import Metric, Param, Tag, part_key
from harness.core.runtime import gpu_problem, planned_device
from harness.core.throughput import Rate, device_kind, duration
from harness.data import check_available
from harness.metrics.suite import reference_cached, scoring_of
from harness.metrics.vit_scores import networks_of
from harness.models.checkpoints import availability
from harness.run.cell import Cell, part_range
from harness.run.parts import find_run
from harness.tracking import store as tracking


def _key(cell: Cell) -> str | None:
    """The cell's key, or None when an input it names by content is missing (the plan lists that input instead)."""
    try:
        return cell.key
    except HarnessError:
        return None


def _data_status(cell: Cell) -> tuple[bool, str]:
    if cell.is_exact:
        return True, f"exact-score data {cell.dataset['name']}: no data needed"
    if cell.spec.scored:
        try:
            if reference_cached(scoring_of(cell)):
                return True, f"reference features of {cell.dataset['fid_reference']} cached"
        except Exception:  # noqa: BLE001 - a missing dataset is reported by check_available below
            pass
        problem = check_available(cell.dataset, cell.dataset["train_split"])
        return problem is None, problem or f"{cell.dataset['fid_reference']} data present"
    if cell.spec.reads is not None:
        split = cell.dataset[cell.spec.reads]
        problem = check_available(cell.dataset, split)
        return problem is None, problem or f"{cell.dataset['name']} {split} data present"
    return True, "no data needed"


def _finished_runs(uri: str, experiment: str, where: str, max_results: int):
    return tracking.newest_runs(uri, experiment, f"{where} and attributes.status = 'FINISHED'", max_results)


def _rate_of(run, value: float) -> Rate:
    t = run.data.tags
    return Rate(value, 1, device_kind(t.get(Tag.DEVICE, "cpu")), f"run {run.info.run_id} on {t.get(Tag.DEVICE_NAME, '?')}")


def _rate(cell: Cell, uri: str) -> Rate | None:
    """The newest finished sample run of this model (seconds_per_nfe_image) or timing run (seconds_per_nfe / batch)."""
    for run in _finished_runs(uri, cell.tracking.experiment, f"params.{Param.MODEL} = '{cell.model['name']}'", 50):
        m, p = run.data.metrics, run.data.params
        if Metric.SECONDS_PER_NFE_IMAGE in m:
            return _rate_of(run, m[Metric.SECONDS_PER_NFE_IMAGE])
        if Metric.SECONDS_PER_NFE in m and Param.BATCH_SIZE in p:
            return _rate_of(run, m[Metric.SECONDS_PER_NFE] / int(p[Param.BATCH_SIZE]))
    return None


def _vit_rate(uri: str, experiment: str) -> Rate | None:
    """The newest finished sample run that scored FD_DINOv2 or CMMD: its seconds per image of their features (in
    the Rate's seconds_per_image_nfe: these features cost the same per image whatever the NFE)."""
    for run in _finished_runs(uri, experiment, f"metrics.{Metric.VIT_SECONDS_PER_IMAGE} > 0", 1):
        return _rate_of(run, run.data.metrics[Metric.VIT_SECONDS_PER_IMAGE])
    return None


def vit_price(cell: Cell, images: int, rates: dict) -> str:
    """``  FD_DINOv2 and CMMD features: ~2.1 h of CPU time ...``: their price for a sample cell that scores them."""
    if not cell.spec.scored or cell.is_exact or not networks_of(cell.metrics):
        return ""
    names = " and ".join(n for n, on in (("FD_DINOv2", cell.metrics.get("fd_dinov2")), ("CMMD", cell.metrics.get("cmmd"))) if on)
    where = (tracking.tracking_uri(cell.tracking.uri), cell.tracking.experiment)
    if where not in rates:
        rates[where] = _vit_rate(*where)
    rate = rates[where]
    if rate is None:
        return f"  {names} features of {images:,} images: time unknown (no finished run scored them yet; " \
               "benchmarks/vit_metrics_cost.py measures it)"
    return (f"  {names} features of {images:,} images: ~{duration(images * rate.seconds_per_image_nfe)} of "
            f"{rate.kind} time ({rate.seconds_per_image_nfe:.3g} s per image, {rate.source}), "
            "and the reference's images once when their features are not cached")


def _device(cell: Cell) -> str:
    """The device the cell will use here; a paper preset that expects a GPU and would get the CPU says so."""
    problem = None if cell.rehearsal else gpu_problem(cell.device, bool(cell.dataset.get("expects_gpu")), "")
    return planned_device(cell.device) + (" (NO GPU here: the run stops unless device=cpu)" if problem else "")


def _part_plan(cell: Cell, seconds: float | None, here: list[int], uri: str) -> str:
    """``; 8 parts of 6250 images (~20 min each), parts done 0, 3 (run ...)``."""
    sizes = sorted({len(part_range(cell.n_images, cell.parts, p)) for p in range(cell.parts)})
    plan = f"; {cell.parts} parts of {'-'.join(map(str, sizes))} images"
    if seconds is not None:
        plan += f" (~{duration(seconds / cell.parts)} each)"
    if here and here != list(range(cell.parts)):
        plan += f", parts {', '.join(map(str, here))} here"
    run = find_run(uri, cell.tracking.experiment, _key(cell)) if _key(cell) else None
    if run is not None and run.info.status != "FINISHED":
        states = {p: run.data.tags.get(part_key(p, "state")) for p in range(cell.parts)}
        done = [p for p, state in states.items() if state == "done"]
        failed = [p for p, state in states.items() if state in ("failed", "killed")]
        plan += (f", parts done: {', '.join(map(str, done)) or 'none'}"
                 + (f", failed: {', '.join(map(str, failed))}" if failed else "") + f" (run {run.info.run_id})")
    return plan


def print_plan(cells: list[Cell], pilot: Callable[[Cell], str] | None = None) -> int:
    """One line per cell (a cell in parts once, with its part plan) and, with ``pilot``, its planner line; each missing
    input once, where the time estimates come from, and a summary; returns the number of cells missing inputs."""
    groups: list[list[Cell]] = []  # one per line: a cell, or the part jobs of a cell
    parts_of: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.part is None:
            groups.append([cell])
            continue
        group = _key(cell) or cell.run_name
        if group not in parts_of:
            parts_of[group] = []
            groups.append(parts_of[group])
        parts_of[group].append(cell)
    rows, problems = [], {}
    rates: dict[tuple[str, str], Rate | None] = {}
    for group in groups:
        cell = group[0]
        uri = tracking.tracking_uri(cell.tracking.uri)
        done = tracking.finished_run(uri, cell.tracking.experiment, _key(cell)) if _key(cell) else None
        ckpt = cell.model.get("checkpoint") or {}
        if cell.model.get("kind") == "analytic":
            ckpt_ok, ckpt_text = True, "none needed (exact eps*)"
        else:
            ckpt_ok, ckpt_text = availability(ckpt.get("name"), bool(ckpt.get("ema", True)), ckpt.get("path"),
                                              ckpt.get("hub"))
        data_ok, data_text = _data_status(cell)
        for ok, text in ((ckpt_ok, f"checkpoint: {ckpt_text}"), (data_ok, f"data: {data_text}")):
            if not ok:
                problems.setdefault(text, []).append(cell.run_name)
        if (uri, cell.model["name"]) not in rates:
            rates[(uri, cell.model["name"])] = _rate(cell, uri)
        rate = rates[(uri, cell.model["name"])]
        images = cell.spec.images(cell) - cell.spec.stored(cell)
        seconds = None if done or rate is None else images * cell.nfe * rate.seconds_per_image_nfe
        here = sorted(c.part for c in group if c.part is not None)
        plan = _part_plan(cell, seconds, here, uri) if cell.parts > 1 and not done else ""
        rows.append((cell, done, ckpt_ok and data_ok, seconds, rate, plan))
    vit_rates: dict[tuple[str, str], Rate | None] = {}
    for cell, done, ready, seconds, rate, plan in rows:
        if done:
            state = f"done (run {done.info.run_id})"
        else:
            state = ("to run" if ready else "MISSING inputs") + (
                ", GPU-hours unknown (no finished run of this model yet)" if rate is None else
                f", ~{duration(seconds)} of {rate.kind} time")
        reused = cell.spec.stored(cell) if not done else 0
        state += f" ({reused} of its images already sampled)" if reused else ""
        print(f"{cell.run_name} [{cell.trajectory}, {cell.repeats} x {cell.N} images]: NFE {cell.nfe}, on "
              f"{_device(cell)}, {state}{plan}")
        if cell.spec.scored and not done:
            price = vit_price(cell, cell.n_images, vit_rates)  # every image is scored again, sampled or reused
            if price:
                print(price)
        line = pilot(cell) if pilot is not None and cell.spec.scored else ""
        if line:
            print(f"  {line}")
    for text, names in problems.items():
        print(f"MISSING for {len(names)} cell(s): {text}")
    todo = [r for r in rows if not r[1]]
    for (_, model), rate in rates.items():
        if any(r[0].model["name"] == model for r in todo):
            print(f"throughput of model {model}: " + (
                "unknown (no finished sample or timing run of it yet)" if rate is None else
                f"{rate.seconds_per_image_nfe:.3g} s per image and NFE, from {rate.source}"))
    missing = sum(1 for r in todo if not r[2])
    hours: dict[str, float] = {}
    for _, _, _, seconds, rate, _ in todo:
        if seconds is not None:
            hours[rate.kind] = hours.get(rate.kind, 0.0) + seconds / 3600
    unknown = sum(1 for r in todo if r[3] is None)
    estimate = ", ".join(f"{h:.3g} {kind}-hours" for kind, h in sorted(hours.items())) or "none"
    if unknown:
        estimate = f"{estimate} + unknown for {unknown} cell(s)" if hours else "unknown"
    print(f"{len(rows)} cells: {len(rows) - len(todo)} done, {len(todo)} to run ({missing} missing inputs); "
          f"estimated {estimate} (one device per cell; parts share a cell's hours)")
    return missing
