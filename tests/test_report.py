"""python -m harness.report on a temporary SQLite MLflow store of synthetic runs with known values.

The store holds runs that follow the runner's schema: digits (measured only, with a missing cell, a duplicate of one
cell, a FAILED run, a cell with a different N and a second run of one position with another trajectory), CIFAR-10
(claims pass, a hand-computed Kendall tau), CelebA (claims fail), LSUN Church (Table 3), recon and timing runs.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from harness.report import claims as C
from harness.report.build import Options, build_report
from harness.report.latex import check_latex, find_engine, syntax_problems
from harness.report.paper import load_paper
from harness.report.stats import kendall_tau, linear_fit, loglog_slope
from harness.tracking import prepare_store

ROOT = Path(__file__).resolve().parent.parent
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
            precision=None):
        self.clock += 1
        start = T0 + 1000 * (self.clock if start is None else start)
        settings = dict(job=job, dataset=dataset, S=S, eta=eta, trajectory=trajectory, N=N, seed=seed, p=precision)
        key = cell_key(**settings)
        run = self.client.create_run(
            self.exp, start_time=start, run_name=f"{dataset} {job} S={S} eta={eta} {trajectory}",
            tags={"cell_key": key, "job": job, "git_commit": "c0ffee1", "device": "cpu", "device_name": device_name,
                  "threads": "1", "host": "testhost", "checkpoint_sha256": SHA, "checkpoint_weights": "ema",
                  **({"feature_extractor": extractor, "fid_reference": f"{dataset}-train"} if job == "sample" else {}),
                  **({"dtype": "float32", "timing_batch_size": str(batch_size)} if job == "timing" else {})},
        )
        params = {"job": job, "dataset": dataset, "model": dataset, "checkpoint": dataset, "ema": "True", "S": S,
                  "eta": eta, "trajectory": trajectory, "nfe": S, "N": N, "seed": seed, "batch_size": batch_size,
                  "T": 1000, **({"precision": precision} if precision else {})}  # no precision: an older run (fp32)
        from mlflow.entities import Metric, Param

        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()],
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


def fill(store: Store) -> None:
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


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    s = Store(path)
    fill(s)
    return s


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "default"
    return build_report(Options(store.uri, out, samples=False, latex_check=True))


def block_cells(md: str, caption_start: str) -> dict[str, dict[str, str]]:
    """{row label: {column: cell}} of the Markdown table under the bold caption starting with caption_start."""
    lines = md.splitlines()
    j = next(k for k, line in enumerate(lines) if line.startswith(f"**{caption_start}")) + 2
    rows = []
    while j < len(lines) and lines[j].startswith("|"):
        rows.append([c.strip() for c in lines[j].strip().strip("|").split("|")])
        j += 1
    header = rows[0]
    return {cells[0]: dict(zip(header[1:], cells[1:])) for cells in rows[2:]}


# ----------------------------------------------------------------------------------------------------------------


def test_paper_values_are_the_papers():
    paper = load_paper()
    assert len(paper) == 75
    row = paper[(paper.table == 1) & (paper.dataset == "cifar10") & (paper.eta == "0") & (paper.S == 10)].iloc[0]
    assert row.value == 13.36 and row.text == "13.36"
    assert paper[(paper.table == 1) & (paper.dataset == "celeba") & (paper.eta == "hat") & (paper.S == 100)].text.item() == "45.20"
    caption = paper[(paper.table == 3) & (paper.S == 1000)]
    assert set(caption.dataset) == {"lsun_bedroom", "lsun_church"} and set(caption.eta) == {"1"}


def test_table1_cells(report, store):
    md = (report.out / "table1.md").read_text()
    cifar = block_cells(md, "CIFAR-10: measured (paper)")
    assert cifar["eta=0"]["S=10"] == "12.30 (13.36)"
    assert cifar["eta=0"]["S=100"] == "4.60 (4.16)"
    assert cifar["eta=0.2"]["S=10"] == "- (14.04)"  # not run, the paper has a value
    assert cifar["sigma-hat"]["S=10"] == "300.00 (367.43)"
    assert cifar["sigma-hat"]["S=1000"] == "- (3.17)"
    assert list(cifar["eta=0"]) == ["S=10", "S=20", "S=50", "S=100", "S=1000"]
    assert list(cifar) == ["eta=0", "eta=0.2", "eta=0.5", "eta=1", "sigma-hat"]
    celeba = block_cells(md, "CelebA: measured (paper)")
    assert celeba["eta=1"]["S=10"] == "15.00 (33.12)" and celeba["eta=0.5"]["S=50"] == "- (11.01)"

    digits = block_cells(md, "digits 8x8: measured")
    assert list(digits["eta=0"]) == ["S=5", "S=10", "S=20", "S=50", "S=100", "S=1000"]  # S=5 measured, paper S
    assert digits["eta=0"]["S=10"] == "1.50"  # the newest of the duplicate runs (older: 9.99)
    assert digits["eta=0"]["S=20"] == "0.900"  # the FAILED run (0.01) is ignored
    assert digits["eta=0"]["S=5"] == "3.00" and digits["eta=0.2"]["S=5"] == "-"
    assert digits["eta=0.5"]["S=50"] == "-"  # missing cell
    assert digits["eta=0.2"]["S=50"] == "0.550"  # the uniform run, not the newer quad run
    assert digits["eta=1"]["S=50"] == "1.20\u2020"  # N=500 flagged
    assert digits["eta=1"]["S=1000"] == "-"
    # Beside digits: the paper's CIFAR-10 block, plain values, stated as not comparable.
    ref = block_cells(md, "CIFAR-10 (paper) - for comparing orderings only, NOT comparable")
    assert ref["eta=0"]["S=10"] == "13.36" and ref["sigma-hat"]["S=1000"] == "3.17"
    assert "not comparable" in md and "digits-cnn features, not Inception" in md
    assert "**digits 8x8: measured; FID in digits-cnn features, N=1000, trajectory uniform; no paper values**" in md

    wide = pd.read_csv(report.out / "table1.csv", dtype=str, keep_default_na=False)
    line = wide[(wide.block.str.startswith("CIFAR-10: measured")) & (wide.eta == "eta=0")].iloc[0]
    assert line["S=10"] == "12.30 (13.36)"
    long = pd.read_csv(report.out / "table1_long.csv")
    dup = long[(long.dataset == "digits") & (long.eta.astype(str) == "0") & (long.S == 10)].iloc[0]
    assert dup.measured == 1.5 and dup.run_id == store.ids["dup new"]


def test_table1_notes_flag_mixed_settings(report, store):
    md = (report.out / "table1.md").read_text()
    assert "Mixed settings in digits 8x8: N differs" in md
    assert f"500 in run(s) {store.ids['N500']}" in md
    assert "trajectory differs" in md and store.ids["quad"] in md
    assert re.search(rf"{store.ids['quad']} \(eta=0.2, S=50, .*trajectory=quad", md)


def test_newest_duplicate_used_and_said(report, store):
    used = set(report.runs.runs.run_id)
    assert store.ids["dup new"] in used and store.ids["dup old"] not in used and store.ids["failed"] not in used
    prov = (report.out / "provenance.md").read_text()
    assert f"used run {store.ids['dup new']} (newest" in prov and f"superseded: {store.ids['dup old']}" in prov
    assert f"{store.ids['failed']}" in prov and "status FAILED" in prov
    assert SHA in prov and "c0ffee1" in prov and "digits-cnn" in prov and "TestCPU" in prov
    cells = pd.read_csv(report.out / "provenance_runs.csv")
    assert set(cells[cells.dataset == "digits"].N) == {1000, 500}


def test_table2_and_table3(report):
    md2 = (report.out / "table2.md").read_text()
    cifar = block_cells(md2, "CIFAR-10: measured (paper)")
    assert cifar["reconstruction MSE"]["S=10"] == "0.015 (0.014)"
    assert cifar["reconstruction MSE"]["S=20"] == "0.007 (0.0065)"
    assert cifar["reconstruction MSE"]["S=200"] == "- (0.0004)"
    digits = block_cells(md2, "digits 8x8: measured")
    assert digits["reconstruction MSE"]["S=50"] == "0.005" and digits["reconstruction MSE"]["S=100"] == "-"
    ref = block_cells(md2, "CIFAR-10 (paper)")
    assert ref["reconstruction MSE"]["S=10"] == "0.014"

    md3 = (report.out / "table3.md").read_text()
    church = block_cells(md3, "LSUN Church: measured (paper)")
    assert church["eta=0"]["S=10"] == "20.00 (19.45)" and church["eta=1"]["S=10"] == "50.00 (51.56)"
    assert church["eta=1"]["S=1000"] == "- (7.89)" and church["eta=0"]["S=1000"] == "-"
    assert church["eta=0"]["S=20"] == "- (12.47)"
    assert church["eta=1"]["S=20"] == "45.00\u2020 (23.37)"  # fp16 among fp32 runs (missing precision = fp32)
    assert "precision differs: fp32 in 2 run(s)" in md3
    assert "LSUN Bedroom" not in md3  # no bedroom runs: no bedroom block


def _check(report, key, scope):
    claim = next(c for c in report.claims if c.key == key)
    return next(k for k in claim.checks if k.scope == scope)


def test_claim_verdicts(report):
    assert _check(report, "eta0_best_small_S", "Table 1, CIFAR-10").verdict == C.PASS
    assert _check(report, "eta0_best_small_S", "Table 1, digits 8x8").verdict == C.PASS
    assert _check(report, "eta0_best_small_S", "Table 3, LSUN Church").verdict == C.PASS
    failed = _check(report, "eta0_best_small_S", "Table 1, CelebA")
    assert failed.verdict == C.FAIL and "S=10: eta=0 20.00 not <" in failed.evidence

    falls = _check(report, "fid_falls_with_S", "Table 1, CIFAR-10, eta=0")
    assert falls.verdict == C.PASS and "not monotone, rises at S=50->100: 4.50->4.60" in falls.evidence
    assert _check(report, "fid_falls_with_S", "Table 1, digits 8x8, eta=0").evidence.endswith("monotone")
    assert _check(report, "fid_falls_with_S", "Table 1, CelebA, eta=0").verdict == C.FAIL
    assert _check(report, "fid_falls_with_S", "Table 1, CelebA, eta=1").verdict == C.NOT_ENOUGH

    hat = _check(report, "sigma_hat_worse_small_S", "Table 1, digits 8x8")
    assert hat.verdict == C.PASS and "S=10" in hat.evidence and "factor 20x the best (eta=0)" in hat.evidence
    assert "8.57x the worst (eta=1)" in hat.evidence
    assert _check(report, "sigma_hat_worse_small_S", "Table 1, CelebA").verdict == C.FAIL

    assert _check(report, "recon_falls_with_S", "Table 2, digits 8x8").verdict == C.PASS
    assert _check(report, "recon_falls_with_S", "Table 2, CelebA").verdict == C.FAIL

    linear = _check(report, "time_linear_in_S", "digits 8x8, cpu: TestCPU")
    assert linear.verdict == C.PASS and "R^2 1.0000, log-log slope 1.000" in linear.evidence
    assert _check(report, "time_linear_in_S", "digits 8x8, cpu: TestGPU").verdict == C.FAIL
    fallback = _check(report, "time_linear_in_S", "CIFAR-10, cpu: TestCPU (from sample jobs)")
    assert fallback.verdict == C.PASS

    overall = {c.key: c.verdict for c in report.claims}
    assert overall == {"eta0_best_small_S": C.FAIL, "fid_falls_with_S": C.FAIL, "sigma_hat_worse_small_S": C.FAIL,
                       "recon_falls_with_S": C.FAIL, "time_linear_in_S": C.FAIL}
    text = (report.out / "claims.md").read_text()
    assert "FAIL: DDIM (eta=0) has the lowest FID when S is small." in text


def test_claims_pass_where_the_data_agree(store, tmp_path):
    out = tmp_path / "r"
    build_report(Options(store.uri, out, datasets=["digits"], samples=False))
    (out / "notes.txt").write_text("mine")
    assert (out / "figure3_samples_digits.png").is_file()
    result = build_report(Options(store.uri, out, datasets=["cifar10", "lsun_church", "lsun_bedroom"], samples=False))
    overall = {c.key: c.verdict for c in result.claims}
    assert overall == {"eta0_best_small_S": C.PASS, "fid_falls_with_S": C.PASS, "sigma_hat_worse_small_S": C.PASS,
                       "recon_falls_with_S": C.PASS, "time_linear_in_S": C.PASS}
    assert set(result.runs.runs.dataset) == {"cifar10", "lsun_church"}
    assert "No finished runs for --dataset lsun_bedroom." in (out / "report.md").read_text()
    assert not (out / "figure3_samples_digits.png").exists()  # written by the first report, stale now
    assert (out / "notes.txt").read_text() == "mine"  # never delete what the report did not write
    assert (out / "figure3_samples_cifar10.png").is_file() and not (out / "figure5_consistency.png").exists()


def test_kendall_tau():
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # one discordant pair of six
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    # With ties (tau-b): x=[1,2,2,3], y=[1,2,3,3]: C=4, D=0, one tie in x, one in y: 4/sqrt(5*5) = 0.8
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    scipy_stats = pytest.importorskip("scipy.stats")
    x, y = [3.1, 1.2, 5.5, 2.2, 2.2, 9.0], [2.0, 1.0, 4.0, 4.0, 3.0, 8.0]
    assert kendall_tau(x, y) == pytest.approx(scipy_stats.kendalltau(x, y).statistic)
    assert math.isnan(kendall_tau([1.0], [2.0]))
    assert linear_fit([1, 2, 3], [2, 4, 6]) == pytest.approx((0.0, 2.0, 1.0))
    assert loglog_slope([10, 100], [1, 10]) == pytest.approx(1.0)


def test_rank_agreement(report):
    ranks = {(r.table, r.dataset): r for r in report.ranks}
    cifar = ranks[(1, "cifar10")]
    # 7 common cells; only (eta=0, S=50) vs (eta=0, S=100) is discordant (4.5 < 4.6 but 4.67 > 4.16): (20-1)/21
    assert cifar.n == 7 and cifar.comparable and cifar.tau == pytest.approx(19 / 21)
    assert ranks[(1, "celeba")].tau == pytest.approx(-1.0)  # every pair of the 4 cells reversed
    digits = ranks[(1, "digits")]
    assert not digits.comparable and digits.reference_dataset == "cifar10" and "ordering comparison only" in digits.description
    assert digits.n == 14  # the digits cells at the paper's S (10, 20, 50)
    assert "0.905" in (report.out / "claims.md").read_text()


def test_files_written(report):
    out = report.out
    for name in ["index.html", "report.md", "claims.md", "claims.csv", "provenance.md", "provenance_runs.csv",
                 "tables.tex", "figure4_timing.png", "figure4_timing.pdf", "figure3_samples_digits.png",
                 "figure3_samples_digits.pdf"] + [f"table{i}{ext}" for i in (1, 2, 3)
                                                   for ext in (".md", ".csv", "_long.csv", ".tex")]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") >= 4  # figure 4 and the digits, cifar10, celeba, church grids
    assert not re.search(r'<img[^>]+src="(?!data:)', html)  # self-contained
    assert "12.30 (13.36)" in html and "PASS" in html and "Provenance" in html
    assert "Kendall" in html
    report_md = (out / "report.md").read_text()
    assert "![" in report_md and "figure4_timing.png" in report_md


def test_latex_is_plausible(report):
    for i in (1, 2, 3):
        tex = (report.out / f"table{i}.tex").read_text()
        assert syntax_problems(tex) == []
        assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
        assert tex.count("{") == tex.count("}") + tex.count(r"\}") - tex.count(r"\{")
    assert r"$\eta = 0.0$ & -- & 12.30 (13.36) &" in (report.out / "table1.tex").read_text()
    assert r"-- (4.04)" in (report.out / "table1.tex").read_text()
    assert r"1.20$^{\dagger}$" in (report.out / "table1.tex").read_text()
    assert r"\usepackage{booktabs}" in (report.out / "tables.tex").read_text()
    assert syntax_problems(r"\begin{tabular}{lr}\toprule a & b & c \\ \bottomrule\end{tabular}")  # a bad one is caught
    assert report.latex is not None and report.latex.ok, report.latex.problems


@pytest.mark.skipif(find_engine() is None, reason="no TeX engine found (pdflatex/latexmk not on PATH)")
def test_latex_compiles(report):
    check = check_latex(report.out / "tables.tex")
    assert check.engine is not None and check.ok, check.log


def test_cli_end_to_end(store, tmp_path):
    """The command itself: the default out folder under the working directory, the summary on stdout."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "harness.report", "--tracking-uri", store.uri, "--name", "t", "--dataset", "digits",
           "--no-samples", "--latex-check"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "reports" / "t"
    assert "report written to reports/t/" in proc.stdout and "PASS" in proc.stdout and "LaTeX OK" in proc.stdout
    assert (out / "index.html").stat().st_size > 0 and not (out / "figure5_consistency.png").exists()
    assert "skipped (--no-samples)" in (out / "report.md").read_text()
    assert "CIFAR-10: measured" not in (out / "table1.md").read_text()  # filtered to digits


