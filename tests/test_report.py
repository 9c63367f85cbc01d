"""python -m harness.report on a temporary SQLite MLflow store of synthetic runs with known values.

The store holds runs that follow the runner's schema (tests/report_store.py): digits (measured only, with a missing
cell, a duplicate of one cell, a FAILED run, a cell with a different N and a second run of one position with another
trajectory), CIFAR-10 (claims pass, a hand-computed Kendall tau), CelebA (claims fail), LSUN Church (Table 3), recon
and timing runs, and one real figures job (tiny) on the shipped digits model.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from clitools import cells, coloured_pixels, drawn_figures
from report_store import GOLDEN_FILES, SHA, Store, fill_v1, golden_report

from harness.report import claims as C
from harness.report.build import Options, build_report
from harness.report.cli import main
from harness.report.stats import fit_line, kendall_tau, loglog_line
from harness.report.labels import load_paper
from harness.report.render import check_latex, find_engine, syntax_problems

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "data" / "report_golden"
FIGURES = ["job.consistency_S=[3,5]", "job.consistency_images=2", "job.interpolation_S=5", "job.interpolation_steps=3",
           "job.interpolation_grid=2"]


def run_figures_job(store: Store, out: Path, overrides: list[str]) -> str:
    """The figures job on the shipped digits model, run into the store as ``python -m harness job=figures`` runs it;
    returns its run id."""
    from harness.run.runner import run_cell

    (cell,) = cells("job=figures", f"output_root={out}", f"tracking.uri={store.uri}", "progress=false", *overrides)
    outcome = run_cell(cell)
    assert outcome.status == "FINISHED", outcome
    return outcome.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    s = Store(path)
    fill_v1(s)
    s.ids["figures"] = run_figures_job(s, path.parent / "outputs", FIGURES)
    return s


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "default"
    return build_report(Options(store.uri, out, latex_check=True))


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
    # One repeat per cell (runs from before repeats): the mean alone, marked, the paper's value in parentheses.
    assert cifar["eta=0"]["S=10"] == "12.30\u2021 (13.36)"
    assert cifar["eta=0"]["S=100"] == "4.60\u2021 (4.16)"
    assert cifar["eta=0.2"]["S=10"] == "- (14.04)"  # not run, the paper has a value
    assert cifar["sigma-hat"]["S=10"] == "300.00\u2021 (367.43)"
    assert cifar["sigma-hat"]["S=1000"] == "- (3.17)"
    assert list(cifar["eta=0"]) == ["S=10", "S=20", "S=50", "S=100", "S=1000"]
    assert list(cifar) == ["eta=0", "eta=0.2", "eta=0.5", "eta=1", "sigma-hat"]
    celeba = block_cells(md, "CelebA: measured (paper)")
    assert celeba["eta=1"]["S=10"] == "15.00\u2021 (33.12)" and celeba["eta=0.5"]["S=50"] == "- (11.01)"

    digits = block_cells(md, "digits 8x8: measured")
    assert list(digits["eta=0"]) == ["S=5", "S=10", "S=20", "S=50", "S=100", "S=1000"]  # S=5 measured, paper S
    assert digits["eta=0"]["S=10"] == "1.50\u2021"  # the newest of the duplicate runs (older: 9.99)
    assert digits["eta=0"]["S=20"] == "0.900\u2021"  # the FAILED run (0.01) is ignored
    assert digits["eta=0"]["S=5"] == "3.00\u2021" and digits["eta=0.2"]["S=5"] == "-"
    assert digits["eta=0.5"]["S=50"] == "-"  # missing cell
    assert digits["eta=0.2"]["S=50"] == "0.550\u2021"  # the uniform run, not the newer quad run
    assert digits["eta=1"]["S=50"] == "1.20\u2021\u2020"  # N=500 flagged
    assert digits["eta=1"]["S=1000"] == "-"
    # Beside digits: the paper's CIFAR-10 block, plain values, stated as not comparable.
    ref = block_cells(md, "CIFAR-10 (paper) - for comparing orderings only, NOT comparable")
    assert ref["eta=0"]["S=10"] == "13.36" and ref["sigma-hat"]["S=1000"] == "3.17"
    assert "not comparable" in md and "digits-cnn features, not Inception" in md
    assert "**digits 8x8: measured; FID in digits-cnn features, N=1000, trajectory uniform; no paper values**" in md

    wide = pd.read_csv(report.out / "table1.csv", dtype=str, keep_default_na=False)
    line = wide[(wide.block.str.startswith("CIFAR-10: measured")) & (wide.eta == "eta=0")].iloc[0]
    assert line["S=10"] == "12.30\u2021 (13.36)"
    long = pd.read_csv(report.out / "table1_long.csv")
    dup = long[(long.dataset == "digits") & (long.eta.astype(str) == "0") & (long.S == 10)].iloc[0]
    assert dup.measured == 1.5 and dup.run_id == store.ids["dup new"] and dup.K == 1


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
    cifar = block_cells(md2, "CIFAR-10: measured (paper)")  # the interval: t(n-1) standard errors over n images
    half = stats.t.ppf(0.975, 99) * 0.001
    assert cifar["reconstruction MSE"]["S=10"] == f"0.015 \u00b1 {half:.2g} (0.014)"
    assert cifar["reconstruction MSE"]["S=20"] == f"0.007 \u00b1 {half:.2g} (0.0065)"
    assert cifar["reconstruction MSE"]["S=200"] == "- (0.0004)"
    digits = block_cells(md2, "digits 8x8: measured")
    assert digits["reconstruction MSE"]["S=50"].startswith("0.005 \u00b1 ") and digits["reconstruction MSE"]["S=100"] == "-"
    ref = block_cells(md2, "CIFAR-10 (paper)")
    assert ref["reconstruction MSE"]["S=10"] == "0.014"

    md3 = (report.out / "table3.md").read_text()
    church = block_cells(md3, "LSUN Church: measured (paper)")
    assert church["eta=0"]["S=10"] == "20.00\u2021 (19.45)" and church["eta=1"]["S=10"] == "50.00\u2021 (51.56)"
    assert church["eta=1"]["S=1000"] == "- (7.89)" and church["eta=0"]["S=1000"] == "-"
    assert church["eta=0"]["S=20"] == "- (12.47)"
    assert church["eta=1"]["S=20"] == "45.00\u2021\u2020 (23.37)"  # fp16 among fp32 runs (missing precision = fp32)
    assert "precision differs: fp32 in 2 run(s)" in md3
    assert "LSUN Bedroom" not in md3  # no bedroom runs: no bedroom block


def _check(report, key, scope, metric=None):
    claim = next(c for c in report.claims if c.key == key and (metric is None or c.metric == metric))
    return next(k for k in claim.checks if k.scope == scope)


def test_claims_on_runs_without_repeats(report):
    """Runs from before repeats (K=1): no sample comparison can be decided; Table 2 and Figure 4 still can."""
    eta0 = _check(report, "eta0_best_small_S", "Table 1, CIFAR-10, S=10, eta=1")
    assert eta0.verdict == C.NO_REPEATS and "FID(eta=0) = 12.30 vs FID(eta=1) = 40.00, K = 1 and 1" in eta0.evidence
    assert _check(report, "improves_with_S", "Table 1, CelebA, eta=1, S=10").verdict == C.NO_DATA  # one S measured
    assert _check(report, "sigma_hat_worse_small_S", "Table 1, digits 8x8, S=10, eta=0").verdict == C.NO_REPEATS

    # Table 2 from the standard errors over images (Welch), step by step
    digits = _check(report, "recon_falls_with_S", "Table 2, digits 8x8, 10->20")
    se = math.hypot(0.002, 0.001)
    df = se ** 4 / (0.002 ** 4 / 296 + 0.001 ** 4 / 296)
    assert digits.verdict == C.PASS and digits.interval.df == pytest.approx(df)
    assert digits.interval.low == pytest.approx(-0.01 - stats.t.ppf(0.975, df) * se)
    assert _check(report, "recon_falls_with_S", "Table 2, CelebA, 10->20").verdict == C.FAIL

    linear = _check(report, "time_linear_in_S", "digits 8x8, cpu: TestCPU")
    assert linear.verdict == C.PASS and "R^2 1.0000, log-log slope 1.000 (95% CI [1.000, 1.000])" in linear.evidence
    assert _check(report, "time_linear_in_S", "digits 8x8, cpu: TestGPU").verdict == C.FAIL
    assert _check(report, "time_linear_in_S", "CIFAR-10, cpu: TestCPU (from sample jobs)").verdict == C.PASS

    overall = {(c.key, c.metric): c.verdict for c in report.claims}
    assert overall == {("eta0_best_small_S", "fid"): C.NO_REPEATS, ("improves_with_S", "fid"): C.NO_REPEATS,
                       ("sigma_hat_worse_small_S", "fid"): C.NO_REPEATS, ("recon_falls_with_S", "recon_mse"): C.FAIL,
                       ("time_linear_in_S", "time"): C.FAIL}
    text = (report.out / "claims.md").read_text()
    assert "#### FID: not enough repeats" in text and "Table 1, CIFAR-10, S=10: not enough repeats eta=1, sigma-hat" in text


def test_filtered_reports_and_stale_files(store, tmp_path):
    out = tmp_path / "r"
    build_report(Options(store.uri, out, datasets=["digits"]))
    (out / "notes.txt").write_text("mine")
    assert (out / "figure3_samples_digits.png").is_file()
    result = build_report(Options(store.uri, out, datasets=["cifar10", "lsun_church", "lsun_bedroom"]))
    overall = {c.key: c.verdict for c in result.claims}
    assert overall["recon_falls_with_S"] == C.PASS and overall["time_linear_in_S"] == C.PASS
    assert set(result.runs.runs.dataset) == {"cifar10", "lsun_church"}
    assert "No finished runs for --dataset lsun_bedroom." in (out / "report.md").read_text()
    assert not (out / "figure3_samples_digits.png").exists()  # written by the first report, stale now
    assert (out / "notes.txt").read_text() == "mine"  # never delete what the report did not write
    assert (out / "figure3_samples_cifar10.png").is_file()
    assert not (out / "figure5_consistency.png").exists()  # the figures run is a digits run: filtered out, and said
    assert "no finished figures run in the store; run python -m harness job=figures" in (out / "report.md").read_text()


def test_kendall_tau_and_fits():
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # one discordant pair of six
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    # With ties (tau-b): x=[1,2,2,3], y=[1,2,3,3]: C=4, D=0, one tie in x, one in y: 4/sqrt(5*5) = 0.8
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    assert math.isnan(kendall_tau([1.0], [2.0]))
    line = fit_line([1, 2, 3], [2, 4, 6])
    assert (line.intercept, line.slope, line.r2) == pytest.approx((0.0, 2.0, 1.0))
    assert line.slope_low == pytest.approx(2.0) and line.slope_high == pytest.approx(2.0)  # exact fit: no spread
    assert fit_line([1, 2, 3], [5, 5, 5]).r2 == 1.0  # a flat line fits a constant exactly
    assert math.isnan(fit_line([1, 1], [2, 3]).slope)
    assert loglog_line([10, 100], [1, 10]).slope == pytest.approx(1.0)
    # The slope's 95% interval by hand: b -+ t(0.975, n-2) sqrt(s^2 / Sxx), s^2 = sum of squared residuals / (n-2)
    x, y = np.arange(1, 6.0), np.array([2.3, 3.8, 5.6, 8.2, 9.7])
    b = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    e = y - (y.mean() - b * x.mean()) - b * x
    se = math.sqrt((e ** 2).sum() / 3 / ((x - x.mean()) ** 2).sum())
    noisy = fit_line(x, y)
    assert noisy.slope == pytest.approx(b) and noisy.slope_high - noisy.slope == pytest.approx(3.182446 * se, rel=1e-6)
    assert noisy.slope - noisy.slope_low == pytest.approx(3.182446 * se, rel=1e-6)


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
    assert html.count("data:image/png;base64,") == 12  # figure 4, metric figures and sample grids of 4 datasets, 5/6
    assert not re.search(r'<img[^>]+src="(?!data:)', html)  # self-contained
    assert "12.30\u2021 (13.36)" in html and "PASS" in html and "Provenance" in html
    assert "Kendall" in html
    report_md = (out / "report.md").read_text()
    assert "![" in report_md and "figure4_timing.png" in report_md


def test_figure_4_draws_every_timing_line(report, tmp_path, monkeypatch):
    """The report's Figure 4 and metric figures are drawn (coloured data, not an empty frame); Figure 4's lines are
    the timing lines' points (NFE, hours), and without lines it draws only its grey references."""
    from harness.report.figures import figure4
    from harness.report.tables import timing_lines

    assert coloured_pixels(report.out / "figure4_timing.png") > 500
    metric_figures = sorted(report.out.glob("figure_metrics_*.png"))
    assert len(metric_figures) >= 3 and all(coloured_pixels(png) > 500 for png in metric_figures), metric_figures

    figures = drawn_figures(monkeypatch)
    lines = timing_lines(report.runs)
    figure4(lines, tmp_path)
    (fig,) = figures
    plotted = fig.axes[0].get_lines()
    assert len(lines) >= 2 and len(plotted) == len(lines) + 2  # then the two grey references
    for line, drawn in zip(lines, plotted):
        assert drawn.get_label().startswith(line.label)
        np.testing.assert_allclose(drawn.get_xydata(), line.points[["nfe", "hours"]].to_numpy(dtype=float))
    assert coloured_pixels(tmp_path / "figure4_timing.png") == coloured_pixels(report.out / "figure4_timing.png")
    (tmp_path / "empty").mkdir()
    figure4([], tmp_path / "empty")
    assert coloured_pixels(tmp_path / "empty" / "figure4_timing.png") == 0


