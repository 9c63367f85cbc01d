"""The paper's qualitative claims checked against the measured cells, per dataset and per metric, each check with
its verdict and the numbers and interval it was decided on (what a verdict means: templates/text.j2, ``claims``).

A check compares two cells by their difference a - b. Between two sample cells it is the PAIRED difference over
repeats, d_k = m_k(a) - m_k(b): repeat k of both cells scores the images k*N .. (k+1)*N-1 of the same seed, so the
two cells share every x_T and each repeat is an independent draw of the whole pipeline (sampling and scoring);
pairing cancels the x_T noise the two cells share (a bootstrap over images would need per-image features, which the
store does not hold). The cells are the ones the tables show (the same choice among runs), so claims and tables agree.

The planner's line for every within-noise claim comparison: the repeats (or, for Table 2, images) that would decide
it at 95% with 80% power if the observed difference were the true one, and their cost in images, network evaluations
and sampling time at the rate measured on this store's runs; for a difference near 0, the smallest difference the
data at hand could have detected (the math: harness.report.stats).
"""

from __future__ import annotations

import csv
import math
from collections import namedtuple
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.errors import HarnessError
from harness.core.names import Metric
from harness.core.throughput import Rate, duration
from harness.diffusion.eta import SIGMA_HAT, eta_row_name
from harness.report.labels import SAMPLE_METRICS, better, dataset_name, direction, fmt_number, fmt_value, label
from harness.report.render import text
from harness.report.runs import RunSet, load_runs
from harness.report.stats import (
    MAX_GROWTH,
    Interval,
    Plan,
    kendall_tau,
    paired_interval,
    paired_plan,
    welch_interval,
    welch_plan,
)
from harness.report.tables import ReportTable, TimingLine, build_tables, timing_lines

PASS, FAIL, NOISE = "PASS", "FAIL", "within noise"
NO_REPEATS, NO_DATA = "not enough repeats", "not enough data"
BIASED = "biased: see its -inf"  # a plain Frechet distance whose cells also log its N -> inf version: that one decides
UNCALIBRATED = "no verdict: uncalibrated"  # a metric whose interval failed the calibration: numbers shown, no verdict
# A Frechet distance at N images is biased by about c/N, with c that differs between cells, so its paired interval
# misses the N-free difference far more often than 5% (benchmarks/calibration.py, README "Calibration"); its version
# extrapolated to N -> inf (Chong & Forsyth 2020) held it in every setting measured for image features. Where the
# cells log that one, it alone decides.
BIAS_CORRECTED = {Metric.FID: Metric.FID_INF, Metric.FD_PIXELS: Metric.FD_PIXELS_INF,
                  Metric.FD_DINOV2: Metric.FD_DINOV2_INF}
# Metrics no interval of the harness is calibrated for (measured coverage under 93%): why, said in claims.md.
NOT_FOR_VERDICTS = {
    Metric.FD_TRUE: "at N=250 its paired interval held the true difference of S=10 against S=20 in 0-7.5% of the "
                    "calibration's replications (bias about c/N, different per cell)",
    Metric.FD_TRUE_INF: "extrapolated to N -> inf it still held the true difference of S=10 against S=20 on gaussian64 "
                        "in only 79% of the calibration's replications (K=5, N=250: the 1/N^2 terms in 64 dimensions)",
}
# A cell scored in blocks (the paper's budget, harness.metrics.blocks) decides on its jackknife pseudo-values only for
# the Frechet distances, the metrics whose paired jackknife interval was calibrated at N = 10,000 and 50,000
# (benchmarks/calibration_paper.py, docs/evidence.md); the others show their numbers and intervals, no verdict.
BLOCK_CALIBRATED = {Metric.FID, Metric.FD_PIXELS}
BLOCK_UNCALIBRATED = ("its block-jackknife interval is not calibrated at paper scale (only the Frechet distances are: "
                      "docs/evidence.md)")
# The claims' thresholds (display constants of the checks, not of any number measured): claim_thresholds.csv
with open(Path(__file__).with_name("claim_thresholds.csv"), newline="") as _f:
    THRESHOLDS = {row["name"]: float(row["value"]) for row in csv.DictReader(_f)}
