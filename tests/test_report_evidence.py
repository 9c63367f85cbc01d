"""The report on runs scored on K repeats (issue 9): every number with its interval, claims decided on paired
differences over repeats (PASS / FAIL / within noise / not enough repeats / not enough data), a table and a figure
per metric, non-finite values flagged, a dataset name with '/', no machine paths in any file, clear errors; and the
sampler axis (issue 10): samplers at equal NFE, measured against theoretical orders, out of Tables 1-3.

The store (tests/report_store.py, fill_v2 and fill_v3) is designed so the verdicts are known: a shared per-repeat
noise (the same x_T in every cell) that pairing cancels, and zero-mean jitter of each cell's own.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from clitools import unavailable_server
from report_store import DIGITS_V2, GMM_NFE, GMM_SAMPLERS, V2_METRICS, Store, fill_v2, fill_v3, gmm_flow, repeats_of
from scipy import stats

from harness.core.errors import HarnessError
from harness.report import claims as C
from harness.report.build import Options, build_report
from harness.report.cli import main
from harness.report.tables import timing_lines

T4 = 2.7764451051977987  # t(0.975, 4 df)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    s = Store(tmp_path_factory.mktemp("store") / "mlflow.db")
    fill_v2(s)
    fill_v3(s)
    return s


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    return build_report(Options(store.uri, tmp_path_factory.mktemp("report") / "r", latex_check=True))


def reps(metric: str, eta: str, S: int) -> np.ndarray:
    """The repeats the store logged for a digits cell, from the store's design."""
    return np.array(repeats_of(metric, DIGITS_V2[(eta, S)][V2_METRICS.index(metric)], 5, ("digits", eta, S)))


def claim(report, key: str, metric: str) -> C.Claim:
    return next(c for c in report.claims if c.key == key and c.metric == metric)


def check(report, key: str, metric: str, scope: str) -> C.Check:
    return next(k for k in claim(report, key, metric).checks if k.scope == scope)


def md_table(md: str, caption: str) -> pd.DataFrame:
    lines = md.splitlines()
    j = lines.index(f"**{caption}**") + 2
    rows = []
    while j < len(lines) and lines[j].startswith("|"):
        rows.append([c.strip() for c in lines[j].strip().strip("|").split("|")])
        j += 1
    return pd.DataFrame(rows[2:], columns=rows[0]).set_index(rows[0][0])


def test_cells_show_the_mean_and_its_interval(report):
    md = (report.out / "table1.md").read_text()
    fid = md_table(md, "digits 8x8: measured; FID in digits-cnn features, N=200, trajectory uniform; no paper values")
    r = reps("fid", "0", 10)
    half = T4 * r.std(ddof=1) / math.sqrt(5)
    assert fid.loc["eta=0", "S=10"] == f"{r.mean():.2f} \u00b1 {half:.2g}"
    assert fid.loc["eta=0.2", "S=10"].endswith("\u2020")  # another seed than the block's
    kid = md_table(md, "digits 8x8: KID in digits-cnn features (lower is better)")
    assert kid.loc["sigma-hat", "S=100"] == "inf" and kid.loc["eta=1", "S=10"].startswith("0.004 \u00b1 ")
    fd = md_table(md, "digits 8x8: FD in pixels features (lower is better)")  # each table names its features
    assert fd.loc["eta=1", "S=100"] == "NaN" and fd.loc["eta=0.5", "S=50"] == "-"
    assert "**digits 8x8: precision in digits-cnn features (higher is better)**" in md
    mnist = md_table(md, "mnist/32: measured; FID in lenet features, N=200, trajectory uniform; no paper values")
    assert mnist.loc["eta=0", "S=10"] == "9.00\u2021"  # K = 1: the mean alone, marked
    assert "\u2021 = measured once (K=1), no interval" in md
    tex = (report.out / "table1.tex").read_text()
    assert "9.00$^{\\ddagger}$" in tex and f"{r.mean():.2f} $\\pm$ {half:.2g}" in tex


