"""The report's sections, from the computed tables, claims and figures: what report.md, index.html and the per-topic
Markdown files say (the templates lay them out).

The paper tables as LaTeX: a booktabs tabular per dataset block through pandas' ``Styler.to_latex``, a table float
per paper table and the standalone document that inputs them (templates/table.tex.j2, tables.tex.j2).

Where every number came from: the runs behind each table cell and figure, with N, seed, checkpoint sha256,
feature extractor, device, git commit and date; duplicate runs of a cell and the runs that were ignored.

``provenance_runs.csv`` keeps every value in full; the displayed tables shorten hashes and times to fit a page.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from harness.diffusion.eta import SIGMA_HAT
from harness.report import claims as C
from harness.report.labels import DAGGER, DASH, ONE_REPEAT, dataset_name, fmt_value, label
from harness.report.render import ENV, Figure, Section, Table, text
from harness.report.runs import RunSet
from harness.report.tables import Block, ReportTable, SamplerView, TimingLine, orders_display
from harness.tracking.store import shown_uri

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
        for metric, space in view.also.items():
            sec.add(Table(view.grid(metric), text("sampler_table", dataset=name, metric=f"{label(metric)} in {space} features")))
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


ESCAPES = str.maketrans({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"})
ENV.filters["latex"] = lambda text: str(text).translate(ESCAPES)  # the templates' |latex


def _cell(text: str) -> str:
    """An already escaped cell: '--' for not run, the dagger and plus-minus as math."""
    if text == DASH or text.startswith(DASH + " ("):
        text = "-" + text
    return text.replace(DAGGER, r"$^{\dagger}$").replace(ONE_REPEAT, r"$^{\ddagger}$").replace("\u00b1", r"$\pm$")


def _row(row: str, table: ReportTable) -> str:
    if table.spec.row is not None:  # one row: named by its metric's short label (MSE)
        return label(table.spec.metric)
    if row == SIGMA_HAT:
        return r"$\hat{\sigma}$"
    value = float(row)
    return rf"$\eta = {f'{value:.1f}' if abs(value * 10 - round(value * 10)) < 1e-9 else row}$"


def _tabular(table: ReportTable, block: Block) -> str:
    grid = block.grid().reindex(columns=table.cols, fill_value=DASH).rename_axis(index=None)
    grid.columns = pd.MultiIndex.from_product([["$S$ (steps)"], grid.columns],
                                              names=[None, r"$\eta$" if table.spec.row is None else ""])
    styler = grid.style.format(_cell, escape="latex").format_index(lambda r: _row(r, table), axis=0)
    return styler.to_latex(hrules=True, column_format="l" + "r" * len(table.cols), multicol_align="c").rstrip()


def table_tex(table: ReportTable) -> str:
    blocks = [(block.label, _tabular(table, block)) for block in table.blocks]
    return ENV.get_template("table.tex.j2").render(title=table.spec.title, key=table.key, blocks=blocks)


def standalone_tex(inputs: list[str]) -> str:
    return ENV.get_template("tables.tex.j2").render(inputs=inputs)


CELL_COLUMNS = ["table", "dataset", "row", "S", "run_id", "N", "seed", "trajectory", "nfe", "precision",
                "checkpoint_sha256", "checkpoint_weights", "feature_extractor", "device", "device_name", "git_commit",
                "start_time"]
TIMING_COLUMNS = ["dataset", "device", "source", "run_id", "job", "S", "nfe", "eta", "batch_size", "precision",
                  "threads", "dtype", "git_commit", "start_time"]


def _date(ts) -> str:
    return "" if ts is None or pd.isna(ts) else pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M:%S UTC")


def compact(frame: pd.DataFrame) -> pd.DataFrame:
    """For display: 12 hex digits of hashes and commits, times to the minute."""
    short = {"checkpoint_sha256": lambda v: str(v)[:12], "start_time": lambda v: str(v)[:16],
             "git_commit": lambda v: re.sub(r"^([0-9a-f]{12})[0-9a-f]+", r"\1", str(v))}
    return frame.assign(**{c: frame[c].map(f) for c, f in short.items() if c in frame})


def cell_runs(table: ReportTable) -> pd.DataFrame:
    """One line per measured cell of a table: the run that fed it and its settings."""
    frames = [b.measured.reset_index().assign(table=table.spec.number, dataset=b.dataset, block=i,
                                              order=lambda f, b=b: f["eta"].map(b.rows.index))
              for i, b in enumerate(table.measured_blocks())]
    if not frames:
        return pd.DataFrame(columns=CELL_COLUMNS)
    cells = pd.concat(frames, ignore_index=True).sort_values(["block", "order", "S"], kind="stable")
    cells = cells.assign(row=cells["eta"].map(table.row_label), start_time=cells["start_time"].map(_date))
    return cells[CELL_COLUMNS].astype(object).fillna("").reset_index(drop=True)


def summary_lines(frame: pd.DataFrame) -> list[str]:
    def distinct(col: str) -> str:
        return ", ".join(sorted({str(v) for v in frame[col]} - {"", "None", "nan"})) or "n/a"

    dates = sorted(d for d in frame["start_time"] if d)
    return [f"runs: {frame['run_id'].nunique()}", f"N per cell: {distinct('N')}", f"seeds: {distinct('seed')}",
            f"trajectories: {distinct('trajectory')}", f"precision: {distinct('precision')}",
            f"checkpoint sha256: {distinct('checkpoint_sha256')} (weights: {distinct('checkpoint_weights')})",
            f"feature extractor: {distinct('feature_extractor')}", f"devices: {distinct('device_name')}",
            f"git commits: {distinct('git_commit')}",
            f"run dates: {dates[0]} to {dates[-1]}" if dates else "run dates: n/a"]


def provenance_section(tables: list[ReportTable], lines: list[TimingLine], runs: RunSet,
                       figures_run: tuple[pd.Series, dict, dict] | None) -> tuple[Section, pd.DataFrame]:
    """The provenance section and one frame of every cell's run (written as provenance_runs.csv)."""
    sec = Section("Provenance", [
        f"Tracking store {shown_uri(runs.uri)}, experiment {runs.experiment!r}: {len(runs.runs)} FINISHED runs used "
        f"(one per cell){'; datasets: ' + ', '.join(runs.datasets_filter) if runs.datasets_filter else ''}."])
    frames = [cell_runs(table) for table in tables]
    for table, frame in zip(tables, frames):
        n = table.spec.number
        sec.add(Section(f"Runs behind Table {n}", ["No runs."] if frame.empty else [summary_lines(frame), Table(
            compact(frame.drop(columns=["table"])), f"Table {n}: one run per cell (hashes, commits and times "
            "shortened; full in provenance_runs.csv)")], level=3))
    timing = [line.runs.assign(dataset=line.dataset, device=line.device, source=line.source) for line in lines]
    timing = pd.concat(timing, ignore_index=True).astype({"nfe": "Int64"})[TIMING_COLUMNS] if timing else None
    sec.add(Section("Runs behind Figure 4", [Table(compact(timing.assign(start_time=timing["start_time"].map(_date))))
                                             if timing is not None else "No runs."], level=3))
    sec.add(Section("Duplicate runs of a cell (newest used)", [
        "Runs with the same cell_key are the same cell; the newest FINISHED run is used.",
        [f"{d['cell']} [cell {d['key']}]: used run {d['used']} (newest, started {_date(d['used_start'])}); superseded: "
         + ", ".join(f"{rid} (started {_date(ts)})" for rid, ts in d["older"]) for d in runs.superseded]]
        if runs.superseded else ["None: every cell has one FINISHED run."], level=3))
    bad = runs.values[~runs.values["value"].map(math.isfinite)].merge(runs.runs[["run_id", "run_name"]], on="run_id")
    sec.add(Section("Non-finite metric values", [
        f"{len(bad)} logged value(s) are NaN or infinite: shown as such in the tables and left out of the claims.",
        *([[f"{r.metric}{'' if pd.isna(r.repeat) else f' (repeat {r.repeat})'} = {fmt_value(r.value)} in run "
            f"{r.run_id} ({r.run_name})" for r in bad.itertuples()]] if len(bad) else [])], level=3))
    ignored = [f"{r.run_id} ({r.run_name}): {r.reason}" for r in runs.ignored.itertuples()]
    sec.add(Section("Ignored runs", [ignored or "None."], level=3))
    sec.add(Section("Orphaned runs", [
        f"{len(runs.orphans)} run(s) left RUNNING by processes that no longer exist (on this host) were marked KILLED "
        "when this report was built" + (": " + ", ".join(runs.orphans) + "." if runs.orphans else ".")], level=3))
    if figures_run is not None:
        run, _, settings = figures_run
        sec.add(Section("Figures 5 and 6", [[text(
            "figures_run", run=run, dataset=dataset_name(run["dataset"]), checkpoint=Path(str(run["checkpoint"])).name,
            started=f"{pd.Timestamp(run['start_time']):%Y-%m-%d %H:%M}", settings=settings)]], level=3))
    return sec, pd.concat([f for f in frames if not f.empty] or frames[:1] or [pd.DataFrame()], ignore_index=True)
