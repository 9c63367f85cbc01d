"""The planner's line for every within-noise claim comparison: the repeats (or, for Table 2, images) that would decide
it at 95% with 80% power if the observed difference were the true one, and their cost in images, network evaluations
and sampling time at the rate measured on this store's runs; for a difference near 0, the smallest difference the
data at hand could have detected (the math: harness.report.planning)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.core.names import Metric
from harness.report.planning import MAX_GROWTH, Plan, paired_plan, welch_plan
from harness.report.claims import NOISE, Check, Claim, check_claims
from harness.report.labels import fmt_number
from harness.report.runs import RunSet, load_runs
from harness.report.tables import build_tables
from harness.report.timing import timing_lines


@dataclass(frozen=True)
class Rate:
    """Sampling seconds per image and NFE of a dataset's runs in this store: the median, over how many, on what."""

    seconds_per_image_nfe: float
    runs: int
    kind: str  # "CPU" or "GPU"


def rates(runs: RunSet) -> dict[str, Rate]:
    """Per dataset, the median seconds per image and NFE over its runs that sampled (metric seconds_per_nfe_image)."""
    v = runs.values
    v = v[(v["metric"] == Metric.SECONDS_PER_NFE_IMAGE) & v["repeat"].isna() & np.isfinite(v["value"])]
    device = runs.runs.set_index("run_id")["device"]
    out = {}
    for dataset, g in v.groupby("dataset"):
        devices = device.reindex(g["run_id"]).fillna("cpu").astype(str)
        kind = "GPU" if devices.str.startswith("cuda").mean() > 0.5 else "CPU"
        out[dataset] = Rate(float(g["value"].median()), len(g), kind)
    return out


def _cell(runs: RunSet, run_id: str) -> pd.Series:
    return runs.runs.set_index("run_id").loc[run_id]


def _metric(runs: RunSet, run_id: str, metric: str, repeat: int | None = None) -> float:
    v = runs.values
    hit = v[(v["run_id"] == run_id) & (v["metric"] == metric)
            & (v["repeat"].isna() if repeat is None else v["repeat"] == repeat)]["value"]
    return float(hit.iloc[0]) if len(hit) else math.nan


def _paired(runs: RunSet, metric: str, a: str, b: str, K: int, rate: Rate | None) -> Plan:
    d = np.array([_metric(runs, a, metric, k) - _metric(runs, b, metric, k) for k in range(K)])
    ca, cb = _cell(runs, a), _cell(runs, b)
    return paired_plan(float(d.mean()), float(d.std(ddof=1)), K, int(ca["N"]), int(ca["nfe"]), int(cb["nfe"]),
                       rate.seconds_per_image_nfe if rate else None, (int(ca["repeats"]), int(cb["repeats"])))


def _welch(runs: RunSet, estimate: float, a: str, b: str, rate: Rate | None) -> Plan | None:
    se = [_metric(runs, r, Metric.RECON_MSE_STDERR) for r in (a, b)]
    n = [_metric(runs, r, Metric.N_IMAGES) for r in (a, b)]
    if not all(math.isfinite(x) for x in se + n):  # the check itself needs them: never here in practice
        return None
    n = [int(x) for x in n]
    nfe = []
    for r in (a, b):  # a reconstruction runs DDIM both ways: the counted NFE per image, else 2 x the steps
        counted = _metric(runs, r, Metric.NFE_PER_IMAGE)
        nfe.append(int(counted) if math.isfinite(counted) else 2 * int(_cell(runs, r)["nfe"]))
    return welch_plan(estimate, se[0], n[0], se[1], n[1], nfe[0], nfe[1], rate.seconds_per_image_nfe if rate else None)


def attach_plans(claims: list[Claim], runs: RunSet) -> dict[str, Rate]:
    """Set ``plan`` on every within-noise check of two runs; returns the rates used, per dataset."""
    measured = rates(runs)
    for claim in claims:
        for check in claim.checks:
            if check.verdict != NOISE or len(check.runs) != 2 or check.interval is None:
                continue
            a, b = check.runs
            rate = measured.get(_cell(runs, a)["dataset"])
            if claim.metric == Metric.RECON_MSE:
                check.plan = _welch(runs, check.interval.estimate, a, b, rate)
            elif check.K and check.K >= 2:
                check.plan = _paired(runs, claim.metric, a, b, check.K, rate)
            if check.plan is not None:
                check.plan_line = plan_text(check.plan, rate)
    return measured


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def plan_text(plan: Plan, rate: Rate | None) -> str:
    """``K=61 (+1,120 new images, 11,200 NFE, ~11 s of CPU sampling); smallest detectable difference at K=5: 6.73``
    (no '|': the line sits in a Markdown table)."""
    unit = "repeats" if plan.unit == "repeats" else "images per cell"
    at = f"{'K' if plan.unit == 'repeats' else 'n'}={plan.K}"
    now = f"smallest detectable difference at {at}: {fmt_number(plan.detectable)}"
    if plan.repeats is None:
        return f"difference near 0 (deciding it would take over {MAX_GROWTH}x the {unit} at hand); {now}"
    what = f"K={plan.repeats}" if plan.unit == "repeats" else f"n={plan.repeats} images per cell"
    time = ("time unknown (no run of this dataset logged its sampling rate)" if plan.seconds is None else
            f"~{duration(plan.seconds)} of {rate.kind} sampling")
    return f"{what} (+{plan.images:,} new images, {plan.nfe:,} NFE, {time}); {now}"


def plan_note(measured: dict[str, Rate]) -> str:
    """How the plans were made and the rates they were priced at."""
    rates_text = "; ".join(f"{d}: {r.seconds_per_image_nfe:.3g} s per image and NFE ({r.kind}, median of {r.runs} runs)"
                           for d, r in sorted(measured.items())) or "none measured"
    return ("To decide (within-noise comparisons): the repeats K (Table 2: images n per cell) at which the paired "
            "t-test (Welch for Table 2) would decide the comparison at 95% with 80% power if the observed difference "
            "and spread were the true ones (noncentral t; Cohen 1988, Guenther 1981; harness/report/planning.py), the new "
            "images of both cells (grown cells keep their repeats), their network evaluations and the sampling time "
            f"at this store's rate ({rates_text}); and the smallest difference (either sign) the data at hand would "
            f"decide with 80% power. A difference whose plan needs over {MAX_GROWTH}x the data at hand is called "
            "near 0. Table 2's plan may ask for more held-out images than the dataset has: then it cannot be decided "
            "there.")


def store_plans(uri: str, experiment: str) -> tuple[RunSet, dict[str, Rate], list[tuple[Claim, Check]]]:
    """The report's within-noise checks of a store, each with its plan (for the dry run's per-cell lines)."""
    runs = load_runs(uri, experiment)
    tables = build_tables(runs)
    claims = check_claims(tables, timing_lines(runs))
    measured = attach_plans(claims, runs)
    return runs, measured, [(c, k) for c in claims for k in c.checks if k.plan is not None]
