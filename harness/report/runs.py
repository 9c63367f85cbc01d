"""Reading the harness's runs from MLflow: one row per FINISHED run of the harness schema (the newest run per cell),
the runs left out and why, the duplicates superseded, and every logged metric in one long tidy frame.

Two FINISHED runs with the same ``cell_key`` tag are the same cell: the newest (start time) is used and the others
are recorded as superseded, for the provenance section. Timing cells also depend on the machine and the timing
batch size, which the cell key leaves out, so timing runs are deduplicated per (cell_key, device, batch).

Run artifacts the figures are drawn from: a sample run's ``samples.png`` and the newest finished figures job's
``figures.npz`` / ``figures.json``. Read in place from a local artifact store, else downloaded through MLflow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from harness.core.errors import HarnessError
from harness.core.names import REPEAT_STATS, Param, Tag, repeat_stat
from harness.diffusion.eta import eta_label
from harness.tracking.sqlite import sqlite_path
from harness.tracking.store import client as tracking_client
from harness.tracking.store import check_active, reconcile_orphans, shown_uri, store_errors

# The report's column for each param and tag it reads, from the name harness.core.names gives it in the store: a rename
# there is followed here, and the rest of the report reads these columns.
FIELDS = {
    "job": Param.JOB, "dataset": Param.DATASET, "model": Param.MODEL, "checkpoint": Param.CHECKPOINT, "ema": Param.EMA,
    "sampler": Param.SAMPLER, "S": Param.S, "eta": Param.ETA, "trajectory": Param.TRAJECTORY, "nfe": Param.NFE,
    "N": Param.N, "repeats": Param.REPEATS, "blocks": Param.BLOCKS, "seed": Param.SEED, "batch_size": Param.BATCH_SIZE, "T": Param.T,
    "precision": Param.PRECISION, "kind": Tag.KIND, "cell_key": Tag.CELL_KEY, "cell_series": Tag.CELL_SERIES,
    "grown_from": Tag.GROWN_FROM, "git_commit": Tag.GIT_COMMIT,
    "device": Tag.DEVICE, "device_name": Tag.DEVICE_NAME, "threads": Tag.THREADS, "host": Tag.HOST,
    "checkpoint_sha256": Tag.CHECKPOINT_SHA256, "checkpoint_weights": Tag.CHECKPOINT_WEIGHTS,
    "feature_extractor": Tag.FEATURE_EXTRACTOR, "headline_metric": Tag.HEADLINE_METRIC,
    "sampler_order": Tag.SAMPLER_ORDER, "dtype": Tag.DTYPE, "timing_batch_size": Tag.TIMING_BATCH_SIZE,
    "rehearsal": Tag.REHEARSAL,
}
REHEARSAL_BANNER = "REHEARSAL (stand-in files)"  # on every page of a report of rehearsal runs (--rehearsal)
INT_FIELDS = ["S", "nfe", "N", "repeats", "blocks", "seed", "batch_size", "T"]
IDENTITY = ["job", "dataset", "model", "checkpoint", "ema", "S", "eta", "trajectory", "N", "seed", "T", "precision"]
DEFAULTS = {"precision": "fp32", "sampler": "ddim", "repeats": 1, "blocks": 1}  # runs from before these params existed
CELL = ["dataset", "job", "sampler", "S", "eta"]  # the identity columns of the long frame
FIGURES_JOB = "figures"  # Figures 5 and 6: drawn from the newest finished run of this job
PER_MACHINE = {"timing"}  # the jobs whose cells also depend on the machine and batch size (the cell key has neither)
REPEAT = re.compile(r"^(?P<metric>.+)_r(?P<repeat>\d+)$")


@dataclass
class RunSet:
    """The runs a report is built from."""

    uri: str
    experiment: str
    runs: pd.DataFrame  # FINISHED, schema-conforming, deduplicated, dataset-filtered: attributes, params and tags
    values: pd.DataFrame  # long: run_id, dataset, job, sampler, S, eta, metric, repeat (<NA>: the cell's), value
    superseded: list[dict] = field(default_factory=list)  # {key, cell, used, used_start, older: [(run_id, start)]}
    ignored: pd.DataFrame = field(default_factory=pd.DataFrame)  # run_id, status, run_name, reason
    datasets_filter: list[str] | None = None
    datasets_without_runs: list[str] = field(default_factory=list)  # named by --dataset, no finished runs
    orphans: list[str] = field(default_factory=list)  # runs left RUNNING by dead processes, marked KILLED by this report
    rehearsal: bool = False  # the runs are a rehearsal's (stand-in weights and data), and only those

    def cells(self, job: str, metric: str, *extra: str) -> pd.DataFrame:
        """The runs of one job that logged ``metric`` (NaN and inf included): ``value`` (the mean over repeats), its
        summary over repeats (std, min, ci95_low, ci95_high: NaN when absent), each repeat's value (r0, r1, ...) and
        the ``extra`` metrics of the cell (NaN where a run lacks one)."""
        v = self.values
        stats = {repeat_stat(metric, s): s for s in REPEAT_STATS}
        cell = v[v["repeat"].isna()].pivot(index="run_id", columns="metric", values="value")
        cell = cell.reindex(columns=[metric, *stats, *extra]).rename(columns={metric: "value", **stats})
        repeats = v[(v["metric"] == metric) & v["repeat"].notna()].pivot(index="run_id", columns="repeat", values="value")
        logged = v.loc[(v["metric"] == metric) & v["repeat"].isna(), "run_id"]
        runs = self.runs[(self.runs["job"] == job) & self.runs["run_id"].isin(logged)]
        return runs.join(cell, on="run_id").join(repeats.rename(columns=lambda k: f"r{k}"), on="run_id")


def grown_over(runs: pd.DataFrame) -> pd.Series:
    """Per run, whether a larger cell of its series (harness.run.cell: the same cell grown by repeats) is among ``runs``:
    the tables and sampler views take the largest. Runs without the ``cell_series`` tag are a series of one."""
    series = runs["cell_series"].where(runs["cell_series"].notna(), runs["run_id"])
    return runs["repeats"] < runs.groupby(series)["repeats"].transform("max")


def search(uri: str, experiment: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run of the experiment (all statuses): (one row per run: attributes, tags, params; long metrics).
    The report never creates a store, and asks a server once, briefly."""
    if (path := sqlite_path(uri)) and not path.is_file():
        raise HarnessError(
            f"No tracking store at {path}: run some cells first (python -m harness ...) in that "
            "directory, or point --tracking-uri (or MLFLOW_TRACKING_URI) at the store, e.g. --tracking-uri "
            "sqlite:///path/mlflow.db.")
    with store_errors(uri):  # an unreadable database, an unreachable server: one message naming the fix
        client = tracking_client(uri)  # checks the SQLite header; asks a server briefly
        exp = client.get_experiment_by_name(experiment)
        check_active(exp, uri, "pass --experiment NAME")
        if exp is None:
            names = sorted(e.name for e in client.search_experiments())
            raise HarnessError(f"The tracking store {shown_uri(uri)} has no experiment {experiment!r} (it has: "
                               f"{', '.join(names) or 'none'}); pass --experiment NAME.")
        page = client.search_runs([exp.experiment_id], max_results=5000)
        runs = list(page)
        while page.token:
            page = client.search_runs([exp.experiment_id], max_results=5000, page_token=page.token)
            runs += page
    rows = [{**r.data.tags, **r.data.params, "run_id": r.info.run_id, "status": r.info.status,
             "run_name": r.info.run_name, "start_time": r.info.start_time, "artifact_uri": r.info.artifact_uri}
            for r in runs]
    values = [(r.info.run_id, k, v) for r in runs for k, v in r.data.metrics.items()]
    return pd.DataFrame(rows), pd.DataFrame(values, columns=["run_id", "name", "value"])


