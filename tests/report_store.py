"""Synthetic MLflow stores for the report tests: runs written with the runner's schema (harness.core.names).

``Store.add`` writes one run. ``fill_v1`` is the store the report tests have used since the first report: runs of
the schema before repeats (no ``repeats``, ``sampler``, ``features.*`` or ``headline_metric``), with known values, a
duplicate, a FAILED run, mixed settings; the golden files under tests/data/report_golden/ are its report
(``golden_report``, written by make_golden.py there). ``stable_ids`` names each run by its start time, so outputs of two stores built
alike compare equal although MLflow draws new run ids.
"""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import Metric, Param

from clitools import new_store
from harness.tracking.store import prepare_store

T0 = 1_767_000_000_000  # ms; run start times count up from here
SHA = "ab" * 32


def cell_key(**s) -> str:
    blob = "|".join(f"{k}={s[k]}" for k in sorted(s))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Store:
    """Writes runs of the harness schema into a SQLite store."""

    def __init__(self, path: Path):
        self.uri = f"sqlite:///{new_store(path)}"
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
                  **({"feature_extractor": extractor, "fid_reference": f"{dataset}-train"}
                     if job == "sample" and extractor else {}),
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


# ----------------------------------------------------------------------------------------------------------------
# The schema with repeats (issue 9): a sample cell scored on K repeats logs, per metric m, the mean m, each repeat
# m_r<k>, and over repeats m_std, m_min and the 95% t-interval m_ci95_low/high (absent when K = 1).

FEATURES = {"fid": "digits-cnn", "kid": "digits-cnn", "prc_precision": "digits-cnn", "prc_recall": "digits-cnn",
            "fd_pixels": "pixels"}
SHARED = {"fid": [0.9, -0.7, 0.4, -0.3, -0.3], "kid": [0.0009, -0.0007, 0.0004, -0.0003, -0.0003],
          "prc_precision": [0.03, -0.02, 0.01, -0.01, -0.01], "prc_recall": [0.03, -0.02, 0.01, -0.01, -0.01],
          "fd_pixels": [2.0, -1.5, 1.0, -0.8, -0.7]}  # the x_T noise a repeat shares across cells (sums to 0)