def test_latex_is_plausible(report):
    for i in (1, 2, 3):
        tex = (report.out / f"table{i}.tex").read_text()
        assert syntax_problems(tex) == []
        assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
        assert tex.count("{") == tex.count("}") + tex.count(r"\}") - tex.count(r"\{")
    assert r"$\eta = 0.0$ & -- & 12.30$^{\ddagger}$ (13.36) &" in (report.out / "table1.tex").read_text()
    assert r"-- (4.04)" in (report.out / "table1.tex").read_text()
    assert r"1.20$^{\ddagger}$$^{\dagger}$" in (report.out / "table1.tex").read_text()
    assert r"\usepackage{booktabs}" in (report.out / "tables.tex").read_text()
    assert syntax_problems(r"\begin{tabular}{lr}\toprule a & b & c \\ \bottomrule\end{tabular}")  # a bad one is caught
    assert report.latex is not None and report.latex.ok, report.latex.problems


@pytest.mark.skipif(find_engine() is None, reason="no TeX engine found (pdflatex/latexmk not on PATH)")
def test_latex_compiles(report):
    check = check_latex(report.out / "tables.tex")
    assert check.engine is not None and check.ok, check.log


def test_cli_end_to_end(store, tmp_path, monkeypatch, capsys):
    """The command: by default into outputs/report/ under the working directory (git-ignored, so the quick start
    leaves the repository clean), the verdicts per claim and metric on stdout."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["--tracking-uri", store.uri, "--dataset", "digits", "--latex-check"]) == 0
    stdout, out = capsys.readouterr().out, tmp_path / "outputs" / "report"
    assert "report written to outputs/report/" in stdout and "LaTeX OK" in stdout
    assert "  not enough repeats  [FID] DDIM (eta=0) is better than every other eta at small S." in stdout
    assert "  PASS                [MSE] Reconstruction error falls as S grows." in stdout
    assert (out / "index.html").stat().st_size > 0 and (out / "figure5_consistency.png").is_file()
    assert "CIFAR-10: measured" not in (out / "table1.md").read_text()  # filtered to digits


def test_figures_5_and_6_come_from_the_figures_job(report, store):
    """The report draws Figures 5/6 from the figures run's artifacts (it samples nothing) and names the run."""
    out = report.out
    for stem in ("figure5_consistency", "figure6_interpolation", "figure6_interpolation_grid"):
        assert (out / f"{stem}.png").stat().st_size > 0 and (out / f"{stem}.pdf").stat().st_size > 0
    html = (out / "index.html").read_text()
    assert "Consistency: digits, the same x_T (rows, seed 0, images 0-1) decoded with eta=0 and S = 3, 5" in html
    prov = (out / "provenance.md").read_text()
    assert f"Figures 5 and 6 come from the figures run {store.ids['figures']}" in prov and "checkpoint digits " in prov