SMALL_S = int(THRESHOLDS["small_S"])  # "small S": the paper's S = 10 and 20
R2_MIN, SLOPE_RANGE = THRESHOLDS["r2_min"], (THRESHOLDS["slope_low"], THRESHOLDS["slope_high"])


@dataclass
class Check:
    group: str  # where: table, dataset (and S or eta)
    item: str  # what is compared within the group
    verdict: str
    evidence: str
    interval: Interval | None = None
    K: int | None = None
    runs: tuple[str, ...] = ()  # the run ids of the two cells compared (a, b)
    plan: Plan | None = None  # within noise: what deciding it would take (harness.report.claims)
    plan_line: str = ""  # the plan in words

    @property
    def scope(self) -> str:
        return f"{self.group}, {self.item}" if self.item else self.group


@dataclass
class Claim:
    key: str
    statement: str
    metric: str
    definition: str
    words: tuple[str, str] = ("holds", "fails")  # what PASS and FAIL say in the summary of where
    checks: list[Check] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        decided = {c.verdict for c in self.checks} & {PASS, FAIL, NOISE}
        if decided:
            return FAIL if FAIL in decided else PASS if decided == {PASS} else NOISE
        for verdict in (NO_REPEATS, BIASED, UNCALIBRATED):
            if any(c.verdict == verdict for c in self.checks):
                return verdict
        return NO_DATA

    @property
    def where(self) -> list[str]:
        """Per group, which comparisons hold and which do not, e.g. 'eta=0: falls 10->20, 20->50; within noise 50->100'."""
        word = {PASS: self.words[0], FAIL: self.words[1]}
        lines = []
        for group in dict.fromkeys(c.group for c in self.checks):
            checks = [c for c in self.checks if c.group == group]
            parts = [f"{word.get(v, v)} " + ", ".join(c.item for c in checks if c.verdict == v)
                     for v in dict.fromkeys(c.verdict for c in checks)]
            lines.append(f"{group}: {'; '.join(parts)}")
        return lines


# Kendall's tau-b of one table block's measured values against the paper's (reference_dataset's) over n cells
RankAgreement = namedtuple("RankAgreement", "table dataset reference_dataset comparable n tau metric description")


def _verdict(metric: str, iv: Interval) -> str:
    """PASS when the interval of a - b lies wholly where a is better, FAIL wholly where worse."""
    if better(metric, iv.low) and better(metric, iv.high):
        return PASS
    return FAIL if better(metric, -iv.low) and better(metric, -iv.high) else NOISE


def _numbers(metric: str, a: str, b: str, iv: Interval, how: str) -> str:
    return (f"{label(metric)}({a}) - {label(metric)}({b}) = {fmt_number(iv.estimate)}, 95% CI "
            f"[{fmt_number(iv.low)}, {fmt_number(iv.high)}] ({how})")


