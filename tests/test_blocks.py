"""Issue 26: scoring at the paper's budget. A repeat of N images in K blocks: the headline is the metric of all N
pooled, the per-unit values are the delete-one-block jackknife's pseudo-values, and the report's paired interval over
them decides the claims (harness.metrics.blocks, docs/evidence.md)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from clitools import cells, harness, runs
from harness.core.errors import HarnessError
from harness.core.names import Metric, jackknife_estimate, per_repeat, repeat_stat
from harness.diffusion.analytic import frechet_distance, psd_sqrt
from harness.metrics import blocks as B
from harness.metrics.suite import Scoring, feature_metrics, score, score_blocks, summarize
from harness.report import claims as C
from harness.report.stats import paired_plan


pytestmark = pytest.mark.usefixtures("private_caches")  # clitools.private_caches


def test_frechet_jackknife_from_block_moments_equals_the_distances_of_the_subsets():
    rng = np.random.default_rng(0)
    x, ref = rng.normal(size=(60, 3)) + 0.3, rng.normal(size=(500, 3))
    mu, cov = ref.mean(0), np.cov(ref, rowvar=False)
    full, loo, alone = B.frechet_jackknife(x, 4, mu, psd_sqrt(cov), cov)
    fd = lambda rows: frechet_distance(rows.mean(0), np.cov(rows, rowvar=False), mu, cov)  # noqa: E731
    assert full == pytest.approx(fd(x), rel=1e-10)
    for k in range(4):
        assert loo[k] == pytest.approx(fd(np.delete(x, np.s_[15 * k:15 * (k + 1)], axis=0)), rel=1e-10)
        assert alone[k] == pytest.approx(fd(x[15 * k:15 * (k + 1)]), rel=1e-10)
    merged = B.merge_blocks(B.block_moments(x, 4), 2)  # 4 blocks summed pairwise: the moments of 2 blocks
    assert np.allclose(merged[2], B.block_moments(x, 2)[2])


def test_pseudo_values_of_a_mean_are_the_block_means_and_remove_a_c_over_n_bias():
    x = np.arange(12.0)[:, None]
    full, pseudo = B.jackknife({"x": x}, 3, lambda f: {"mean": float(f["x"].mean())})
    assert [p["mean"] for p in pseudo] == pytest.approx([1.5, 5.5, 9.5])
    # theta_n = mu + c / n: the pseudo-values' mean is mu exactly (Quenouille's bias correction)
    _, pseudo = B.jackknife({"x": x}, 4, lambda f: {"m": 2.0 + 7.0 / len(f["x"])})
    assert np.mean([p["m"] for p in pseudo]) == pytest.approx(2.0)


def test_blocks_must_divide_the_images(tmp_path):
    with pytest.raises(HarnessError, match="metrics.blocks"):
        B.check_blocks(50, 3)
    with pytest.raises(HarnessError, match=r"metrics.blocks=3 must divide N=50"):
        cells("N=50", "metrics.blocks=3", f"output_root={tmp_path}")


class Images(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def _digits_images(n: int) -> Images:
    from sklearn.datasets import load_digits

    x = torch.from_numpy(load_digits().images[:n]).float() * (255 / 16)
    return Images(x.round().to(torch.uint8)[:, None])


def test_a_blocked_cell_headline_is_the_metric_of_all_its_images_pooled():
    images = _digits_images(200)
    scoring = Scoring(reference="digits-train", feature_extractor="digits-cnn", image_size=8, kid_subset_size=50,
                      blocks=4)
    pooled, pseudo = score_blocks(images, 1, scoring, torch.device("cpu"))
    whole = score(images, 1, Scoring(**{**scoring.__dict__, "blocks": 1}), torch.device("cpu"))[0]
    assert pooled[0] == whole  # every metric: the same numbers as one repeat of all 200 images
    out = summarize(pooled, pseudo)
    assert out[Metric.FID] == whole[Metric.FID] and out[repeat_stat(Metric.FID, "min")] == whole[Metric.FID]
    assert [out[per_repeat(Metric.FID, k)] for k in range(4)] == [p[Metric.FID] for p in pseudo]
    # pseudo-value 2: 4 FID(all) - 3 FID(all but images 100..149)
    rest = score(Images(torch.cat([images.x[:100], images.x[150:]])), 1,
                 Scoring(**{**scoring.__dict__, "blocks": 1}), torch.device("cpu"))[0]
    assert pseudo[2][Metric.FID] == pytest.approx(4 * whole[Metric.FID] - 3 * rest[Metric.FID], rel=1e-9)
    assert out[jackknife_estimate(Metric.FID)] == pytest.approx(np.mean([p[Metric.FID] for p in pseudo]))
    low, high = out[repeat_stat(Metric.FID, "ci95_low")], out[repeat_stat(Metric.FID, "ci95_high")]
    assert low < whole[Metric.FID] < high and high - whole[Metric.FID] == pytest.approx(whole[Metric.FID] - low)
    assert Metric.PRC_PRECISION in out and per_repeat(Metric.PRC_PRECISION, 0) not in out  # pooled only


@pytest.mark.slow
def test_a_paper_scale_cell_run_logs_the_pooled_metric_and_its_pseudo_values(tmp_path):
    args = ["N=50", "repeats=1", "metrics.blocks=5", "S=3", "batch_size=50", "job.grid_images=8",
            "metrics.kid_subset_size=20"]
    harness(tmp_path, *args)
    run = runs(tmp_path).iloc[0]
    assert run["params.blocks"] == "5" and run["status"] == "FINISHED"
    cell = cells(*args, f"output_root={tmp_path / 'out'}")[0]
    from harness.run.shards import images_store

    images = images_store(cell).images(50)
    whole = score(images, 1, Scoring(reference="digits-train", feature_extractor="digits-cnn", image_size=8,
                                     kid_subset_size=20), torch.device("cpu"))[0]
    assert run[f"metrics.{Metric.FID}"] == pytest.approx(whole[Metric.FID], rel=1e-12)
    pseudo = [run[f"metrics.{per_repeat(Metric.FID, k)}"] for k in range(5)]
    assert all(math.isfinite(p) for p in pseudo) and f"metrics.{per_repeat(Metric.FID, 5)}" not in run


def _cell(run_id: str, values: list[float], blocks: int = 10, N: int = 50000, value: float | None = None) -> pd.Series:
    return pd.Series({"run_id": run_id, "value": float(np.mean(values)) if value is None else value, "repeats": 1,
                      "blocks": blocks, "seed": 0, "N": N, **{f"r{k}": v for k, v in enumerate(values)}})


def test_blocked_cells_decide_on_the_pseudo_values_for_frechet_distances_only():
    a, b = _cell("a", [3.0 + 0.1 * k for k in range(10)]), _cell("b", [4.0 + 0.1 * (k % 3) for k in range(10)])
    check = C.paired(Metric.FID, "Table 1, CIFAR-10", "x", a, b, "eta=0", "eta=1")
    assert check.verdict == C.PASS and check.K == 10 and "block jackknife over K=10 blocks of 5,000" in check.evidence
    kid = C.paired(Metric.KID, "Table 1, CIFAR-10", "x", a, b, "eta=0", "eta=1")
    assert kid.verdict == C.UNCALIBRATED and kid.interval is not None
    prc = C.paired(Metric.PRC_RECALL, "t", "x", _cell("a", [], value=0.5), _cell("b", [], value=0.6), "a", "b")
    assert prc.verdict == C.UNCALIBRATED and "pooled" in prc.evidence
    mixed = C.paired(Metric.FID, "t", "x", a, _cell("b", [4.0] * 10, blocks=5), "a", "b")
    assert mixed.verdict == C.NO_DATA and "blocks 10 vs 5" in mixed.evidence


def test_the_planner_prices_blocks_in_images_per_cell():
    plan = paired_plan(0.05, 0.4, 10, 5000, 10, 10, 2e-4, unit="blocks")
    assert plan.unit == "blocks" and plan.per_unit == 5000 and plan.repeats > 10
    assert plan.images == 2 * (plan.repeats - 10) * 5000 and plan.seconds == pytest.approx(plan.nfe * 2e-4)
    text = C.plan_text(plan, C.Rate(2e-4, 0, "given"))
    assert f"{plan.repeats * 5000:,} images per cell (K={plan.repeats} blocks of 5,000)" in text
    assert "at the given rate" in text


def test_the_default_metric_settings_are_torch_fidelitys_and_the_digits_keep_theirs():
    from torch_fidelity.defaults import DEFAULTS

    cell = cells("S=10", "eta=0")[0]
    assert cell.metrics["kid_subsets"] == DEFAULTS["kid_subsets"] and cell.metrics["blocks"] == 1 and cell.blocks == 1
    assert tuple(cell.metrics["fid_inf_fractions"]) == Scoring.fid_inf_fractions
    paper = cells("dataset=cifar10", "S=10", "eta=0", "dry_run=true")[0]
    assert paper.blocks == 10 and paper.params()["blocks"] == 10 and "blocks" not in cell.params()
    assert cells("S=10", "eta=0", "metrics.kid_subsets=50")[0].key != cell.key  # in the key: a new result


def test_feature_metrics_use_the_configured_kid_subsets():
    g = torch.Generator().manual_seed(0)
    feats = {("digits-cnn", "penultimate"): torch.rand(60, 4, generator=g)}
    ref = {("digits-cnn", "penultimate"): torch.rand(80, 4, generator=g)}
    base = Scoring(reference="r", feature_extractor="digits-cnn", image_size=32, kid_subset_size=20)
    few = feature_metrics(feats, ref, Scoring(**{**base.__dict__, "kid_subsets": 3}), prc=False)
    assert few[Metric.KID] != feature_metrics(feats, ref, base, prc=False)[Metric.KID]
    assert Metric.PRC_PRECISION not in few


def test_edm_convention_three_repeats_show_the_minimum_beside_the_mean_and_interval():
    from harness.report.tables import _edm_min

    pooled = [{Metric.FID: v} for v in (3.2, 3.0, 3.4)]
    pseudo = [{Metric.FID: 3.0 + 0.01 * k} for k in range(30)]
    out = summarize(pooled, pseudo)
    assert out[Metric.FID] == pytest.approx(3.2) and out[repeat_stat(Metric.FID, "min")] == 3.0
    assert out[repeat_stat(Metric.FID, "ci95_low")] < 3.2 < out[repeat_stat(Metric.FID, "ci95_high")]
    assert per_repeat(Metric.FID, 29) in out
    assert _edm_min(3.0, 3, 10, Metric.FID) == " min 3.00"
    assert _edm_min(3.0, 1, 10, Metric.FID) == "" and _edm_min(3.0, 3, 1, Metric.FID) == ""
