"""The report's sections, from the computed tables, claims and figures: what report.md, index.html and the per-topic
Markdown files say (the templates lay them out)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from . import claims as C
from .labels import dataset_name, label, store_name
from .render import Figure, Section, Table
from .runs import RunSet
from .samplers import SamplerView, caption, orders_display
from .tables import ReportTable
from .timing import TimingLine

SAYS = {C.PASS: "holds on", C.FAIL: "fails on", C.NOISE: "within noise on", C.NO_REPEATS: "not enough repeats on",
        C.NO_DATA: "not enough data on"}
ERROR_BARS = "error bars: the 95% interval over the cell's repeats (none where K=1)."


def table_section(table: ReportTable, files: list[str]) -> Section:
    sec = Section(table.spec.title, list(table.notes))
    if not table.blocks:
        sec.add("No runs for this table among the datasets of this report.")
    others = []  # a dataset's other metrics follow its headline block and the paper's block beside it
    for block in table.blocks:
        if not block.paper_only:
            sec.add(*others)
            others = [Table(table.block_frame(b), b.label) for b in table.metric_blocks.get(block.dataset, [])]
        sec.add(Table(table.block_frame(block), block.label), *block.notes)
    return sec.add(*others, "Files: " + ", ".join(files))


def verdict_table(claims: list[C.Claim]) -> pd.DataFrame:
    """One row per claim, one column per metric: the verdicts."""
    frame = pd.DataFrame([{"claim": c.statement, "metric": label(c.metric), "verdict": c.verdict} for c in claims])
    return frame.pivot(index="claim", columns="metric", values="verdict").reindex(
        index=list(dict.fromkeys(frame["claim"])), columns=list(dict.fromkeys(frame["metric"]))).fillna("").reset_index()


def plain_verdicts(claims: list[C.Claim]) -> list[str]:
    """Which of the paper's orderings hold on which metric, in words."""
    lines = []
    for statement in dict.fromkeys(c.statement for c in claims):
        group = [c for c in claims if c.statement == statement]
        said = [f"{SAYS[v]} " + " and ".join(label(c.metric) for c in group if c.verdict == v)
                for v in SAYS if any(c.verdict == v for c in group)]
        lines.append(f"{statement.rstrip('.')}: " + "; ".join(said) + ".")
    return lines


def summary_section(runs: RunSet, claims: list[C.Claim], latex_summary: str | None) -> Section:
    jobs = runs.runs["job"].value_counts().sort_index()
    sec = Section("Summary", [
        f"Generated {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M UTC} from {store_name(runs.uri)} (experiment "
        f"{runs.experiment!r}): {len(runs.runs)} runs ({', '.join(f'{n} {j}' for j, n in jobs.items())}), datasets "
        f"{', '.join(sorted(set(runs.runs['dataset'])))}."])
    if runs.datasets_without_runs:
        sec.add(f"No finished runs for --dataset {', '.join(runs.datasets_without_runs)}.")
    sec.add(Table(verdict_table(claims), "The paper's claims: verdict per metric"), plain_verdicts(claims))
    return sec.add(latex_summary) if latex_summary else sec


def claims_sections(claims: list[C.Claim], ranks: list[C.RankAgreement]) -> list[Section]:
    sec = Section("Claims", [
        "Verdicts: PASS (the 95% interval of the compared difference lies wholly on the claimed side), FAIL (wholly "
        "on the other side), within noise (the interval contains 0), not enough repeats (a cell measured once), not "
        "enough data (a NaN or infinite value, cells not paired, a cell not run). A claim's verdict: FAIL if any check "
        "fails, PASS if every decided check passes, else within noise; checks without enough repeats or data decide "
        "nothing (and a claim none of whose checks could be decided says so).",
        Table(verdict_table(claims), "Verdict per claim and metric")])
    for statement in dict.fromkeys(c.statement for c in claims):
        sub = sec.add(Section(statement, level=3)).blocks[-1]
        for c in [c for c in claims if c.statement == statement]:
            frame = pd.DataFrame([{"scope": k.scope, "verdict": k.verdict, "numbers": k.evidence} for k in c.checks])
            sub.add(Section(f"{label(c.metric)}: {c.verdict}", ["Definition: " + c.definition], level=4).add(
                *([c.where, Table(frame)] if c.checks else ["No cells to check: not enough runs."])))
    frame = pd.DataFrame([{"comparison": r.description, "cells": r.n,
                           "tau": "n/a (< 2 cells)" if math.isnan(r.tau) else f"{r.tau:.3f}"} for r in ranks])
    return [sec, Section("Rank agreement with the paper (Kendall tau-b)", [
        "Kendall's tau-b between the measured values and the paper's over the cells both have (1 = same ordering, -1 = "
        "reversed). For a dataset the paper did not use (digits) the comparison is against the paper's CIFAR-10 block "
        "and is an ordering comparison only: the values are not comparable.",
        Table(frame) if ranks else "No measured cells."])]