def test_the_csvs_keep_every_number(report, store):
    long = pd.read_csv(report.out / "table1_long.csv")
    row = long[(long.dataset == "digits") & (long.eta.astype(str) == "0") & (long.S == 10)].iloc[0]
    r = reps("fid", "0", 10)
    assert row.K == 5 and row.measured == pytest.approx(r.mean()) and row["std"] == pytest.approx(r.std(ddof=1))
    assert row["min"] == pytest.approx(r.min()) and [row[f"r{k}"] for k in range(5)] == pytest.approx(list(r))
    assert row.ci95_high - row.ci95_low == pytest.approx(2 * T4 * r.std(ddof=1) / math.sqrt(5))
    tidy = pd.read_csv(report.out / "metrics_long.csv")
    assert set(V2_METRICS) <= set(tidy.metric) and {"dataset", "job", "sampler", "S", "eta", "repeat", "value"} <= set(tidy)
    nan = tidy[(tidy.metric == "fd_pixels") & (tidy.eta.astype(str) == "1") & (tidy.S == 100)]
    assert len(nan) == 6 and nan.value.isna().all()  # kept, not dropped: the mean and five repeats


def test_paired_claims_decide_where_unpaired_ones_could_not(report):
    a, b = reps("fid", "0", 10), reps("fid", "0.5", 10)
    d = a - b
    half = T4 * d.std(ddof=1) / math.sqrt(5)
    k = check(report, "eta0_best_small_S", "fid", "Table 1, digits 8x8, S=10, eta=0.5")
    assert k.verdict == C.PASS and k.K == 5 and k.interval.df == 4
    assert (k.interval.estimate, k.interval.low, k.interval.high) == pytest.approx((d.mean(), d.mean() - half, d.mean() + half))
    assert "paired over K=5 repeats, t on 4 df" in k.evidence and "95% CI [" in k.evidence
    welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval()  # the same cells, unpaired
    assert welch.low < 0 < welch.high  # the shared x_T noise hides the difference unless paired
    assert check(report, "eta0_best_small_S", "fid", "Table 1, digits 8x8, S=20, eta=0.5").verdict == C.NOISE
    assert check(report, "eta0_best_small_S", "kid", "Table 1, digits 8x8, S=10, eta=1").verdict == C.FAIL
    not_paired = check(report, "eta0_best_small_S", "fid", "Table 1, digits 8x8, S=10, eta=0.2")
    assert not_paired.verdict == C.NO_DATA and "cells not paired (seed 0 vs 1)" in not_paired.evidence
    assert check(report, "eta0_best_small_S", "fid", "Table 1, mnist/32, S=10, eta=1").verdict == C.NO_REPEATS
    # higher is better for precision: eta=0's higher precision passes
    assert check(report, "eta0_best_small_S", "prc_precision", "Table 1, digits 8x8, S=10, eta=1").verdict == C.PASS
    verdicts = {(c.key, c.metric): c.verdict for c in report.claims}
    assert verdicts[("eta0_best_small_S", "fid")] == C.NOISE  # passes at S=10, level with eta=0.5 at S=20
    assert verdicts[("eta0_best_small_S", "kid")] == C.FAIL and verdicts[("eta0_best_small_S", "prc_precision")] == C.PASS
    assert verdicts[("sigma_hat_worse_small_S", "fid")] == C.PASS


def test_improvement_with_S_is_judged_step_by_step(report):
    fid = claim(report, "improves_with_S", "fid")
    assert "Table 1, digits 8x8, eta=0: improves 10->20, 20->50; within noise 50->100" in fid.where
    assert check(report, "improves_with_S", "kid", "Table 1, digits 8x8, eta=1, 10->20").verdict == C.FAIL
    nan = check(report, "improves_with_S", "fd_pixels", "Table 1, digits 8x8, eta=1, 20->100")
    assert nan.verdict == C.NO_DATA and "FD(S=100) is NaN" in nan.evidence
    inf = check(report, "improves_with_S", "kid", "Table 1, digits 8x8, sigma-hat, 10->100")
    assert inf.verdict == C.NO_DATA and "KID(S=100) is inf" in inf.evidence
    assert check(report, "improves_with_S", "prc_precision", "Table 1, digits 8x8, eta=0, 10->20").verdict == C.PASS