def _eta(value) -> str | None:
    try:
        return None if pd.isna(value) else eta_label(value)
    except HarnessError:
        return None


def normalize(raw: pd.DataFrame) -> pd.DataFrame:
    """The report's columns (FIELDS; None where a run lacks one), typed, with defaults for older runs."""
    features = [c for c in raw.columns if c.startswith(Tag.FEATURES_PREFIX)]  # the report's columns too
    out = raw.rename(columns={v: k for k, v in FIELDS.items()})
    out = out.reindex(columns=["run_id", "status", "run_name", "start_time", "artifact_uri", *FIELDS, *features])
    out = out.astype(object).where(out.notna(), None)
    out["start_time"] = pd.to_datetime(raw["start_time"], unit="ms", utc=True)
    for p in INT_FIELDS:
        out[p] = pd.to_numeric(out[p], errors="coerce").astype("Int64")
    out = out.fillna(DEFAULTS)
    out["eta"] = out["eta"].map(_eta)
    sha = out["checkpoint_sha256"].fillna("").astype(str)
    weights = out["checkpoint_weights"].where(out["checkpoint_weights"].notna(), "ema=" + out["ema"].astype(str))
    out["checkpoint_id"] = [f"{s[:12]}/{w}" if s and s != "None" else f"{c}/{w}"
                            for s, c, w in zip(sha, out["checkpoint"], weights)]
    out["key"] = out.apply(_key, axis=1)
    return out


