"""The exact-score datasets: closed-form eps*, moments, the Frechet distance / W2 and the log-SNR-linear schedule."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from harness.diffusion.analytic import (
    exact_mixture,
    exact_mixtures,
    frechet_distance,
    gaussian_w2,
    log_snr_linear_schedule,
)
from harness.core.errors import HarnessError
from harness.diffusion.schedule import NoiseSchedule

SCHEDULE = NoiseSchedule.linear()


def test_registry_names_shapes_and_unknown_name():
    mixtures = exact_mixtures()
    shapes = {name: m.shape for name, m in mixtures.items()}
    assert shapes == {"ring2d": (2,), "glyphs64": (1, 8, 8), "gaussian64": (1, 8, 8)}
    for m in mixtures.values():
        assert abs(float(m.weights.sum()) - 1) < 1e-12 and len(m.stds) == len(m.weights) == m.means.shape[0]
    with pytest.raises(HarnessError, match="Unknown exact-score dataset 'moons'.*ring2d"):
        exact_mixture("moons")


@pytest.mark.parametrize("name", ["ring2d", "glyphs64", "gaussian64"])
def test_eps_is_minus_sqrt_one_minus_a_times_the_score(name):
    """eps*(x, t) = -sqrt(1 - a_t) grad log q_t(x), with log q_t written directly and differentiated by autograd."""
    data = exact_mixture(name)
    model = data.eps_model(SCHEDULE)
    g = torch.Generator().manual_seed(0)
    for t in (0, 250, 999):
        a = float(SCHEDULE.alpha_bar(t))
        x = (math.sqrt(a) * data.sample(16, g) + math.sqrt(1 - a) * torch.randn(16, *data.shape, generator=g,
                                                                                  dtype=torch.float64)).requires_grad_()
        v = a * data.stds**2 + 1 - a
        sq = (x.flatten(1)[:, None, :] - math.sqrt(a) * data.means.flatten(1)[None]).pow(2).sum(-1)
        d = x[0].numel()
        log_q = torch.logsumexp(torch.log(data.weights) - 0.5 * sq / v - 0.5 * d * torch.log(2 * math.pi * v), dim=1)
        (score,) = torch.autograd.grad(log_q.sum(), x)
        eps = model(x.detach(), torch.full((1,), float(t)))
        assert torch.allclose(eps, -math.sqrt(1 - a) * score, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name,n", [("ring2d", 200_000), ("glyphs64", 50_000)])
def test_closed_form_moments_match_samples(name, n):
    data = exact_mixture(name)
    x = data.sample(n, torch.Generator().manual_seed(1)).flatten(1).numpy()
    mean, cov = data.mean(), data.covariance()
    assert np.abs(x.mean(0) - mean).max() < 5 * math.sqrt(np.diag(cov).max() / n)
    assert np.abs(np.cov(x, rowvar=False) - cov).max() < 0.02
    assert np.allclose(cov, cov.T) and np.linalg.eigvalsh(cov).min() > 0


def test_frechet_distance_equals_the_sqrtm_formula():
    """Against |mu1 - mu2|^2 + tr(C1 + C2 - 2 sqrtm(C1 C2)) with scipy's sqrtm, and with tr sqrtm(C1 C2) as the sum
    of the square roots of the eigenvalues of C1 C2 (torch-fidelity 0.4's way). With a singular C1 every method takes
    square roots of round-off eigenvalues (~1e-15 -> ~3e-8), hence the looser tolerance there."""
    rng = np.random.default_rng(0)
    for rank, rel in ((6, 1e-9), (3, 1e-7)):
        a, b = rng.normal(size=(6, rank)), rng.normal(size=(6, 6))
        c1, c2 = a @ a.T, b @ b.T + 0.1 * np.eye(6)
        mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
        base = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2)
        by_sqrtm = base - 2 * np.trace(scipy.linalg.sqrtm(c1 @ c2).real)
        by_eigvals = base - 2 * np.sqrt(np.clip(np.linalg.eigvals(c1 @ c2).real, 0, None)).sum()
        got = frechet_distance(mu1, c1, mu2, c2)
        assert got == pytest.approx(by_eigvals, rel=rel) and got == pytest.approx(by_sqrtm, rel=rel)
        assert frechet_distance(mu2, c2, mu1, c1) == pytest.approx(got, rel=rel)
    assert abs(frechet_distance(mu1, c2, mu1, c2)) < 1e-10


def test_gaussian_w2_closed_forms():
    """1-D: W2(N(m1, s1^2), N(m2, s2^2)) = sqrt((m1 - m2)^2 + (s1 - s2)^2); isotropic in D dims: D (s1 - s2)^2."""
    assert gaussian_w2([0.3], [[0.25]], [-0.1], [[0.04]]) == pytest.approx(math.hypot(0.4, 0.3), rel=1e-12)
    d = 64
    w2 = gaussian_w2(np.zeros(d), 0.25 * np.eye(d), np.ones(d) * 0.1, np.eye(d))
    assert w2 == pytest.approx(math.sqrt(d * 0.01 + d * 0.25), rel=1e-12)
    data = exact_mixture("gaussian64")
    assert gaussian_w2(data.mean(), data.covariance(), data.means[0].flatten().numpy(), 0.25 * np.eye(d)) < 1e-12


def test_log_snr_linear_schedule():
    schedule = log_snr_linear_schedule(T=961, lambda_max=10.0, lambda_min=-5.0)
    a = schedule.alpha_bar(torch.arange(961))
    lam = 0.5 * (torch.log(a) - torch.log1p(-a))
    assert torch.allclose(lam, torch.linspace(10.0, -5.0, 961, dtype=torch.float64), atol=1e-6)
    assert float(schedule.alpha_bar(-1)) == 1.0 and schedule.T == 961


def test_every_sampler_runs_through_the_harness_on_exact_and_digits_data(tmp_path, private_caches):
    """Each sampler as a cell through the runner (in this process): finite samples and logged metrics, on the
    exact-score Gaussian (flow error, exact W2) and on the shipped digits model at NFE 10 and 20."""
    import math as _math

    import mlflow

    from clitools import cells
    from harness.run.runner import run_cell
    from harness.diffusion.samplers import SAMPLERS

    common = [f"output_root={tmp_path / 'out'}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "progress=false",
              f"sampler={','.join(SAMPLERS)}"]
    planned = cells("dataset=gmm_gaussian64", "nfe=10", "N=32", "repeats=1", *common)
    planned += cells("nfe=10,20", "N=8", "repeats=1", "batch_size=8", *common)
    assert len(planned) == 3 * len(SAMPLERS)
    for cell in planned:
        outcome = run_cell(cell)
        assert outcome.status == "FINISHED", (cell.run_name, outcome.error)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ddim-harness").experiment_id], max_results=100)
    assert len(runs) == len(planned)
    for run in runs:
        m, p = run.data.metrics, run.data.params
        assert m["nfe_counted"] == int(p["nfe"]) <= 20  # counted = planned, at most the target
        headline = "flow_rmse" if p["dataset"] == "gmm_gaussian64" else "fid"
        assert _math.isfinite(m[headline]) and m[headline] >= 0
        if p["dataset"] == "gmm_gaussian64":
            assert _math.isfinite(m["w2_exact"]) and m["w2_exact"] >= 0 and _math.isfinite(m["fd_true"])
