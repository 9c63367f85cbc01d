"""Where every number came from: the runs behind each table cell and figure, with N, seed, checkpoint sha256,
feature extractor, device, git commit and date; duplicate runs of a cell and the runs that were ignored."""

from __future__ import annotations

import pandas as pd

from .document import Bullets, Para, Section, Table
from .runs import RunSet
from .tables import ReportTable
from .timing import TimingLine

CELL_COLUMNS = ["run_id", "N", "seed", "trajectory", "nfe", "precision", "checkpoint_sha256", "checkpoint_weights",
                "feature_extractor", "device", "device_name", "git_commit", "start_time"]


def _date(ts) -> str:
    return "" if ts is None or pd.isna(ts) else pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M:%S UTC")


def cell_runs(table: ReportTable) -> pd.DataFrame:
    """One line per measured cell of a table: the run that fed it and its settings."""
    data = []
    for block in table.blocks:
        if block.paper_only:
            continue
        for (row, S), cell in sorted(block.measured.items(), key=lambda kv: (block.rows.index(kv[0][0]), kv[0][1])):
            run = block.runs[block.runs["run_id"] == cell.run_id].iloc[0]
            line = {"table": table.number, "dataset": block.dataset, "row": table.row_label(row), "S": S}
            for c in CELL_COLUMNS:
                value = run.get(c)
                line[c] = _date(value) if c == "start_time" else ("" if value is None or pd.isna(value) else value)
            data.append(line)
    return pd.DataFrame(data, columns=["table", "dataset", "row", "S"] + CELL_COLUMNS)


def _distinct(frame: pd.DataFrame, col: str) -> str:
    values = sorted({str(v) for v in frame[col] if str(v) not in ("", "None", "nan")})
    return ", ".join(values) if values else "n/a"


def summary_lines(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return ["no runs"]
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


def timing_runs(lines: list[TimingLine], runs: RunSet) -> pd.DataFrame:
    data = []
    by_id = runs.runs.set_index("run_id")
    for line in lines:
        for run_id in line.run_ids:
            r = by_id.loc[run_id]
            data.append({"dataset": line.dataset, "device": line.device, "source": line.source, "run_id": run_id,
                         "job": r["job"], "S": r["S"], "nfe": r["nfe"], "eta": r["eta"], "batch_size": r["batch_size"],
                         "precision": r["precision"], "threads": r["threads"], "dtype": r["dtype"], "git_commit": r["git_commit"],
                         "start_time": _date(r["start_time"])})
    return pd.DataFrame(data)


def provenance_section(tables: list[ReportTable], lines: list[TimingLine], runs: RunSet,
                       ondemand_lines: list[str] | None = None) -> tuple[Section, pd.DataFrame]:
    """The provenance section and one frame of every cell's run (written as provenance_runs.csv)."""
    sec = Section("Provenance")
    sec.add(Para(f"Tracking store {runs.uri}, experiment {runs.experiment!r}: {len(runs.runs)} FINISHED runs used "
                 f"(one per cell){'; datasets: ' + ', '.join(runs.datasets_filter) if runs.datasets_filter else ''}."))
    frames = []
    for table in tables:
        frame = cell_runs(table)
        frames.append(frame)
        sub = Section(f"Runs behind Table {table.number}", level=3)
        if frame.empty:
            sub.add(Para("No runs."))
        else:
            shown = frame.drop(columns=["table"]).assign(checkpoint_sha256=frame["checkpoint_sha256"].astype(str).str[:12])
            sub.add(Bullets(summary_lines(frame)),
                    Table(shown, f"Table {table.number}: one run per cell (sha256 shortened; full in provenance_runs.csv)"))
        sec.add(sub)
    timing = timing_runs(lines, runs)
    sub = Section("Runs behind Figure 4", level=3)
    sub.add(Table(timing) if not timing.empty else Para("No runs."))
    sec.add(sub)
    sub = Section("Duplicate runs of a cell (newest used)", level=3)
    if runs.superseded:
        items = []
        for d in runs.superseded:
            older = ", ".join(f"{rid} (started {_date(ts)})" for rid, ts in d["older"])
            items.append(f"{d['cell']} [cell {d['key']}]: used run {d['used']} (newest, started {_date(d['used_start'])}); "
                         f"superseded: {older}")
        sub.add(Para("Runs with the same cell_key are the same cell; the newest FINISHED run is used."), Bullets(items))
    else:
        sub.add(Para("None: every cell has one FINISHED run."))
    sec.add(sub)
    sub = Section("Ignored runs", level=3)
    if runs.orphans:
        sub.add(Para(f"{len(runs.orphans)} run(s) left RUNNING by processes that no longer exist (killed or crashed) "
                     f"were marked KILLED when this report was built: {', '.join(runs.orphans)}."))
    if len(runs.ignored):
        sub.add(Bullets([f"{r.run_id} ({r.run_name}): {r.reason}" for r in runs.ignored.itertuples()]))
    else:
        sub.add(Para("None."))
    sec.add(sub)
    if ondemand_lines:
        sec.add(Section("Figures sampled for this report", level=3).add(Bullets(ondemand_lines)))
    all_cells = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(not f.empty for f in frames) \
        else pd.DataFrame(columns=["table", "dataset", "row", "S"] + CELL_COLUMNS)
    return sec, all_cells

