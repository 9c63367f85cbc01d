"""The report's sections, from the computed tables, claims and figures: what report.md, index.html and the per-topic
Markdown files say (the templates lay them out)."""

from __future__ import annotations

import math

import pandas as pd

from harness.tracking.store import shown_uri
from harness.report import claims as C
from harness.report.labels import dataset_name, label
from harness.report.render import Figure, Section, Table, text
from harness.report.runs import RunSet
from harness.report.samplers import SamplerView, orders_display
from harness.report.tables import ReportTable
from harness.report.timing import TimingLine

SAYS = {C.PASS: "holds on", C.FAIL: "fails on", C.NOISE: "within noise on", C.NO_REPEATS: "not enough repeats on",
        C.NO_DATA: "not enough data on", C.BIASED: "decided on the -inf version, not on",
        C.UNCALIBRATED: "no verdict (uncalibrated) on"}


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


def rehearsal_note() -> str:
    return ("Every run of this report is a rehearsal (python -m harness.rehearsal): the paper's presets at tiny N and S "
            "on the CPU, with stand-in files in the real formats (random network and Inception weights, random "
            "images). Its numbers test the code paths, not the paper: they are not results. A report of real runs "
            "(without --rehearsal) leaves rehearsal runs out.")


def summary_section(runs: RunSet, claims: list[C.Claim], latex_summary: str | None) -> Section:
    jobs = runs.runs["job"].value_counts().sort_index()
    sec = Section("Summary", [
        f"Generated {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M UTC} from {shown_uri(runs.uri)} (experiment "
        f"{runs.experiment!r}): {len(runs.runs)} runs ({', '.join(f'{n} {j}' for j, n in jobs.items())}), datasets "
        f"{', '.join(sorted(set(runs.runs['dataset'])))}."])
    if runs.datasets_without_runs:
        sec.add(f"No finished runs for --dataset {', '.join(runs.datasets_without_runs)}.")
    sec.add(Table(verdict_table(claims), "The paper's claims: verdict per metric"), plain_verdicts(claims))
    return sec.add(latex_summary) if latex_summary else sec


def claims_sections(claims: list[C.Claim], ranks: list[C.RankAgreement], plan_note: str | None = None) -> list[Section]:
    """The claims, each check with its numbers and, where within noise, the planner's line (``plan_note`` says how)."""
    sec = Section("Claims", [text("claims"), *([plan_note] if plan_note else []),
                             Table(verdict_table(claims), "Verdict per claim and metric")])
    for statement in dict.fromkeys(c.statement for c in claims):
        sub = sec.add(Section(statement, level=3)).blocks[-1]
        for c in [c for c in claims if c.statement == statement]:
            planned = any(k.plan_line for k in c.checks)
            frame = pd.DataFrame([{"scope": k.scope, "verdict": k.verdict, "numbers": k.evidence,
                                   **({"to decide (95%, power 80%)": k.plan_line} if planned else {})}
                                  for k in c.checks])
            sub.add(Section(f"{label(c.metric)}: {c.verdict}", ["Definition: " + c.definition], level=4).add(
                *([c.where, Table(frame)] if c.checks else ["No cells to check: not enough runs."])))
    frame = pd.DataFrame([{"comparison": r.description, "cells": r.n,
                           "tau": "n/a (< 2 cells)" if math.isnan(r.tau) else f"{r.tau:.3f}"} for r in ranks])
    return [sec, Section("Rank agreement with the paper (Kendall tau-b)",
                         [text("rank_agreement"), Table(frame) if ranks else "No measured cells."])]


def sampler_section(views: list[SamplerView], figures: dict[str, Figure]) -> Section:
    """Samplers at equal NFE: per dataset a table of the headline metric, the measured orders, a figure."""
    sec = Section("Samplers at equal NFE", [text("samplers", compared=bool(views))])
    for view in views:
        name = dataset_name(view.dataset)
        sec.add(Table(view.grid(), text("sampler_table", dataset=name, metric=label(view.metric))), *view.notes)
        if view.orders is not None:
            sec.add(Table(orders_display(view.orders), text("orders", dataset=name)))
        sec.add(figures[view.dataset])
    return sec


def timing_blocks(lines: list[TimingLine], figure: Figure) -> list:
    blocks = [figure, text("timing_source", lines=bool(lines), fallback=any(line.fallback for line in lines))]
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


def figures_section(timing: list, metric_figures: list[Figure], grids: list[tuple[Figure, list[str]]],
                    figures_56: list[Figure] | None) -> Section:
    """Figure 4, each metric against NFE per eta, the sample grids (Figure 3) and Figures 5/6."""
    sec = Section("Figures", [*timing, *metric_figures])
    for figure, missing in grids:
        sec.add(figure, *(["Runs without a samples.png artifact: " + "; ".join(missing) + "."] if missing else []))
    return sec.add(*figures_56) if figures_56 is not None else sec.add(text("no_figures_run"))