def test_the_figures_job_logs_what_the_figures_show(store):
    """figures.npz holds the decoded images in the layout the report reads; the interpolation's end (alpha = 0, the
    x_T of image 0 itself, decoded in a batch of other latents) is the consistency image of image 0 at the same S."""
    import mlflow

    path = mlflow.artifacts.download_artifacts(run_id=store.ids["figures"], artifact_path="figures.npz",
                                               tracking_uri=store.uri)
    with np.load(path) as data:
        consistency, line, grid, alphas = data["consistency"], data["interpolation"], data["grid"], data["alphas"]
    assert consistency.shape == (2, 2, 1, 8, 8) and line.shape == (3, 1, 8, 8) and grid.shape == (2, 2, 1, 8, 8)
    assert consistency.dtype == np.uint8 and list(alphas) == [0.0, 0.5, 1.0]
    assert np.array_equal(line[0], consistency[1, 0]) and np.array_equal(grid[0, 0], consistency[1, 0])
    assert not np.array_equal(consistency[0, 0], consistency[0, 1])  # two different latents


def test_report_modules_do_not_import_torch():
    code = ("import sys, pkgutil, importlib, harness.report as r\n"
            "for m in pkgutil.iter_modules(r.__path__): importlib.import_module(f'harness.report.{m.name}')\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main([])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: No tracking store at") and err.count("\n") == 1
    assert not (tmp_path / "mlflow.db").exists()  # the report never creates a store


def test_dataset_filter_without_runs_is_an_error(store, tmp_path):
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError, match="datasets with finished runs: celeba, cifar10, digits, lsun_church"):
        build_report(Options(store.uri, tmp_path / "r", datasets=["lsun_bedroom"]))


# ----------------------------------------------------------------------------------------------------------------
# The golden report (tests/data/report_golden/): a change to the report shows as a reviewed diff of these files.


def test_the_report_is_the_golden_one(tmp_path):
    """Today's report of ``fill_v1``'s store is, byte for byte, the golden files. A change made on purpose
    regenerates them (``python tests/data/report_golden/make_golden.py``) and commits their diff with the change."""
    texts = golden_report(tmp_path)
    for name in GOLDEN_FILES:
        assert texts[name] == (GOLDEN / name).read_text(encoding="utf-8"), (
            f"{name} differs from tests/data/report_golden/{name}: if on purpose, run "
            "python tests/data/report_golden/make_golden.py and review its diff")
