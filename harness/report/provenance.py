"""Where every number came from: the runs behind each table cell and figure, with N, seed, checkpoint sha256,
feature extractor, device, git commit and date; duplicate runs of a cell and the runs that were ignored.

``provenance_runs.csv`` keeps every value in full; the displayed tables shorten hashes and times to fit a page."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from harness.tracking.store import shown_uri
from harness.report.labels import dataset_name, fmt_value
from harness.report.render import Section, Table, text
from harness.report.runs import RunSet
from harness.report.tables import ReportTable
from harness.report.timing import TimingLine

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
