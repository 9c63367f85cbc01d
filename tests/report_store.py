"""Synthetic MLflow stores for the report tests: runs written with the runner's schema (harness.names).

``Store.add`` writes one run. ``fill_v1`` is the store the report tests have used since the first report: runs of
the schema before repeats (no ``repeats``, ``sampler``, ``features.*`` or ``headline_metric``), with known values, a
duplicate, a FAILED run, mixed settings; the golden files under tests/data/report_golden/ were written from it by the
report as it was at commit ce902b1. ``stable_ids`` names each run by its start time, so outputs of two stores built
alike compare equal although MLflow draws new run ids.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import Metric, Param

from harness.tracking import prepare_store

T0 = 1_767_000_000_000  # ms; run start times count up from here
SHA = "ab" * 32


def cell_key(**s) -> str:
    blob = "|".join(f"{k}={s[k]}" for k in sorted(s))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Store:
    """Writes runs of the harness schema into a SQLite store."""

    def __init__(self, path: Path):
        self.uri = f"sqlite:///{path}"
        self.exp = prepare_store(self.uri, "ddim-harness")
        self.client = mlflow.MlflowClient(tracking_uri=self.uri)
        self.clock = 0
        self.png = path.parent / "samples.png"
        import matplotlib.pyplot as plt

        plt.imsave(self.png, np.random.default_rng(0).random((34, 34)), cmap="gray")
        self.ids: dict[str, str] = {}

    def add(self, job, dataset, S, eta, metrics, *, N=1000, seed=0, trajectory="uniform", status="FINISHED",
            start=None, device_name="TestCPU", extractor="digits-cnn", artifact=False, batch_size=500, tag=None,
            precision=None, params=None, tags=None):
        """One run; ``params`` and ``tags`` add to (or replace) the schema's defaults."""
        self.clock += 1
        start = T0 + 1000 * (self.clock if start is None else start)
        settings = dict(job=job, dataset=dataset, S=S, eta=eta, trajectory=trajectory, N=N, seed=seed, p=precision,
                        **(params or {}))
        run = self.client.create_run(
            self.exp, start_time=start, run_name=f"{dataset} {job} S={S} eta={eta} {trajectory}",
            tags={"cell_key": cell_key(**settings), "job": job, "git_commit": "c0ffee1", "device": "cpu",
                  "device_name": device_name, "threads": "1", "host": "testhost", "checkpoint_sha256": SHA,
                  "checkpoint_weights": "ema",
                  **({"feature_extractor": extractor, "fid_reference": f"{dataset}-train"} if job == "sample" else {}),
                  **({"dtype": "float32", "timing_batch_size": str(batch_size)} if job == "timing" else {}),
                  **(tags or {})},
        )
        values = {"job": job, "dataset": dataset, "model": dataset, "checkpoint": dataset, "ema": "True", "S": S,
                  "eta": eta, "trajectory": trajectory, "nfe": S, "N": N, "seed": seed, "batch_size": batch_size,
                  "T": 1000, **({"precision": precision} if precision else {}), **(params or {})}
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in values.items()],
                              metrics=[Metric(k, float(v), start, 0) for k, v in metrics.items()])
        if artifact:
            self.client.log_artifact(run.info.run_id, str(self.png))
        self.client.set_terminated(run.info.run_id, status=status, end_time=start + 500)
        if tag:
            self.ids[tag] = run.info.run_id
        return run.info.run_id


DIGITS_FID = {  # (eta, S): FID in digits-cnn features
    ("0", 5): 3.0, ("0", 20): 0.9, ("0", 50): 0.5,
    ("0.2", 10): 1.6, ("0.2", 20): 1.0, ("0.2", 50): 0.55,
    ("0.5", 10): 1.9, ("0.5", 20): 1.2,  # (0.5, 50) not run
    ("1", 10): 3.5, ("1", 20): 2.0,
    ("hat", 10): 30.0, ("hat", 20): 12.0, ("hat", 50): 3.0,
}
CIFAR_FID = {("0", 10): 12.3, ("0", 20): 6.5, ("0", 50): 4.5, ("0", 100): 4.6, ("1", 10): 40.0, ("1", 20): 17.0,
             ("hat", 10): 300.0}
