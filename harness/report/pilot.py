"""The planner's line of a dry run (harness.run.dryrun): for a sample cell, what a pilot store (finished sample runs of
the same settings, any repeats) says it needs: the repeats that would decide its within-noise comparisons
(harness.report.claims) and what growing it costs. Only a dry run's process imports it."""

from __future__ import annotations

from harness.core.errors import HarnessError
from harness.core.throughput import duration
from harness.report.claims import store_plans
from harness.report.labels import fmt_number, label
from harness.tracking import store as tracking
from harness.tracking.sqlite import sqlite_path


class PilotLines:
    """``print_plan``'s ``pilot``: a cell's planner line (empty without one), each store's report read once."""

    def __init__(self) -> None:
        self._pilots: dict[tuple[str, str], tuple | None] = {}

    def __call__(self, cell) -> str:
        where = (tracking.tracking_uri(cell.tracking.uri), cell.tracking.experiment)
        if where not in self._pilots:
            self._pilots[where] = _pilot(*where)
        return _pilot_line(cell, self._pilots[where])


def _pilot(uri: str, experiment: str) -> tuple | None:
    """The planner's checks of the store's report (harness.report.claims), or None without finished sample runs."""
    if (path := sqlite_path(uri)) and not path.is_file():
        return None
    try:
        return store_plans(uri, experiment)
    except HarnessError:  # no experiment or no finished runs yet: no pilot, nothing to plan
        return None


def _pilot_line(cell, pilot: tuple | None) -> str:
    """What the pilot store says this cell needs: the within-noise comparisons its pilot run takes part in, the repeats
    the hardest one that can be decided needs and what growing this cell to them costs, and the near-0 ones."""
    if pilot is None:
        return ""

    runs, rates, plans = pilot
    r = runs.runs
    match = r[(r["job"] == cell.job) & (r["dataset"] == cell.dataset["name"]) & (r["sampler"] == cell.sampler)
              & (r["S"] == cell.S) & (r["eta"] == cell.eta_label) & (r["N"] == cell.N) & (r["seed"] == cell.seed)]
    mine = [(c, k) for c, k in plans if set(k.runs) & set(match["run_id"]) and k.plan.unit == "repeats"]
    if not mine:
        return ""
    run = next(x for x in mine[0][1].runs if x in set(match["run_id"]))
    K = int(r.set_index("run_id").loc[run, "repeats"])
    out = f"planner (pilot run {run}, K={K}): {len(mine)} within-noise comparison(s)"
    decidable = [(c, k) for c, k in mine if k.plan.repeats is not None]
    if decidable:
        c, k = max(decidable, key=lambda ck: ck[1].plan.repeats)
        need = k.plan.repeats
        new = max(need - K, 0) * cell.N
        rate = rates.get(cell.dataset["name"])
        time = f", ~{duration(new * cell.nfe * rate.seconds_per_image_nfe)} of {rate.kind} sampling" if rate else ""
        covered = f" (repeats={cell.repeats} here covers it)" if cell.repeats >= need else ""
        out += (f"; the hardest to decide, {label(c.metric)} {k.scope}, needs K={need}{covered}: this cell grown "
                f"from K={K} samples {new:,} images, {new * cell.nfe:,} NFE{time}")
    near = [(c, k) for c, k in mine if k.plan.repeats is None]
    if near:
        out += f"; {len(near)} near 0 (smallest detectable at K={K}: " + ", ".join(
            f"{label(c.metric)} {k.item or k.scope}: {fmt_number(k.plan.detectable)}" for c, k in near) + ")"
    return out