def _key(r: pd.Series) -> str:
    """The deduplication key: cell_key (hash of the identity params when missing), plus machine and batch for the
    jobs in PER_MACHINE."""
    key = r["cell_key"] if isinstance(r["cell_key"], str) and r["cell_key"] else None
    if key is None:
        blob = "|".join(str(r[p]) for p in IDENTITY)
        key = "params:" + hashlib.sha256(blob.encode()).hexdigest()[:16]
    if r["job"] in PER_MACHINE:
        batch = r["timing_batch_size"] if isinstance(r["timing_batch_size"], str) else r["batch_size"]
        key += f"|{r['device_name']}|{batch}"
    return key


def dedupe(df: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Keep the newest run of each key; return the kept runs and the superseded ones per key."""
    df = df.sort_values("start_time", ascending=False, kind="stable")
    superseded = [{"key": key, "cell": g["run_name"].iloc[0], "used": g["run_id"].iloc[0],
                   "used_start": g["start_time"].iloc[0], "older": list(zip(g["run_id"][1:], g["start_time"][1:]))}
                  for key, g in df.groupby("key", sort=False) if len(g) > 1]
    kept = df.drop_duplicates("key", keep="first")
    return kept.sort_values(["job", "dataset", "eta", "S"], kind="stable").reset_index(drop=True), superseded


def tidy(values: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The long frame: one line per (run, metric, repeat); ``fid_r2`` is metric fid of repeat 2, ``fid`` the cell's."""
    parts = values["name"].str.extract(REPEAT)
    big = values["value"].abs() >= sys.float_info.max  # MLflow stores an infinite value as the largest float
    values = values.assign(metric=parts["metric"].fillna(values["name"]),
                           repeat=pd.to_numeric(parts["repeat"]).astype("Int64"),
                           value=values["value"].where(~big, np.sign(values["value"]) * np.inf))
    cells = runs[["run_id", *CELL]]
    return cells.merge(values[["run_id", "metric", "repeat", "value"]], on="run_id")


def load_runs(uri: str, experiment: str, datasets: list[str] | None = None, rehearsal: bool = False) -> RunSet:
    """FINISHED runs of the harness schema, deduplicated, optionally restricted to some datasets. Runs of a rehearsal
    (harness.rehearsal: stand-in files) are never mixed with real ones: ``rehearsal`` takes only them, else they are
    left out (listed among the ignored runs)."""
    raw, values = search(uri, experiment)
    orphans = []
    if raw.empty:  # none ever, or all deleted (a search with no runs has no columns either)
        raise HarnessError(f"The experiment {experiment!r} in {shown_uri(uri)} has no runs yet: run python -m harness first.")
    if (raw["status"] == "RUNNING").any():  # a process killed mid-run left it RUNNING: marked KILLED, then read again

        orphans = reconcile_orphans(uri, experiment)
        if orphans:
            raw, values = search(uri, experiment)
    df = normalize(raw)
    df = df[df["kind"] != "sweep"]  # a multirun's parent run holds its summary, not a cell
    finished = df["status"] == "FINISHED"
    cell = df[["job", "dataset", "S", "eta"]].notna().all(axis=1)
    ignored = pd.concat([
        df[~finished].assign(reason=lambda f: "status " + f["status"].astype(str)),
        df[finished & ~cell].assign(reason="not a harness cell (job, dataset, S or eta missing)"),
    ])[["run_id", "status", "run_name", "reason"]]
    df = df[finished & cell]
    staged = df["rehearsal"].astype(str).str.lower() == "true"
    ignored = pd.concat([ignored, df[staged != rehearsal].assign(reason=(
        "not a rehearsal run (the report without --rehearsal shows it)" if rehearsal else
        "rehearsal run on stand-in files (python -m harness.report --rehearsal shows the rehearsal)"))[
        ["run_id", "status", "run_name", "reason"]]])
    if not df.empty and not (staged == rehearsal).any():
        raise HarnessError(f"The experiment {experiment!r} in {uri} has only "
                           + ("real runs, no rehearsal runs: drop --rehearsal." if rehearsal else
                              "rehearsal runs (stand-in files), which a report of real runs leaves out: run the paper's "
                              "presets, or pass --rehearsal for a report of the rehearsal."))
    df = df[staged == rehearsal]
    without_runs = []
    if datasets:
        available = sorted(set(df["dataset"]))
        without_runs = [d for d in datasets if d not in available]
        if len(without_runs) == len(datasets):
            raise HarnessError(f"No finished runs for --dataset {' '.join(datasets)} in {shown_uri(uri)}; datasets with finished "
                               f"runs: {', '.join(available) or 'none'}.")
        df = df[df["dataset"].isin(datasets)]
    if df.empty:
        raise HarnessError(f"The experiment {experiment!r} in {shown_uri(uri)} has no FINISHED runs: run python -m harness first.")
    kept, superseded = dedupe(df)
    return RunSet(uri, experiment, kept, tidy(values, kept), superseded, ignored.reset_index(drop=True),
                  list(datasets) if datasets else None, without_runs, orphans, rehearsal)


log = logging.getLogger(__name__)


def fetch(uri: str, run: pd.Series, name: str, tmp: Path) -> Path | None:
    """The run's artifact ``name``, or None when it has none (or the artifact store cannot be reached)."""
    location = run.get("artifact_uri")
    if isinstance(location, str) and location.startswith("file:"):
        local = Path(unquote(urlparse(location).path)) / name
        if local.is_file():
            return local
    import mlflow  # lazy: mlflow takes seconds to import: only when a store is opened

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run["run_id"], artifact_path=name,
                                                        dst_path=str(tmp / run["run_id"]), tracking_uri=uri))
    except Exception as err:  # a run without the artifact, an unreachable artifact store
        log.debug("no %s for run %s: %s", name, run["run_id"], err)
        return None


def figures_images(uri: str, runs: pd.DataFrame, tmp: Path) -> tuple[pd.Series, dict, dict] | None:
    """(run, images, settings) of the newest figures run with both artifacts, or None."""
    for _, run in runs[runs["job"] == FIGURES_JOB].sort_values("start_time", ascending=False).iterrows():
        arrays, settings = fetch(uri, run, "figures.npz", tmp), fetch(uri, run, "figures.json", tmp)
        if arrays is not None and settings is not None:
            with np.load(arrays) as data:
                return run, {k: data[k] for k in data.files}, json.loads(settings.read_text())
    return None
