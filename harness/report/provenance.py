"""Where every number came from: the runs behind each table cell and figure, with N, seed, checkpoint sha256,
feature extractor, device, git commit and date; duplicate runs of a cell and the runs that were ignored.

``provenance_runs.csv`` keeps every value in full; the displayed tables shorten hashes and times to fit a page."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from .document import Bullets, Para, Section, Table
from .labels import dataset_name, fmt_value, store_name
from .runs import RunSet
from .tables import ReportTable
from .timing import TimingLine

CELL_COLUMNS = ["run_id", "N", "seed", "trajectory", "nfe", "precision", "checkpoint_sha256", "checkpoint_weights",
                "feature_extractor", "device", "device_name", "git_commit", "start_time"]
TIMING_COLUMNS = ["run_id", "job", "S", "nfe", "eta", "batch_size", "precision", "threads", "dtype", "git_commit",
                  "start_time"]


def _date(ts) -> str:
    return "" if ts is None or pd.isna(ts) else pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M:%S UTC")


def compact(frame: pd.DataFrame) -> pd.DataFrame:
    """For display: 12 hex digits of hashes and commits, times to the minute."""
    short = {"checkpoint_sha256": lambda v: str(v)[:12],
             "git_commit": lambda v: re.sub(r"^([0-9a-f]{12})[0-9a-f]+", r"\1", str(v)),
             "start_time": lambda v: str(v)[:16]}
    return frame.assign(**{c: frame[c].map(f) for c, f in short.items() if c in frame})


def cell_runs(table: ReportTable) -> pd.DataFrame:
    """One line per measured cell of a table: the run that fed it and its settings."""
    frames = [b.measured.reset_index().assign(table=table.spec.number, dataset=b.dataset, block=i,
                                              order=lambda f, b=b: f["eta"].map(b.rows.index))
              for i, b in enumerate(table.blocks) if not b.paper_only and len(b.measured)]
    if not frames:
        return pd.DataFrame(columns=["table", "dataset", "row", "S", *CELL_COLUMNS])
    cells = pd.concat(frames, ignore_index=True).sort_values(["block", "order", "S"], kind="stable")
    cells = cells.assign(row=cells["eta"].map(table.row_label), start_time=cells["start_time"].map(_date))
    return cells[["table", "dataset", "row", "S", *CELL_COLUMNS]].astype(object).fillna("").reset_index(drop=True)


def _distinct(frame: pd.DataFrame, col: str) -> str:
    values = sorted({str(v) for v in frame[col] if str(v) not in ("", "None", "nan")})
    return ", ".join(values) if values else "n/a"


def summary_lines(frame: pd.DataFrame) -> list[str]:
    dates = sorted(d for d in frame["start_time"] if d)
    return [
        f"runs: {frame['run_id'].nunique()}",
        f"N per cell: {_distinct(frame, 'N')}",
        f"seeds: {_distinct(frame, 'seed')}",
        f"trajectories: {_distinct(frame, 'trajectory')}",
        f"precision: {_distinct(frame, 'precision')}",
        f"checkpoint sha256: {_distinct(frame, 'checkpoint_sha256')} (weights: {_distinct(frame, 'checkpoint_weights')})",
        f"feature extractor: {_distinct(frame, 'feature_extractor')}",
        f"devices: {_distinct(frame, 'device_name')}",
        f"git commits: {_distinct(frame, 'git_commit')}",
        f"run dates: {dates[0]} to {dates[-1]}" if dates else "run dates: n/a",
    ]


def timing_runs(lines: list[TimingLine]) -> pd.DataFrame:
    frames = [line.runs.assign(dataset=line.dataset, device=line.device, source=line.source) for line in lines]
    if not frames:
        return pd.DataFrame()
    runs = pd.concat(frames, ignore_index=True).assign(nfe=lambda f: f["nfe"].astype("Int64"))
    return runs[["dataset", "device", "source", *TIMING_COLUMNS]].assign(start_time=runs["start_time"].map(_date))


def figures_line(run: pd.Series, settings: dict) -> str:
    """Where Figures 5 and 6 came from: the figures run, its checkpoint (by name) and settings."""
    return (f"Figures 5 and 6 come from the figures run {run['run_id']} ({pd.Timestamp(run['start_time']):%Y-%m-%d %H:%M} "
            f"UTC): {dataset_name(run['dataset'])}, checkpoint {Path(str(run['checkpoint'])).name} (sha256 "
            f"{run['checkpoint_sha256']}), trajectory {settings['trajectory']}, seed {settings['seed']}, eta=0, S "
            f"{settings['consistency_S']} (consistency) and {settings['interpolation_S']} (interpolation).")


def provenance_section(tables: list[ReportTable], lines: list[TimingLine], runs: RunSet,
                       figures_run: tuple[pd.Series, dict] | None) -> tuple[Section, pd.DataFrame]:
    """The provenance section and one frame of every cell's run (written as provenance_runs.csv)."""
    sec = Section("Provenance")
    sec.add(Para(f"Tracking store {store_name(runs.uri)}, experiment {runs.experiment!r}: {len(runs.runs)} FINISHED runs "
                 f"used (one per cell){'; datasets: ' + ', '.join(runs.datasets_filter) if runs.datasets_filter else ''}."))
    frames = []
    for table in tables:
        frame = cell_runs(table)
        frames.append(frame)
        sub = Section(f"Runs behind Table {table.spec.number}", level=3)
        if frame.empty:
            sub.add(Para("No runs."))
        else:
            sub.add(Bullets(summary_lines(frame)),
                    Table(compact(frame.drop(columns=["table"])), f"Table {table.spec.number}: one run per cell (hashes, "
                          "commits and times shortened; full in provenance_runs.csv)"))
        sec.add(sub)
    timing = timing_runs(lines)
    sec.add(Section("Runs behind Figure 4", level=3).add(Table(compact(timing)) if not timing.empty else Para("No runs.")))
    sub = Section("Duplicate runs of a cell (newest used)", level=3)
    if runs.superseded:
        sub.add(Para("Runs with the same cell_key are the same cell; the newest FINISHED run is used."), Bullets([
            f"{d['cell']} [cell {d['key']}]: used run {d['used']} (newest, started {_date(d['used_start'])}); "
            "superseded: " + ", ".join(f"{rid} (started {_date(ts)})" for rid, ts in d["older"])
            for d in runs.superseded]))
    else:
        sub.add(Para("None: every cell has one FINISHED run."))
    sec.add(sub)
    bad = runs.values[~runs.values["value"].map(math.isfinite)].merge(runs.runs[["run_id", "run_name"]], on="run_id")
    sub = Section("Non-finite metric values", level=3).add(Para(
        f"{len(bad)} logged value(s) are NaN or infinite: shown as such in the tables and left out of the claims."))
    sec.add(sub.add(Bullets([f"{r.metric}{'' if pd.isna(r.repeat) else f' (repeat {r.repeat})'} = {fmt_value(r.value)} "
                             f"in run {r.run_id} ({r.run_name})" for r in bad.itertuples()])) if len(bad) else sub)
    ignored = [f"{r.run_id} ({r.run_name}): {r.reason}" for r in runs.ignored.itertuples()]
    sec.add(Section("Ignored runs", level=3).add(Bullets(ignored) if ignored else Para("None.")))
    if figures_run is not None:
        sec.add(Section("Figures 5 and 6", level=3).add(Bullets([figures_line(*figures_run)])))
    return sec, pd.concat([f for f in frames if not f.empty] or [frames[0]], ignore_index=True)
