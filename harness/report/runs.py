"""Loading the harness's runs from MLflow into one tidy DataFrame, FINISHED only, one run per cell.

Two FINISHED runs with the same ``cell_key`` tag are the same cell: the newest (start time) is used and the
others are recorded as superseded, for the provenance section. Timing cells also depend on the machine and the
timing batch size, which the cell key leaves out, so timing runs are deduplicated per (cell_key, device, batch).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import HarnessError
from .labels import eta_label

PARAMS = ["job", "dataset", "model", "checkpoint", "ema", "S", "eta", "trajectory", "nfe", "N", "seed", "batch_size", "T",
          "precision"]
INT_PARAMS = ["S", "nfe", "N", "seed", "batch_size", "T"]
TAGS = [
    "cell_key", "git_commit", "device", "device_name", "threads", "host", "cell_dir", "checkpoint_sha256",
    "checkpoint_path", "checkpoint_weights", "feature_extractor", "fid_reference", "dtype", "timing_batch_size",
]
METRICS = [
    "fid", "sampling_seconds", "seconds_per_image", "images_per_second", "seconds_per_nfe_image", "images_sampled",
    "recon_mse", "recon_mse_stderr", "n_images", "recon_seconds", "nfe_per_image",
    "seconds_per_batch", "seconds_per_batch_min", "seconds_per_batch_max", "seconds_per_nfe", "hours_50k",
]
IDENTITY = ["job", "dataset", "model", "checkpoint", "ema", "S", "eta", "trajectory", "N", "seed", "T", "precision"]
DEFAULT_PRECISION = "fp32"  # runs from before the precision param existed ran in fp32


@dataclass
class RunSet:
    """The runs a report is built from."""

    uri: str
    experiment: str
    runs: pd.DataFrame  # FINISHED, schema-conforming, deduplicated, dataset-filtered
    superseded: list[dict] = field(default_factory=list)  # {key, used, used_start, older: [(run_id, start)]}
    ignored: pd.DataFrame = field(default_factory=pd.DataFrame)  # run_id, status, run_name, reason
    datasets_filter: list[str] | None = None
    datasets_without_runs: list[str] = field(default_factory=list)  # named by --dataset, no finished runs
    orphans: list[str] = field(default_factory=list)  # runs left RUNNING by dead processes, marked KILLED by this report

    def job(self, name: str) -> pd.DataFrame:
        return self.runs[self.runs["job"] == name]


def _check_store(uri: str) -> None:
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):])
        if not path.is_file():
            raise HarnessError(
                f"No tracking store at {path}: run some cells first (python -m harness ...) in that directory, "
                "or point --tracking-uri (or MLFLOW_TRACKING_URI) at the store, e.g. --tracking-uri sqlite:///path/mlflow.db."
            )


def search(uri: str, experiment: str) -> pd.DataFrame:
    """Every run of the experiment (all statuses) as MLflow's pandas frame. A store that cannot be read (a corrupt
    database, a server that does not answer) is one HarnessError within about 30 s, as in the runner."""
    import mlflow

    from ..tracking import client as tracking_client
    from ..tracking import store_errors

    _check_store(uri)
    with store_errors(uri):
        client = tracking_client(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            names = sorted(e.name for e in client.search_experiments())
            raise HarnessError(
                f"The tracking store {uri} has no experiment {experiment!r} (it has: {', '.join(names) or 'none'}); "
                "pass --experiment NAME."
            )
        mlflow.set_tracking_uri(uri)
        return mlflow.search_runs(experiment_ids=[exp.experiment_id], output_format="pandas", max_results=100_000)


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df.columns else pd.Series([None] * len(df), index=df.index, dtype=object)


def normalize(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per run with plain column names: params, tags and metrics of the harness schema."""
    out = pd.DataFrame(index=raw.index)
    out["run_id"] = _column(raw, "run_id")
    out["status"] = _column(raw, "status")
    out["run_name"] = _column(raw, "tags.mlflow.runName")
    out["start_time"] = pd.to_datetime(_column(raw, "start_time"), utc=True)
    out["end_time"] = pd.to_datetime(_column(raw, "end_time"), utc=True)
    out["artifact_uri"] = _column(raw, "artifact_uri")
    for p in PARAMS:
        out[p] = _column(raw, f"params.{p}")
    for p in INT_PARAMS:
        out[p] = pd.to_numeric(out[p], errors="coerce").astype("Int64")
    out["eta"] = [_safe_eta(v) for v in out["eta"]]
    out["precision"] = out["precision"].fillna(DEFAULT_PRECISION)
    for t in TAGS:
        out[t] = _column(raw, f"tags.{t}")
    for m in METRICS:
        out[m] = pd.to_numeric(_column(raw, f"metrics.{m}"), errors="coerce").astype(float)
    sha = out["checkpoint_sha256"].fillna("").astype(str)
    weights = out["checkpoint_weights"].where(out["checkpoint_weights"].notna(), "ema=" + out["ema"].astype(str))
    out["checkpoint_id"] = [
        f"{s[:12]}/{w}" if s and s != "None" else f"{c}/{w}" for s, c, w in zip(sha, out["checkpoint"], weights)
    ]
    out["key"] = [_key(r) for r in out.itertuples()]
    return out