def paired(metric: str, group: str, item: str, a: pd.Series, b: pd.Series, a_name: str, b_name: str) -> Check:
    """The check of a - b for two cells of one block (rows of Block.measured)."""
    bad = [f"{label(metric)}({n}) is {fmt_value(c['value'], metric)}" for n, c in ((a_name, a), (b_name, b))
           if not math.isfinite(c["value"])]
    if bad:
        return Check(group, item, NO_DATA, "; ".join(bad) + ": left out of the claims", None, 0)
    units = [int(c["repeats"]) * _cell_blocks(c) for c in (a, b)]
    K = min(units)
    if K < 2:
        return Check(group, item, NO_REPEATS, f"{label(metric)}({a_name}) = {fmt_value(a['value'], metric)} vs "
                     f"{label(metric)}({b_name}) = {fmt_value(b['value'], metric)}, K = {a['repeats']} and "
                     f"{b['repeats']}: no interval", None, K)
    differ = [f"{k} {a[k]} vs {b[k]}" for k in ("seed", "N") if a[k] != b[k]]
    differ += [f"blocks {_cell_blocks(a)} vs {_cell_blocks(b)}"] if _cell_blocks(a) != _cell_blocks(b) else []
    if differ:
        return Check(group, item, NO_DATA, f"cells not paired ({', '.join(differ)})", None, K)
    blocked = _cell_blocks(a) > 1
    names = [f"r{k}" for k in range(K)]  # repeat k is images k*N .. (k+1)*N - 1 of both: a grown cell pairs its first K
    ra, rb = a.reindex(names).astype(float), b.reindex(names).astype(float)
    if blocked and metric not in BLOCK_CALIBRATED and not (ra.notna().all() and rb.notna().all()):
        return Check(group, item, UNCALIBRATED, f"{label(metric)}({a_name}) = {fmt_value(a['value'], metric)} vs "
                     f"{label(metric)}({b_name}) = {fmt_value(b['value'], metric)}, all images pooled; no verdict: "
                     f"{BLOCK_UNCALIBRATED}", None, K, (a["run_id"], b["run_id"]))
    if not (ra.notna().all() and rb.notna().all()):
        return Check(group, item, NO_DATA, f"the per-repeat values ({label(metric)}_r0 ..) are missing", None, K)
    if not (ra.map(math.isfinite).all() and rb.map(math.isfinite).all()):
        return Check(group, item, NO_DATA, "a per-repeat value is NaN or infinite: left out of the claims", None, K)
    iv = paired_interval(ra, rb)
    if blocked:
        how = (f"block jackknife over K={K} blocks of {int(a['N']) // _cell_blocks(a):,} images sharing x_T, the pooled "
               f"difference bias-corrected, t on {K - 1} df")
    else:
        how = f"paired over {'the first ' if a['repeats'] != b['repeats'] else ''}K={K} repeats, t on {K - 1} df"
    check = Check(group, item, _verdict(metric, iv), _numbers(metric, a_name, b_name, iv, how), iv, K,
                  (a["run_id"], b["run_id"]))
    if blocked and metric not in BLOCK_CALIBRATED:
        check.verdict, check.evidence = UNCALIBRATED, check.evidence + f"; no verdict: {BLOCK_UNCALIBRATED}"
    return check


def _cell_blocks(cell: pd.Series) -> int:
    """Blocks per repeat of a cell (1: scored whole; older runs lack the field)."""
    value = cell.get("blocks", 1)
    return 1 if value is None or pd.isna(value) else int(value)


def _definition(key: str, metric: str, **values) -> str:
    return text(key, metric=label(metric), direction=direction(metric), **values) + " " + text("paired")


def _blocks(tables: list[ReportTable], numbers: tuple[int, ...], metric: str) -> list[tuple[str, pd.DataFrame, list[str]]]:
    """(where: 'Table n, dataset', the measured cells) of the blocks of one metric (headline or not) in the tables
    asked for, with the rows in the block's order."""
    return [(f"Table {t.spec.number}, {dataset_name(b.dataset)}", b.measured, b.rows) for t in tables
            if t.spec.number in numbers for b in t.measured_blocks(other_metrics=True) if b.metric == metric]


def eta0_best_at_small_S(tables: list[ReportTable], metric: str) -> Claim:
    claim = Claim("eta0_best_small_S", "DDIM (eta=0) is better than every other eta at small S.", metric,
                  _definition("eta0_best_small_S", metric, small_S=SMALL_S), ("better than", "worse than"))
    for where, cells, rows in _blocks(tables, (1, 3), metric):
        claim.checks += [
            paired(metric, f"{where}, S={S}", eta_row_name(eta), cells.loc[("0", S)], cells.loc[(eta, S)], "eta=0",
                   eta_row_name(eta))
            for S in sorted({s for _, s in cells.index if s <= SMALL_S and ("0", s) in cells.index})
            for eta in rows if eta != "0" and (eta, S) in cells.index
        ] or [Check(where, "", NO_DATA, f"no S <= {SMALL_S} with eta=0 and another eta measured")]
    return claim