def test_report_with_sampled_figures(store, tmp_path, monkeypatch):
    """--samples with digits in the report: consistency and interpolation figures, embedded in the HTML."""
    import functools

    from harness.report import ondemand

    tiny = functools.partial(ondemand.digits_figures, n_consistency=2, n_interp=3, grid=2, consistency_S=(5, 10))
    monkeypatch.setattr(ondemand, "digits_figures", tiny)
    out = tmp_path / "r"
    build_report(Options(store.uri, out, datasets=["digits"], samples=True))
    for stem in ("figure5_consistency", "figure6_interpolation", "figure6_interpolation_grid"):
        assert (out / f"{stem}.png").stat().st_size > 0 and (out / f"{stem}.pdf").stat().st_size > 0
    html = (out / "index.html").read_text()
    assert "Consistency" in html and "sampled when this report was built (11 images" in html
    assert html.count("data:image/png;base64,") == 5  # figure 4, the digits grid, three sampled figures


def test_cli_errors_are_one_line(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, "-m", "harness.report"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "No tracking store at" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()  # the report never creates a store


def test_dataset_filter_without_runs_is_an_error(store, tmp_path):
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="datasets with finished runs: celeba, cifar10, digits, lsun_church"):
        build_report(Options(store.uri, tmp_path / "r", datasets=["lsun_bedroom"], samples=False))


def test_ondemand_figures_tiny(tmp_path):
    from harness.report.ondemand import digits_figures

    result = digits_figures(tmp_path, seed=0, n_consistency=2, n_interp=3, grid=2, consistency_S=(5, 10))
    assert result.images == 2 * 2 + 3 + 4
    assert len(result.checkpoint_sha256) == 64
    for _, png, pdf in result.figures:
        assert png.stat().st_size > 0 and pdf.stat().st_size > 0
