"""The pure parts of the GPU and precision benchmarks, and a CPU smoke run of benchmarks/gpu.py."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import linalg

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gpu  # noqa: E402
import precision  # noqa: E402


def test_table1_cifar10_image_evaluations():
    """5 rows x 50,000 images x (10 + 20 + 50 + 100 + 1000) NFE: the quad tau has exactly S entries for these S."""
    assert gpu.table1_image_evaluations() == 5 * 50_000 * 1180


def test_bf16_peak_lookup_by_gpu_name():
    assert gpu.bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.4  # the SXM5 part
    assert gpu.bf16_peak_tflops("NVIDIA H100 PCIe") == 756.5
    assert gpu.bf16_peak_tflops("NVIDIA H100 NVL") == 835.5
    assert gpu.bf16_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu.bf16_peak_tflops("NVIDIA GeForce GTX 1080") is None


def test_frechet_distance_against_the_sqrtm_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(300, 6)) * 1.5 + 0.3
    mu_a, mu_b, cov_a, cov_b = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * linalg.sqrtm(cov_a @ cov_b).real)
    assert precision.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert precision.frechet_distance(a, a + 2.0) == pytest.approx(6 * 4.0, rel=1e-9)  # a shift moves only the means
    # fewer samples than features: singular covariances, whose zero eigenvalues come out as +-1e-16 (sqrt: 1e-8)
    assert abs(precision.frechet_distance(a[:5], a[:5])) < 1e-6


@pytest.mark.slow  # about 30 s on one loaded CPU core
def test_gpu_benchmark_smoke_runs_on_the_cpu(tmp_path):
    subprocess.run([sys.executable, str(BENCHMARKS / "gpu.py"), "--smoke", "--device", "cpu", "--out", str(tmp_path)],
                   check=True, capture_output=True, text=True, timeout=600)
    results = json.loads(next(tmp_path.glob("gpu-smoke-*.json")).read_text())["results"]
    assert results["smoke"] and results["model"] == "digits"
    assert {r["noise_scheme"] for r in results["sampler"]} == {"cpu-generator", "philox"}
    assert all(r["image_evals_per_s"] > 0 for r in results["sampler"])
    assert results["table1"]["image_evaluations"] == 295_000_000


def test_calibration_counts_coverage_and_verdicts_by_hand():
    """benchmarks/calibration.py's tally on 4 replications of K=2 paired repeats (b = 0): t(1) = 12.706, so only the
    third replication's interval, 5.00005 +- 12.706 * 5e-5, excludes the true difference 0 (a FAIL: FID lower is
    better); the other three hold 0."""
    import calibration

    a = np.array([[1.0, 3.0], [0.0, 0.2], [5.0, 5.0001], [-2.0, 2.0]])
    out = calibration.judge("fid", a, np.zeros_like(a), 2, truth_pop=0.0, truth_n=0.0)
    assert out["cover_pop"] == out["cover_N"] == 0.75
    assert (out["fail_rate"], out["pass_rate"], out["decided_rate"]) == (0.25, 0.0, 0.25)
    shifted = calibration.judge("fid", a, np.zeros_like(a), 2, truth_pop=None, truth_n=5.0)
    assert shifted["cover_pop"] is None and shifted["cover_N"] == 0.75  # 5 lies outside only 0.1 +- 1.27
