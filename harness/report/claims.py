"""The paper's qualitative claims checked against the measured cells, each with a verdict and its numbers.

Verdicts: PASS, FAIL, or "not enough runs". A claim is checked per dataset (per dataset and device for timing);
its overall verdict is FAIL if any check fails, PASS if every check that could be made passes, else not enough runs.
The cells are the ones shown in the tables (the same choice among runs), so claims and tables agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..eta import SIGMA_HAT, eta_row_name
from .fits import kendall_tau
from .labels import dataset_name, fmt_number, fmt_value
from .tables import Block, ReportTable
from .timing import TimingLine

PASS, FAIL, NOT_ENOUGH = "PASS", "FAIL", "not enough runs"
SMALL_S = 20  # "small S": the paper's S = 10 and 20
R2_MIN, SLOPE_RANGE = 0.95, (0.8, 1.2)
FALLS_DEFINITION = (
    "For each eta (dataset block) with >= 2 measured S: PASS when the value at the largest measured S is lower than at "
    "the smallest measured S (first vs last). Whether it falls at every step (monotone over all measured S) is "
    "reported with the neighbouring S where it rises, but does not decide the verdict."
)


@dataclass
class Check:
    scope: str
    verdict: str
    evidence: str


@dataclass
class Claim:
    key: str
    statement: str
    definition: str
    checks: list[Check] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        verdicts = {c.verdict for c in self.checks}
        return FAIL if FAIL in verdicts else PASS if PASS in verdicts else NOT_ENOUGH


@dataclass
class RankAgreement:
    table: int
    dataset: str
    reference_dataset: str
    comparable: bool
    n: int
    tau: float

    @property
    def description(self) -> str:
        if self.comparable:
            return f"Table {self.table}, {dataset_name(self.dataset)}: measured vs paper"
        return (f"Table {self.table}, {dataset_name(self.dataset)} measured vs paper {dataset_name(self.reference_dataset)}: "
                "ordering comparison only (values not comparable)")


def _measured(tables: list[ReportTable], numbers: tuple[int, ...]) -> list[tuple[ReportTable, Block, dict]]:
    """(table, block, {(eta, S): value}) of every block with measured cells."""
    return [(t, b, b.measured["value"].dropna().to_dict()) for t in tables if t.number in numbers for b in t.blocks
            if not b.paper_only and len(b.measured)]


def eta0_best_at_small_S(tables: list[ReportTable]) -> Claim:
    claim = Claim(
        "eta0_best_small_S", "DDIM (eta=0) has the lowest FID when S is small.",
        f"At every measured S <= {SMALL_S} (the paper's 10 and 20) where eta=0 and at least one other eta (sigma-hat "
        "included) were measured, FID(eta=0) < FID of every other eta measured at that S.",
    )
    for table, block, vals in _measured(tables, (1, 3)):
        parts, verdicts = [], []
        for s in sorted({s for (_, s) in vals if s <= SMALL_S}):
            others = {e: vals[(e, s)] for e in block.rows if e != "0" and (e, s) in vals}
            if ("0", s) not in vals or not others:
                continue
            ok = all(vals[("0", s)] < v for v in others.values())
            verdicts.append(ok)
            detail = ", ".join(f"{eta_row_name(e)} {fmt_value(v)}" for e, v in others.items())
            parts.append(f"S={s}: eta=0 {fmt_value(vals[('0', s)])} {'<' if ok else 'not <'} all of [{detail}]")
        verdict = NOT_ENOUGH if not verdicts else PASS if all(verdicts) else FAIL
        evidence = "; ".join(parts) or f"no S <= {SMALL_S} with eta=0 and another eta measured"
        claim.checks.append(Check(f"Table {table.number}, {dataset_name(block.dataset)}", verdict, evidence))
    return claim


def _falls(points: dict[int, float], metric: str) -> tuple[str, str]:
    """(verdict, evidence) for 'falls with S': last < first; monotonicity reported."""
    points = sorted(points.items())
    if len(points) < 2:
        return NOT_ENOUGH, f"{len(points)} S measured" if points else "none measured"
    (s0, v0), (s1, v1) = points[0], points[-1]
    rises = [f"S={a}->{b}: {fmt_value(x, metric)}->{fmt_value(y, metric)}"
             for (a, x), (b, y) in zip(points, points[1:]) if y >= x]
    shape = "monotone" if not rises else "not monotone, rises at " + ", ".join(rises)
    series = " ".join(f"{s}:{fmt_value(v, metric)}" for s, v in points)
    return (PASS if v1 < v0 else FAIL,
            f"{fmt_value(v0, metric)} (S={s0}) -> {fmt_value(v1, metric)} (S={s1}) [{series}], {shape}")


def fid_falls_with_S(tables: list[ReportTable]) -> Claim:
    claim = Claim("fid_falls_with_S", "FID falls as S grows, for every eta.", FALLS_DEFINITION)
    for table, block, vals in _measured(tables, (1, 3)):
        for eta in block.rows:
            points = {s: v for (e, s), v in vals.items() if e == eta}
            if points:
                claim.checks.append(Check(f"Table {table.number}, {dataset_name(block.dataset)}, {eta_row_name(eta)}",
                                          *_falls(points, "fid")))
    return claim


def sigma_hat_worse_at_small_S(tables: list[ReportTable]) -> Claim:
    claim = Claim(
        "sigma_hat_worse_small_S", "The sigma-hat process is far worse than every eta at small S.",
        "At the smallest S where sigma-hat and at least one eta were both measured: PASS when FID(sigma-hat) > FID of "
        "every eta measured there; the factor FID(sigma-hat) / FID(eta) is given against the best and the worst eta "
        "(the paper, CIFAR-10, S=10: 367.43 / 41.07 = 8.9 against eta=1).",
    )
    for table, block, vals in _measured(tables, (1, 3)):
        scope = f"Table {table.number}, {dataset_name(block.dataset)}"
        shared = sorted(s for (e, s) in vals if e == SIGMA_HAT and any(o != SIGMA_HAT and t == s for (o, t) in vals))
        if not shared:
            if any(e == SIGMA_HAT for e, _ in vals):
                claim.checks.append(Check(scope, NOT_ENOUGH, "sigma-hat never measured at an S where an eta was measured"))
            continue
        s = shared[0]
        hat = vals[(SIGMA_HAT, s)]
        etas = {e: vals[(e, s)] for e in block.rows if e != SIGMA_HAT and (e, s) in vals}
        (best_e, best), (worst_e, worst) = min(etas.items(), key=lambda kv: kv[1]), max(etas.items(), key=lambda kv: kv[1])
        evidence = (f"S={s}: sigma-hat {fmt_value(hat)} vs " + ", ".join(f"{eta_row_name(e)} {fmt_value(v)}" for e, v in etas.items())
                    + f"; factor {fmt_number(hat / best)}x the best ({eta_row_name(best_e)}), "
                    f"{fmt_number(hat / worst)}x the worst ({eta_row_name(worst_e)})")
        claim.checks.append(Check(scope, PASS if all(hat > v for v in etas.values()) else FAIL, evidence))
    return claim


def recon_falls_with_S(tables: list[ReportTable]) -> Claim:
    claim = Claim("recon_falls_with_S", "Reconstruction error falls as S grows.", FALLS_DEFINITION)
    for _, block, vals in _measured(tables, (2,)):
        claim.checks.append(Check(f"Table 2, {dataset_name(block.dataset)}", *_falls({s: v for (_, s), v in vals.items()}, "mse")))
    return claim


def time_linear_in_S(lines: list[TimingLine]) -> Claim:
    lo, hi = SLOPE_RANGE
    claim = Claim(
        "time_linear_in_S", "Sampling time is linear in the number of steps (Figure 4).",
        f"Per dataset and device, with >= 3 distinct step counts: a straight line seconds_per_image = a + b NFE fits "
        f"with R^2 >= {R2_MIN}, and the log-log slope of hours-for-50k against NFE lies in [{lo}, {hi}] (1 = "
        "proportional, the paper's reading).",
    )
    for line in lines:
        scope = line.label + (" (from sample jobs)" if line.fallback else "")
        if len(line.points) < 3:
            claim.checks.append(Check(scope, NOT_ENOUGH, f"{len(line.points)} distinct NFE measured (need >= 3)"))
            continue
        r2, slope = line.linear.r2, line.loglog.slope
        series = " ".join(f"{n}:{fmt_number(s)}" for n, s in zip(line.points["nfe"], line.points["seconds_per_image"]))
        claim.checks.append(Check(scope, PASS if r2 >= R2_MIN and lo <= slope <= hi else FAIL,
                                  f"R^2 {r2:.4f}, log-log slope {slope:.3f}; seconds per image by NFE [{series}]"))
    return claim


def rank_agreement(tables: list[ReportTable]) -> list[RankAgreement]:
    """Kendall's tau-b between measured cells and the paper's values over the cells both have, per table block."""
    out = []
    for table, block, vals in _measured(tables, (1, 2, 3)):
        common = sorted(k for k in vals if k in block.reference)
        tau = kendall_tau([vals[k] for k in common], [block.reference[k][0] for k in common])
        out.append(RankAgreement(table.number, block.dataset, block.reference_dataset or "-", block.comparable,
                                 len(common), tau))
    return out


def check_claims(tables: list[ReportTable], lines: list[TimingLine]) -> list[Claim]:
    return [eta0_best_at_small_S(tables), fid_falls_with_S(tables), sigma_hat_worse_at_small_S(tables),
            recon_falls_with_S(tables), time_linear_in_S(lines)]