def sampler_section(views: list[SamplerView], figures: dict[str, tuple[Path, Path]]) -> Section:
    """Samplers at equal NFE: per dataset a table of the headline metric, the measured orders, a figure."""
    sec = Section("Samplers at equal NFE", [
        "Samplers compared at the same number of network evaluations per image (NFE, as the runs counted it). "
        "Tables 1-3 hold DDIM-family runs only (sampler ddim). Every cell: samplers_long.csv."
        if views else "No dataset was run with more than one sampler: nothing to compare here."])
    for view in views:
        name = dataset_name(view.dataset)
        sec.add(Table(view.grid(), caption(view)), *view.notes)
        if view.orders is not None:
            sec.add(Table(orders_display(view.orders), f"{name}: measured order of each deterministic sampler (minus "
                          "the log-log slope of flow_rmse against NFE, with its 95% interval) beside its theoretical order"))
        sec.add(Figure(figures[view.dataset][0], f"{name}: each metric against NFE (log x), one line per sampler; "
                       f"{ERROR_BARS}", figures[view.dataset][1]))
    return sec


def timing_blocks(lines: list[TimingLine], png: Path, pdf: Path) -> list:
    source = ("Timing jobs (hours_50k)" if lines and not any(line.fallback for line in lines) else
              "Timing jobs where present; lines marked [from sample jobs] have no timing jobs and use the sample "
              "jobs' seconds_per_image * 50000 / 3600 instead" if lines else "No timing or sample runs")
    blocks = [Figure(png, "Figure 4: hours to sample 50,000 images vs number of network evaluations (log-log), one "
                          "line per dataset/device with its fitted log-log slope; grey: the paper's reading (about 20 h "
                          "for 1000 steps on CIFAR-10 and nearly 1000 h at 256x256 on one 2080 Ti, linear in S).", pdf),
              f"Source: {source}."]
    if lines:
        blocks.append(Table(pd.DataFrame([{
            "dataset": dataset_name(line.dataset), "device": line.device,
            "source": "sample jobs (fallback)" if line.fallback else "timing jobs",
            "NFE": " ".join(map(str, line.points["nfe"])),
            "hours for 50k": " ".join(f"{h:.3g}" for h in line.points["hours"]),
            "log-log slope": f"{line.loglog.slope:.3f}" if not math.isnan(line.loglog.slope) else "n/a",
            "R^2 (linear)": f"{line.linear.r2:.4f}" if not math.isnan(line.linear.r2) else "n/a"} for line in lines]),
            "Figure 4 data"))
    return blocks


def figures_section(timing: list, metric_figures: list, grids: list, figures_56: list | None) -> Section:
    """Figure 4, each metric against NFE per eta, the sample grids (Figure 3) and Figures 5/6."""
    sec = Section("Figures", list(timing))
    for ds, png, pdf in metric_figures:
        sec.add(Figure(png, f"{dataset_name(ds)}: each metric against the network evaluations per image (log x), one "
                            f"line per eta; {ERROR_BARS}", pdf))
    for ds, png, pdf, missing in grids:
        sec.add(Figure(png, f"{dataset_name(ds)}: the first samples of each (eta, S) run (samples.png artifacts), as "
                            "the paper's Figure 3. Within a row the images share x_T (same seed).", pdf))
        if missing:
            sec.add("Runs without a samples.png artifact: " + "; ".join(missing) + ".")
    if figures_56 is None:
        return sec.add("Figures 5 and 6 (consistency, interpolation): no finished figures run in the store; run "
                       "python -m harness job=figures")
    return sec.add(*[Figure(png, caption, pdf) for caption, png, pdf in figures_56])