def test_reconstruction_uses_a_welch_interval_and_timing_a_slope_interval(report):
    falls = check(report, "recon_falls_with_S", "recon_mse", "Table 2, digits 8x8, 10->20")
    se = math.hypot(0.0004, 0.0004)  # equal standard errors over 297 images each: Welch's df = 2 * 296
    half = stats.t.ppf(0.975, 2 * 296) * se
    assert falls.verdict == C.PASS and falls.interval.estimate == pytest.approx(-0.010)
    assert falls.interval.df == pytest.approx(2 * 296) and falls.interval.high == pytest.approx(-0.010 + half)
    assert check(report, "recon_falls_with_S", "recon_mse", "Table 2, digits 8x8, 20->50").verdict == C.NOISE
    assert "conservative" in claim(report, "recon_falls_with_S", "recon_mse").definition
    time_check = claim(report, "time_linear_in_S", "time").checks[0]
    assert time_check.verdict == C.PASS and time_check.interval.low < time_check.interval.estimate < time_check.interval.high
    assert "log-log slope" in time_check.evidence and "95% CI [" in time_check.evidence


def test_the_summary_says_which_ordering_holds_on_which_metric(report):
    md = (report.out / "report.md").read_text()
    summary = md[: md.index("## Table 1")]
    assert "| claim " in summary and "| FID " in summary and "| precision " in summary
    line = next(x for x in summary.splitlines() if x.startswith("- DDIM (eta=0) is better than every other eta"))
    assert "holds on precision and recall and FD and" in line and "fails on KID" in line and "within noise on FID" in line
    html = (report.out / "index.html").read_text()
    assert "holds on precision and recall and FD" in html and 'class="data row0 col2 fail"' in html


def test_figures_of_each_metric_against_nfe(report):
    for name in ("figure_metrics_digits", "figure_metrics_mnist_32", "figure3_samples_mnist_32"):  # '/' sanitised
        assert (report.out / f"{name}.png").stat().st_size > 0 and (report.out / f"{name}.pdf").stat().st_size > 0
    assert "each metric against the network evaluations per image" in (report.out / "report.md").read_text()


def test_non_finite_values_are_counted_in_provenance(report):
    prov = (report.out / "provenance.md").read_text()
    assert "8 logged value(s) are NaN or infinite" in prov  # fd_pixels: mean and 5 repeats; kid: mean and 1 repeat
    assert "kid (repeat 2) = inf" in prov and "fd_pixels = NaN" in prov


def test_no_report_file_holds_a_path_of_this_machine(report, tmp_path_factory):
    root = str(tmp_path_factory.getbasetemp())
    for path in report.out.iterdir():
        assert root.encode() not in path.read_bytes(), path.name
    assert "sqlite:///.../mlflow.db" in (report.out / "provenance.md").read_text()


