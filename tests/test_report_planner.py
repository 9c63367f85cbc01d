"""The report's planner line (issue 19, item 3) and its choice of a grown cell (item 4), on a small store whose
numbers are worked out by hand here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from report_store import Store, repeat_metrics

from harness.core.names import Tag
from harness.report.stats import detectable, repeats_needed
from harness.report import claims as C
from harness.report.build import Options, build_report

N, RATE = 10, 0.001  # images per repeat; seconds per image and NFE logged by every run
BASE = np.array([6.0, 7.0, 5.0, 6.5, 5.5, 6.2, 5.8, 6.1, 6.4, 5.9])  # FID per repeat of eta=0, S=10 (K=10 grown)
D_ETA1 = np.array([2.0, -1.0, 3.0, 0.0, 1.0])  # FID(eta=1) - FID(eta=0) per repeat: mean 1, sd sqrt(10/4) = 1.581
D_ETA05 = np.array([0.5, -0.5, 0.25, -0.25, 0.0005])  # mean 0.0001: near 0


def add(store: Store, eta: str, values, series: str, start: int) -> str:
    metrics = {**repeat_metrics("fid", values), "seconds_per_nfe_image": RATE, "images_sampled": N * len(values)}
    return store.add("sample", "digits", 10, eta, metrics, N=N, start=start, params={"repeats": len(values)},
                     tags={Tag.CELL_SERIES: series, "headline_metric": "fid", "features.fid": "digits-cnn"})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("store") / "mlflow.db")
    store.ids = {"grown": add(store, "0", BASE, "s0", start=1),  # the grown cell is the OLDER run here: larger wins
                 "small": add(store, "0", BASE[:5], "s0", start=2),
                 "eta1": add(store, "1", BASE[:5] + D_ETA1, "s1", start=3),
                 "eta05": add(store, "0.5", BASE[:5] + D_ETA05, "s05", start=4)}
    for S, mse in ((20, 0.0100), (50, 0.0098)):  # Table 2: 297 held-out images each, standard error 0.0004
        store.add("recon", "digits", S, "0", {"recon_mse": mse, "recon_mse_stderr": 0.0004, "n_images": 297}, N=297)
    return store


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    return build_report(Options(store.uri, tmp_path_factory.mktemp("report") / "r")), store.ids


def fid_check(result, eta: str) -> C.Check:
    claim = next(c for c in result.claims if c.key == "eta0_best_small_S" and c.metric == "fid")
    return next(k for k in claim.checks if k.item == f"eta={eta}")


def test_the_table_takes_the_largest_cell_of_a_series(report):
    result, ids = report
    block = next(b for b in result.tables[0].blocks if b.dataset == "digits" and not b.paper_only)
    assert block.measured.loc[("0", 10), "run_id"] == ids["grown"] and block.measured.loc[("0", 10), "repeats"] == 10
    assert any(ids["small"] in note and "larger cell of their series" in note for note in block.notes)


def test_a_grown_cell_pairs_its_first_repeats(report):
    """eta=0 (K=10) against eta=1 (K=5): paired over the first 5 repeats, d = -(2, -1, 3, 0, 1)."""
    k = fid_check(report[0], "1")
    assert k.K == 5 and "paired over the first K=5 repeats" in k.evidence
    assert k.interval.estimate == pytest.approx(-1.0)


def test_within_noise_gets_repeats_needed_and_cost(report):
    """d = -1, sd = sqrt(((1)^2 + (-2)^2 + 2^2 + (-1)^2 + 0^2) / 4) = sqrt(2.5) = 1.581: e = 0.632; Guenther
    7.848879 / 0.4 + 1.920729 = 21.54, the noncentral t gives 22 repeats. New: eta=0 (grown, K=10) 12 repeats, eta=1
    17, x 10 images = 290 images, x NFE 10 = 2,900 network evaluations, x 0.001 s = 2.9 s of CPU sampling."""
    k = fid_check(report[0], "1")
    assert k.verdict == C.NOISE and repeats_needed(1.0, np.sqrt(2.5)) == 22
    assert (k.plan.repeats, k.plan.images, k.plan.nfe) == (22, 290, 2900) and k.plan.seconds == pytest.approx(2.9)
    assert k.plan.detectable == pytest.approx(detectable(5, np.sqrt(2.5)))
    assert k.plan_line == (f"K=22 (+290 new images, 2,900 NFE, ~3 s of CPU sampling); smallest detectable difference "
                           f"at K=5: {k.plan.detectable:.3g}")


def test_near_zero_gets_the_detectable_difference(report):
    k = fid_check(report[0], "0.5")
    sd = float(np.std(D_ETA05, ddof=1))
    assert k.verdict == C.NOISE and k.plan.repeats is None
    assert k.plan.detectable == pytest.approx(detectable(5, sd))
    assert k.plan_line == ("difference near 0 (deciding it would take over 100x the repeats at hand); smallest "
                           f"detectable difference at K=5: {k.plan.detectable:.3g}")


def test_a_reconstruction_comparison_is_planned_in_images(report):
    """MSE(S=50) - MSE(S=20) = -0.0002 with standard errors 0.0004 over 297 images each: n = 297 x 7.848880 x
    (0.0004^2 + 0.0004^2) / 0.0002^2 = 7.848880 x 297 x 8 = 18,648.9 -> 18,649 images per cell, 18,352 new in each;
    NFE 2 x S per image (encode and decode): 18,352 x (100 + 40) = 2,569,280, x 0.001 s = 2,569 s = 43 min."""
    claim = next(c for c in report[0].claims if c.key == "recon_falls_with_S")
    (k,) = claim.checks
    assert k.verdict == C.NOISE and (k.plan.unit, k.plan.repeats, k.plan.images, k.plan.nfe) == (
        "images", 18649, 36704, 2569280)
    assert k.plan_line.startswith("n=18649 images per cell (+36,704 new images, 2,569,280 NFE, ~43 min of CPU sampling)")


def test_every_within_noise_comparison_shows_its_plan_in_claims_md_html_and_csv(report):
    result, _ = report
    noise = [k for c in result.claims for k in c.checks if k.verdict == C.NOISE]
    assert noise and all(k.plan_line for k in noise)
    md, html = (result.out / "claims.md").read_text(), (result.out / "index.html").read_text()
    for k in noise:
        assert k.plan_line in md and k.plan_line in html
    assert "0.001 s per image and NFE (CPU, median of 4 runs)" in md
    csv = pd.read_csv(result.out / "claims.csv")
    row = csv[(csv.claim == "eta0_best_small_S") & (csv.scope.str.endswith("S=10, eta=1")) & (csv.metric == "fid")]
    assert row[["plan_needed", "plan_new_images", "plan_nfe"]].values.tolist() == [[22, 290, 2900]]


def test_dry_run_shows_the_plan_per_cell_from_a_pilot_store(store, capsys):
    """The same plan per cell: eta=1 (K=5 in the store) takes part in one decidable comparison (K=22: 17 more repeats
    of 10 images = 170 images, x NFE 10 = 1,700 network evaluations, x 0.001 s = 1.7 s); eta=0.5 only in a near-0 one;
    eta=0.2 has no pilot run."""
    from clitools import cells

    from harness.report.pilot import PilotLines
    from harness.run.dryrun import print_plan

    print_plan(cells("dry_run=true", "S=10", "eta=0.2,0.5,1", "N=10", "repeats=5", f"tracking.uri={store.uri}"),
               PilotLines())
    out = capsys.readouterr().out.splitlines()
    lines = {line.split(" digits/sample")[0]: out[i + 1] for i, line in enumerate(out[:-1]) if "digits/sample [" in line}
    assert lines["S=10 eta=1"] == (
        f"  planner (pilot run {store.ids['eta1']}, K=5): 1 within-noise comparison(s); the hardest to decide, FID "
        "Table 1, digits 8x8, S=10, eta=1, needs K=22: this cell grown from K=5 samples 170 images, 1,700 NFE, ~2 s "
        "of CPU sampling")
    assert lines["S=10 eta=0.5"].startswith(f"  planner (pilot run {store.ids['eta05']}, K=5): 1 within-noise "
                                            "comparison(s); 1 near 0 (smallest detectable at K=5: FID eta=0.5: 0.665)")
    assert not lines["S=10 eta=0.2"].startswith("  planner")