def _safe_eta(value) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    try:
        return eta_label(value)
    except ValueError:
        return None


def _key(r) -> str:
    """The deduplication key: cell_key (hash of the identity params when missing), plus machine for timing."""
    key = r.cell_key if isinstance(r.cell_key, str) and r.cell_key else None
    if key is None:
        blob = "|".join(str(getattr(r, p)) for p in IDENTITY)
        key = "params:" + hashlib.sha256(blob.encode()).hexdigest()[:16]
    if r.job == "timing":
        key += f"|{r.device_name}|{r.timing_batch_size if isinstance(r.timing_batch_size, str) else r.batch_size}"
    return key


def dedupe(df: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Keep the newest run of each key; return the kept runs and the superseded ones per key."""
    df = df.sort_values("start_time", ascending=False, kind="stable")
    superseded = []
    for key, group in df.groupby("key", sort=False):
        if len(group) > 1:
            used = group.iloc[0]
            superseded.append(
                {
                    "key": key,
                    "cell": used["run_name"],
                    "used": used["run_id"],
                    "used_start": used["start_time"],
                    "older": [(r.run_id, r.start_time) for r in group.iloc[1:].itertuples()],
                }
            )
    kept = df.drop_duplicates("key", keep="first")
    return kept.sort_values(["job", "dataset", "eta", "S"], kind="stable").reset_index(drop=True), superseded


def load_runs(uri: str, experiment: str, datasets: list[str] | None = None) -> RunSet:
    """FINISHED runs of the harness schema, deduplicated, optionally restricted to some datasets."""
    from ..tracking import reconcile_orphans

    _check_store(uri)
    orphans = reconcile_orphans(uri, experiment)  # before reading, so they are listed as KILLED, not RUNNING
    raw = search(uri, experiment)
    if raw.empty:
        raise HarnessError(f"The experiment {experiment!r} in {uri} has no runs yet: run python -m harness first.")
    df = normalize(raw)
    ignored = []
    not_finished = df["status"] != "FINISHED"
    for r in df[not_finished].itertuples():
        ignored.append({"run_id": r.run_id, "status": r.status, "run_name": r.run_name, "reason": f"status {r.status}"})
    df = df[~not_finished]
    bad = df["job"].isna() | df["dataset"].isna() | df["S"].isna() | df["eta"].isna()
    for r in df[bad].itertuples():
        ignored.append({"run_id": r.run_id, "status": r.status, "run_name": r.run_name,
                        "reason": "not a harness cell (job, dataset, S or eta missing)"})
    df = df[~bad]
    if datasets:
        available = sorted(set(df["dataset"]))
        unknown = [d for d in datasets if d not in available]
        if len(unknown) == len(datasets):
            raise HarnessError(
                f"No finished runs for --dataset {' '.join(datasets)} in {uri}; datasets with finished runs: "
                f"{', '.join(available) or 'none'}."
            )
        df = df[df["dataset"].isin(datasets)]
        without_runs = unknown
    else:
        without_runs = []
    if df.empty:
        raise HarnessError(f"The experiment {experiment!r} in {uri} has no FINISHED runs: run python -m harness first.")
    kept, superseded = dedupe(df)
    ignored_df = pd.DataFrame(ignored, columns=["run_id", "status", "run_name", "reason"])
    return RunSet(uri, experiment, kept, superseded, ignored_df, list(datasets) if datasets else None,
                  without_runs, orphans)