def improves_with_S(tables: list[ReportTable], metric: str) -> Claim:
    claim = Claim("improves_with_S", "The metric improves as S grows, for every eta.", metric,
                  _definition("improves_with_S", metric), ("improves", "worsens"))
    for where, cells, rows in _blocks(tables, (1, 3), metric):
        for eta in rows:
            steps, group = sorted(s for e, s in cells.index if e == eta), f"{where}, {eta_row_name(eta)}"
            if len(steps) == 1:
                claim.checks.append(Check(group, f"S={steps[0]}", NO_DATA, "1 S measured"))
            claim.checks += [paired(metric, group, f"{s0}->{s1}", cells.loc[(eta, s1)], cells.loc[(eta, s0)], f"S={s1}",
                                    f"S={s0}") for s0, s1 in zip(steps, steps[1:])]
    return claim


def sigma_hat_worse_at_small_S(tables: list[ReportTable], metric: str) -> Claim:
    claim = Claim("sigma_hat_worse_small_S", "The sigma-hat process is far worse than every eta at small S.", metric,
                  _definition("sigma_hat_worse_small_S", metric), ("better than sigma-hat", "not better than sigma-hat"))
    for where, cells, rows in _blocks(tables, (1, 3), metric):
        hat_S = {s for e, s in cells.index if e == SIGMA_HAT}
        shared = sorted(hat_S & {s for e, s in cells.index if e != SIGMA_HAT})
        if not shared:
            claim.checks += [Check(where, "", NO_DATA, "sigma-hat never measured at an S where an eta was measured")
                             ] if hat_S else []
            continue
        S, hat = shared[0], cells.loc[(SIGMA_HAT, shared[0])]
        for eta in [e for e in rows if e != SIGMA_HAT and (e, S) in cells.index]:
            check = paired(metric, f"{where}, S={S}", eta_row_name(eta), cells.loc[(eta, S)], hat, eta_row_name(eta),
                           "sigma-hat")
            base = float(cells.loc[(eta, S), "value"])
            ratio = fmt_number(float(hat["value"]) / base) if base else "undefined (a mean of 0)"
            check.evidence += f"; ratio of means sigma-hat / {eta_row_name(eta)} {ratio}"
            claim.checks.append(check)
    return claim


def recon_falls_with_S(tables: list[ReportTable]) -> Claim:
    claim = Claim("recon_falls_with_S", "Reconstruction error falls as S grows.", Metric.RECON_MSE,
                  text("recon_falls_with_S"), ("falls", "rises"))
    for group, cells, _ in _blocks(tables, (2,), Metric.RECON_MSE):
        cells = cells.droplevel("eta").sort_index()
        for s0, s1 in zip(cells.index, cells.index[1:]):
            a, b = cells.loc[s1], cells.loc[s0]
            if not all(math.isfinite(float(x)) for x in (a["value"], b["value"], a["stderr"], b["stderr"])):
                claim.checks.append(Check(group, f"{s0}->{s1}", NO_DATA, "a value or standard error is NaN or infinite"))
                continue
            iv = welch_interval(a["value"], a["stderr"], a["n_images"], b["value"], b["stderr"], b["n_images"])
            claim.checks.append(Check(group, f"{s0}->{s1}", _verdict(Metric.RECON_MSE, iv), _numbers(
                Metric.RECON_MSE, f"S={s1}", f"S={s0}", iv, f"Welch from the standard errors, {iv.df:.0f} df"), iv,
                runs=(a["run_id"], b["run_id"])))
    return claim


def time_linear_in_S(lines: list[TimingLine]) -> Claim:
    lo, hi = SLOPE_RANGE
    claim = Claim("time_linear_in_S", "Sampling time is linear in the number of steps (Figure 4).", "time",
                  text("time_linear_in_S", r2=R2_MIN, lo=lo, hi=hi))
    for line in lines:
        scope = line.label + (" (from sample jobs)" if line.fallback else "")
        if len(line.points) < 3:
            claim.checks.append(Check(scope, "", NO_DATA, f"{len(line.points)} distinct NFE measured (need >= 3)"))
            continue
        r2, fit = line.linear.r2, line.loglog
        series = " ".join(f"{n}:{fmt_number(s)}" for n, s in zip(line.points["nfe"], line.points["seconds_per_image"]))
        claim.checks.append(Check(scope, "", PASS if r2 >= R2_MIN and lo <= fit.slope <= hi else FAIL,
                                  f"R^2 {r2:.4f}, log-log slope {fit.slope:.3f} (95% CI [{fit.slope_low:.3f}, "
                                  f"{fit.slope_high:.3f}]); seconds per image by NFE [{series}]",
                                  Interval(fit.slope, fit.slope_low, fit.slope_high, len(line.points) - 2)))
    return claim