def test_a_corrupt_store_or_an_unreachable_server_is_one_message(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "mlflow.db"
    bad.write_bytes(b"not a database at all, " * 40)
    with pytest.raises(HarnessError, match="is not an SQLite database"):
        build_report(Options(f"sqlite:///{bad}", tmp_path / "r"))
    truncated = tmp_path / "t.db"
    truncated.write_bytes(b"SQLite format 3\x00" + b"\x00" * 84)
    with pytest.raises(HarnessError, match="Cannot use the tracking store .*Move it aside"):
        build_report(Options(f"sqlite:///{truncated}", tmp_path / "r"))
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["--tracking-uri", "http://127.0.0.1:9", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: Cannot reach the tracking server http://127.0.0.1:9")
    assert "is the server running" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    with unavailable_server() as (url, asked), pytest.raises(SystemExit) as exit_:
        main(["--tracking-uri", url, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(f"error: Cannot reach the tracking server {url}")
    # MLflow's retries bounded (MLFLOW_HTTP_REQUEST_MAX_RETRIES=1: 2 requests for each of the report's lookups; its
    # default, 7 retries with growing back-off, takes minutes)
    assert 2 <= len(asked) <= 10 and len(asked) % 2 == 0, asked


def test_samplers_stay_out_of_tables_1_to_3(report):
    digits = md_table((report.out / "table1.md").read_text(),
                      "digits 8x8: measured; FID in digits-cnn features, N=200, trajectory uniform; no paper values")
    assert digits.loc["eta=0", "S=10"].startswith(f"{reps('fid', '0', 10).mean():.2f} \u00b1")  # DDIM, not pndm's 99
    long = pd.read_csv(report.out / "table1_long.csv")
    pndm = set(report.runs.runs.loc[report.runs.runs.sampler == "pndm", "run_id"])
    assert len(pndm) == 2 and not long.run_id.isin(pndm).any() and "pndm" not in (report.out / "table1.md").read_text()


def test_samplers_compared_at_equal_nfe(report):
    md = (report.out / "report.md").read_text()
    table = md_table(md, "digits 8x8: FID by sampler and NFE (mean \u00b1 half-width of the 95% interval over "
                         "repeats; the newest run of each cell)")
    assert list(table.index) == ["ddim (eta=0)", "ddim (eta=0.2)", "ddim (eta=0.5)", "ddim (eta=1)", "ddim (sigma-hat)",
                                 "pndm"]
    assert table.loc["pndm", "NFE=10"].startswith("99.00 \u00b1") and table.loc["pndm", "NFE=50"] == "-"
    assert table.loc["ddim (eta=0)", "NFE=10"].startswith("6.00 \u00b1")
    assert "digits 8x8: the cells differ in seed (0, 1)." in md
    gmm = md_table(md, "gmm_ring2d: FD to the true law by sampler and NFE (mean \u00b1 half-width of the 95% "
                       "interval over repeats; the newest run of each cell)")
    assert list(gmm.columns) == [f"NFE={n}" for n in GMM_NFE] and "heun" in gmm.index
    for name in ("figure_samplers_digits", "figure_samplers_gmm_ring2d"):
        assert (report.out / f"{name}.png").stat().st_size > 0 and (report.out / f"{name}.pdf").stat().st_size > 0
    cells = pd.read_csv(report.out / "samplers_long.csv")
    assert {"gmm_ring2d", "digits"} == set(cells.dataset) and {"flow_rmse", "fd_true"} <= set(cells.metric)


def test_measured_orders_beside_theoretical_ones(report):
    orders = pd.read_csv(report.out / "sampler_orders.csv").set_index("sampler")
    assert set(orders.index) == {"ddim (eta=0)", "heun", "dpm_solver_3"}  # ddim eta=1 is stochastic: no order
    for sampler, (order, _) in GMM_SAMPLERS.items():
        row = orders.loc["ddim (eta=0)" if sampler == "ddim" else sampler]
        x, y = np.log(GMM_NFE), np.log([gmm_flow(sampler, n) for n in GMM_NFE])
        fit = stats.linregress(x, y)
        half = stats.t.ppf(0.975, 1) * fit.stderr
        assert row["theoretical order"] == order and row["measured order"] == pytest.approx(-fit.slope)
        assert (row.ci95_low, row.ci95_high) == pytest.approx((-fit.slope - half, -fit.slope + half))
        assert abs(row["measured order"] - order) < 0.1
    md = (report.out / "report.md").read_text()
    assert "gmm_ring2d: measured order of each deterministic sampler" in md and "| heun " in md


def test_analytic_models_stay_out_of_figure_4_and_rank_agreement(report):
    """The exact-score grids time no network (checkpoint None), so their sample jobs give Figure 4 no line, and
    their (S, eta) cells share none with the paper's, so they get no Kendall row."""
    lines = timing_lines(report.runs)
    assert lines and {line.dataset for line in lines} == {"digits"}  # the digits sample runs (fallback) stay
    assert not any("gmm" in k.scope for k in claim(report, "time_linear_in_S", "time").checks)
    assert report.ranks and all(r.n > 0 for r in report.ranks)
    assert "0 cells" not in (report.out / "claims.md").read_text()