CELEBA_FID = {("0", 10): 20.0, ("0", 20): 25.0, ("1", 10): 15.0, ("hat", 10): 10.0}


def sample_metrics(fid, S):
    return {"fid": fid, "seconds_per_image": 0.001 * S, "sampling_seconds": S, "images_per_second": 1000 / S,
            "seconds_per_nfe_image": 0.001, "images_sampled": 1000}


def fill_v1(store: Store) -> None:
    for (eta, S), fid in DIGITS_FID.items():
        store.add("sample", "digits", S, eta, sample_metrics(fid, S), artifact=True, tag=f"digits {eta} {S}")
    # A duplicate of one cell: the newer run (later start time) is written first and must win.
    store.add("sample", "digits", 10, "0", sample_metrics(1.5, 10), start=500, artifact=True, tag="dup new")
    store.add("sample", "digits", 10, "0", sample_metrics(9.99, 10), start=400, artifact=True, tag="dup old")
    # A FAILED run (newest of its cell) must be ignored.
    store.add("sample", "digits", 20, "0", sample_metrics(0.01, 20), status="FAILED", start=600, tag="failed")
    # A cell with a different N must be flagged.
    store.add("sample", "digits", 50, "1", sample_metrics(1.2, 50), N=500, artifact=True, tag="N500")
    # A second run for a shown position with another trajectory (a different cell): listed, not shown.
    store.add("sample", "digits", 50, "0.2", sample_metrics(0.7, 50), trajectory="quad", start=700, tag="quad")
    for (eta, S), fid in CIFAR_FID.items():
        store.add("sample", "cifar10", S, eta, sample_metrics(fid, S), trajectory="quad", extractor="inception-v3-compat")
    for (eta, S), fid in CELEBA_FID.items():
        store.add("sample", "celeba", S, eta, sample_metrics(fid, S), extractor="inception-v3-compat")
    store.add("sample", "lsun_church", 10, "0", sample_metrics(20.0, 10), extractor="inception-v3-compat")
    store.add("sample", "lsun_church", 10, "1", sample_metrics(50.0, 10), extractor="inception-v3-compat",
              precision="fp32")
    store.add("sample", "lsun_church", 20, "1", sample_metrics(45.0, 20), extractor="inception-v3-compat",
              precision="fp16", tag="fp16")
    for S, mse in ((10, 0.02), (20, 0.01), (50, 0.005)):
        store.add("recon", "digits", S, "0", {"recon_mse": mse, "recon_mse_stderr": mse / 10, "n_images": 297})
    for S, mse in ((10, 0.015), (20, 0.007)):
        store.add("recon", "cifar10", S, "0", {"recon_mse": mse, "recon_mse_stderr": 0.001, "n_images": 100})
    for S, mse in ((10, 0.01), (20, 0.02)):
        store.add("recon", "celeba", S, "0", {"recon_mse": mse, "recon_mse_stderr": 0.001, "n_images": 100})
    for S in (10, 20, 50, 100):  # linear in S: slope 1, R^2 1
        hours = 0.002 * S
        store.add("timing", "digits", S, "0", {"hours_50k": hours, "seconds_per_image": hours * 3600 / 50000,
                                               "seconds_per_batch": 1.0})
    for S in (10, 20, 50):  # flat: slope 0
        store.add("timing", "digits", S, "0", {"hours_50k": 0.01, "seconds_per_image": 0.01 * 3600 / 50000,
                                               "seconds_per_batch": 1.0}, device_name="TestGPU")


def stable_ids(uri: str) -> dict[str, str]:
    """{run id: 'run@<seconds after T0>'}: a name for each run that two stores filled alike share."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("ddim-harness")
    runs = client.search_runs([exp.experiment_id], max_results=10_000)
    return {r.info.run_id: f"run@{(r.info.start_time - T0) // 1000}" for r in runs}


def replace_ids(text: str, ids: dict[str, str]) -> str:
    for run_id, name in ids.items():
        text = text.replace(run_id, name)
    return text