def rank_agreement(tables: list[ReportTable]) -> list[RankAgreement]:
    """Kendall's tau-b between measured cells and the paper's values over the cells both have, per table block."""
    out = []
    for table in tables:
        for block in table.measured_blocks():
            values, reference = block.measured["value"], block.reference["value"]
            common = sorted(k for k, v in values.items() if k in reference.index and math.isfinite(v))
            if not common:  # e.g. the exact-score grids: no cell of the paper's (S, eta) to compare with
                continue
            tau = kendall_tau([values[k] for k in common], [reference[k] for k in common])
            name = f"Table {table.spec.number}, {dataset_name(block.dataset)}"
            description = f"{name}: measured vs paper" if block.comparable else (
                f"{name} measured vs paper {dataset_name(block.reference_dataset)}: ordering comparison only (values "
                "not comparable)")
            out.append(RankAgreement(table.spec.number, block.dataset, block.reference_dataset, block.comparable,
                                     len(common), tau, block.metric, description))
    return out


def defer_to_corrected(claim: Claim, corrected: Claim) -> None:
    """The checks of a plain Frechet distance that its -inf version (``corrected``) decided too, with the same scope,
    show their numbers but decide nothing (BIASED); cells without the -inf version keep their verdicts."""
    decided = {k.scope for k in corrected.checks if k.interval is not None and k.verdict in (PASS, FAIL, NOISE)}
    for k in claim.checks:
        if k.scope in decided and k.verdict in (PASS, FAIL, NOISE):
            k.verdict = BIASED
            k.evidence += f"; decided on {label(corrected.metric)} (bias-corrected), not on this"


def withhold_verdicts(claim: Claim, reason: str) -> None:
    """The checks of a metric in NOT_FOR_VERDICTS: their numbers stay, their verdicts become UNCALIBRATED."""
    for k in claim.checks:
        if k.verdict in (PASS, FAIL, NOISE):
            k.verdict = UNCALIBRATED
            k.evidence += f"; no verdict: {reason}"


def check_claims(tables: list[ReportTable], lines: list[TimingLine]) -> list[Claim]:
    """Per claim, one entry per metric the sample cells were scored on (headline first), then Tables 2 and Figure 4."""
    metrics = [m for m in SAMPLE_METRICS if _blocks(tables, (1, 3), m)] or [Metric.FID]
    claims = []
    for check in (eta0_best_at_small_S, improves_with_S, sigma_hat_worse_at_small_S):
        by_metric = {m: check(tables, m) for m in metrics}
        for m, corrected in BIAS_CORRECTED.items():
            if m in by_metric and corrected in by_metric:
                defer_to_corrected(by_metric[m], by_metric[corrected])
        for m, reason in NOT_FOR_VERDICTS.items():
            if m in by_metric:
                withhold_verdicts(by_metric[m], reason)
        claims += by_metric.values()
    return claims + [recon_falls_with_S(tables), time_linear_in_S(lines)]


def claims_frame(claims: list[Claim], ranks: list[RankAgreement]) -> pd.DataFrame:
    """claims.csv: every check with its numbers, every claim's verdict, Kendall's tau per table block."""
    data = [{"kind": "claim", "claim": c.key, "metric": c.metric, "scope": k.scope, "verdict": k.verdict, "value": "",
             "evidence": k.evidence, **dict(zip(["estimate", "ci95_low", "ci95_high", "df"], k.interval or ())),
             "K": k.K, **_plan_fields(k.plan)} for c in claims for k in c.checks]
    data += [{"kind": "claim_overall", "claim": c.key, "metric": c.metric, "scope": "all", "verdict": c.verdict,
              "value": "", "evidence": c.definition} for c in claims]
    data += [{"kind": "kendall_tau", "claim": f"table{r.table}", "metric": r.metric, "scope": r.description,
              "verdict": "", "value": r.tau, "evidence": f"{r.n} cells"} for r in ranks]
    return pd.DataFrame(data, columns=["kind", "claim", "metric", "scope", "verdict", "value", "evidence", "estimate",
                                       "ci95_low", "ci95_high", "df", "K", *PLAN_FIELDS])