def repeat_metrics(metric: str, values) -> dict[str, float]:
    """What the runner logs for one metric of a cell scored on len(values) repeats."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    out = {metric: float(v.mean()), **{f"{metric}_r{k}": float(x) for k, x in enumerate(v)}}
    if len(v) >= 2 and np.isfinite(v).all():
        half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
        out.update({f"{metric}_std": float(v.std(ddof=1)), f"{metric}_min": float(v.min()),
                    f"{metric}_ci95_low": float(v.mean() - half), f"{metric}_ci95_high": float(v.mean() + half)})
    return out


JITTER = [[1, -1, 0, 0, 0], [0, 1, -1, 0, 0], [0, 0, 1, -1, 0], [0, 0, 0, 1, -1], [1, 0, 0, 0, -1]]  # mean 0


def repeats_of(metric: str, mean: float, K: int, cell: tuple) -> list[float]:
    """K repeat values whose mean is ``mean``: the noise each repeat shares with every cell (the same x_T) plus a
    small zero-mean jitter of this cell's own, so a paired difference is the designed one within a narrow interval
    while an unpaired comparison sees all of the shared noise."""
    pattern = JITTER[zlib.crc32(repr((metric, *cell)).encode()) % len(JITTER)][:K]
    return list(mean + np.asarray(SHARED[metric][:K]) + 0.02 * abs(SHARED[metric][0]) * np.asarray(pattern))


# (eta, S): (fid, kid, precision, recall, fd_pixels) means. FID: eta=0 best at S=10 (by 0.5 against eta=0.5: less
# than the shared noise, so only the paired comparison decides it), level with eta=0.5 at S=20;
# KID: eta=1 better than eta=0 at S=10; precision and recall (higher is better) rise with S; nan / inf cells.
DIGITS_V2 = {
    ("0", 10): (6.0, 0.0060, 0.90, 0.60, 20.0), ("0", 20): (4.0, 0.0040, 0.92, 0.65, 15.0),
    ("0", 50): (3.0, 0.0030, 0.95, 0.70, 12.0), ("0", 100): (3.0, 0.0030, 0.95, 0.70, 12.0),
    ("0.5", 10): (6.5, 0.0070, 0.85, 0.58, 21.0), ("0.5", 20): (4.0, 0.0045, 0.90, 0.63, 16.0),
    ("1", 10): (8.0, 0.0040, 0.80, 0.55, 22.0), ("1", 20): (5.0, 0.0050, 0.88, 0.62, 17.0),
    ("1", 100): (3.2, 0.0032, 0.94, 0.69, float("nan")),
    ("hat", 10): (30.0, 0.0300, 0.30, 0.20, 60.0), ("hat", 100): (3.3, float("inf"), 0.93, 0.68, 13.0),
}
V2_METRICS = ["fid", "kid", "prc_precision", "prc_recall", "fd_pixels"]


def v2_metrics(values: tuple, K: int, cell: tuple) -> dict[str, float]:
    out = {}
    for metric, mean in zip(V2_METRICS, values):
        reps = repeats_of(metric, mean if np.isfinite(mean) else 0.003, K, cell)
        if not np.isfinite(mean):  # a metric that failed: NaN in every repeat, or one infinite repeat
            reps = [mean] * K if np.isnan(mean) else [reps[0], reps[1], mean, *reps[3:]]
        out.update(repeat_metrics(metric, reps))
    return out


def v2_tags(features: dict | None = None) -> dict[str, str]:
    return {"headline_metric": "fid", **{f"features.{m}": f for m, f in (features or FEATURES).items()}}


def fill_v2(store: Store, K: int = 5, N: int = 200) -> None:
    """Runs of the schema with repeats: digits (K=5, one cell with another seed), a dataset named 'mnist/32' with
    K=1, recon runs with standard errors, timing runs."""
    for (eta, S), values in DIGITS_V2.items():
        store.add("sample", "digits", S, eta, v2_metrics(values, K, ("digits", eta, S)), N=N, artifact=True,
                  params={"repeats": K, "sampler": "ddim", "nfe": S}, tags=v2_tags(), tag=f"digits {eta} {S}")
    store.add("sample", "digits", 10, "0.2", v2_metrics((6.5, 0.006, 0.88, 0.6, 20.0), K, ("seed1",)), N=N, seed=1,
              params={"repeats": K}, tags=v2_tags(), tag="seed1")
    for (eta, S), fid in {("0", 10): 9.0, ("1", 10): 12.0, ("0", 20): 7.0}.items():
        store.add("sample", "mnist/32", S, eta, repeat_metrics("fid", [fid]), N=N, params={"repeats": 1},
                  tags=v2_tags({"fid": "lenet"}), tag=f"mnist {eta} {S}")
    for S, mse, se in ((10, 0.020, 0.0004), (20, 0.010, 0.0004), (50, 0.0098, 0.0004)):
        store.add("recon", "digits", S, "0", {"recon_mse": mse, "recon_mse_stderr": se, "n_images": 297}, N=297)
    for S in (10, 20, 50, 100):
        hours = 0.002 * S * (1 + 0.02 * (S % 3 - 1))  # nearly linear
        store.add("timing", "digits", S, "0", {"hours_50k": hours, "seconds_per_image": hours * 3600 / 50000,
                                               "seconds_per_batch": 1.0})


# ----------------------------------------------------------------------------------------------------------------
# The sampler axis (issue 10): runs carry the sampler and the NFE they counted. An exact-score dataset logs
# flow_rmse (distance to the exact probability-flow solution) and fd_true, and tags each sampler's theoretical order.

GMM_SAMPLERS = {"ddim": (1, 2.0), "heun": (2, 5.0), "dpm_solver_3": (3, 20.0)}  # order p, constant C: C * NFE^-p
GMM_NFE = (10, 20, 40)
GMM_WOBBLE = (1.03, 0.98, 1.01)  # a measured error is not an exact power law


def gmm_flow(sampler: str, nfe: int) -> float:
    order, constant = GMM_SAMPLERS[sampler]
    return constant * nfe ** -order * GMM_WOBBLE[GMM_NFE.index(nfe)]


def fill_v3(store: Store, K: int = 3) -> None:
    """gmm_ring2d: ddim (eta 0 and 1), heun, dpm_solver_3 at NFE 10, 20, 40; digits: a pndm run beside the DDIM
    cells (it must stay out of Tables 1-3)."""
    spread = np.array([1.01, 0.99, 1.0])[:K]
    for sampler, (order, _) in GMM_SAMPLERS.items():
        for nfe in GMM_NFE:
            for eta in (["0", "1"] if sampler == "ddim" else ["0"]):
                flow = gmm_flow(sampler, nfe) if eta == "0" else 0.3
                metrics = {**repeat_metrics("flow_rmse", flow * spread), **repeat_metrics("fd_true", 10 * flow * spread),
                           "seconds_per_image": 1e-4 * (1 + nfe % 3)}  # an analytic model: no network to time
                store.add("sample", "gmm_ring2d", nfe, eta, metrics, N=500, extractor=None,
                          params={"sampler": sampler, "nfe": nfe, "repeats": K, "checkpoint": "None"},
                          tags={"headline_metric": "fd_true", "sampler_order": str(order), "features.fd_true": "exact",
                                "features.flow_rmse": "exact"}, tag=f"gmm {sampler} {eta} {nfe}")
    for nfe, fid in ((10, 99.0), (20, 50.0)):
        store.add("sample", "digits", nfe, "0", v2_metrics((fid, 0.05, 0.5, 0.4, 40.0), 5, ("pndm", nfe)), N=200,
                  params={"sampler": "pndm", "nfe": nfe, "repeats": 5}, tags=v2_tags(), tag=f"pndm {nfe}")


GOLDEN_FILES = [f"table{i}{ext}" for i in (1, 2, 3) for ext in (".md", ".csv", "_long.csv", ".tex")] + [
    "claims.md", "claims.csv", "provenance.md", "provenance_runs.csv"]


def golden_report(folder: Path) -> dict[str, str]:
    """The report of ``fill_v1``'s store built in ``folder`` by today's code, each of ``GOLDEN_FILES`` with its run
    ids as ``run@<start>``: what tests/data/report_golden/ holds (written by its make_golden.py)."""
    from harness.report.build import Options, build_report

    store = Store(folder / "mlflow.db")
    fill_v1(store)
    out = folder / "report"
    build_report(Options(store.uri, out))
    ids = stable_ids(store.uri)
    return {name: replace_ids((out / name).read_text(encoding="utf-8"), ids) for name in GOLDEN_FILES}