# claims.csv's planner columns (within-noise checks): repeats (Table 2: images per cell) needed, new images of both
# cells, their network evaluations and sampling seconds, and the smallest |difference| the data at hand detects
PLAN_FIELDS = ["plan_unit", "plan_needed", "plan_new_images", "plan_nfe", "plan_seconds", "detectable"]


def _plan_fields(plan: Plan | None) -> dict:
    if plan is None:
        return {}
    return dict(zip(PLAN_FIELDS, (plan.unit, plan.repeats, plan.images, plan.nfe, plan.seconds, plan.detectable)))


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
    blocks = _cell_blocks(ca)
    return paired_plan(float(d.mean()), float(d.std(ddof=1)), K, int(ca["N"]) // blocks, int(ca["nfe"]), int(cb["nfe"]),
                       rate.seconds_per_image_nfe if rate else None,
                       (int(ca["repeats"]) * blocks, int(cb["repeats"]) * _cell_blocks(cb)),
                       "blocks" if blocks > 1 else "repeats")


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


def attach_plans(claims: list[Claim], runs: RunSet, given: float | None = None) -> dict[str, Rate]:
    """Set ``plan`` on every within-noise check of two runs; returns the rates used, per dataset: the store's, or
    ``given`` seconds per image and NFE for every dataset (a user's GPU rate)."""
    measured = rates(runs)
    if given is not None:
        if not (math.isfinite(given) and given > 0):
            raise HarnessError(f"--rate must be a positive number of seconds per image and NFE, got {given}.")
        measured = {d: Rate(given, 0, "given") for d in set(runs.runs["dataset"])}
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


def plan_text(plan: Plan, rate: Rate | None) -> str:
    """``K=61 (+1,120 new images, 11,200 NFE, ~11 s of CPU sampling); smallest detectable difference at K=5: 6.73``
    (no '|': the line sits in a Markdown table)."""
    unit = plan.unit if plan.unit != "images" else "images per cell"
    at = f"{'n' if plan.unit == 'images' else 'K'}={plan.K}"
    now = f"smallest detectable difference at {at}: {fmt_number(plan.detectable)}"
    if plan.repeats is None:
        return f"difference near 0 (deciding it would take over {MAX_GROWTH}x the {unit} at hand); {now}"
    what = {"repeats": f"K={plan.repeats}", "images": f"n={plan.repeats} images per cell",
            "blocks": f"{plan.repeats * (plan.per_unit or 0):,} images per cell (K={plan.repeats} blocks of "
                      f"{plan.per_unit or 0:,})"}[plan.unit]
    time = ("time unknown (no run of this dataset logged its sampling rate)" if plan.seconds is None else
            f"~{duration(plan.seconds)} of {'sampling at the given rate' if rate.kind == 'given' else rate.kind + ' sampling'}")
    return f"{what} (+{plan.images:,} new images, {plan.nfe:,} NFE, {time}); {now}"


def plan_note(measured: dict[str, Rate]) -> str:
    """How the plans were made and the rates they were priced at."""
    rates_text = "; ".join(f"{d}: {r.seconds_per_image_nfe:.3g} s per image and NFE " + (
        "(given with --rate)" if r.kind == "given" else f"({r.kind}, median of {r.runs} runs)")
        for d, r in sorted(measured.items())) or "none measured"
    return ("To decide (within-noise comparisons): the repeats K (cells scored in blocks: blocks of N/K images, "
            "given as images per cell; Table 2: images n per cell) at which the paired "
            "t-test (Welch for Table 2) would decide the comparison at 95% with 80% power if the observed difference "
            "and spread were the true ones (noncentral t; Cohen 1988, Guenther 1981; harness/report/stats.py), the new "
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
