"""The generative process against closed forms, with an analytic (Gaussian-mixture) noise predictor."""

import math

import numpy as np
import pytest
import torch

from harness.diffusion.analytic import GaussianMixtureEps
from harness.core.errors import HarnessError
from harness.diffusion.noise import ImageNoise
from harness.diffusion.sampling import (
    decode,
    encode,
    generalized_step,
    parse_eta,
    process_steps,
    reconstruction_mse,
    sample,
    sample_seeded,
    sigma_eta,
    sigma_hat,
    sigma_hat_step,
)
from harness.diffusion.schedule import NoiseSchedule
from harness.diffusion.trajectory import step_pairs, timesteps

SCHEDULE = NoiseSchedule.linear()


def mixture(dim=4, seed=0):
    """Two well-separated modes whose mass lies inside [-1, 1], like image data."""
    g = torch.Generator().manual_seed(seed)
    means = torch.stack([torch.full((dim,), -0.4), torch.full((dim,), 0.5)]) + 0.05 * torch.randn(2, dim, generator=g)
    return GaussianMixtureEps(SCHEDULE, means, stds=[0.1, 0.12], weights=[0.4, 0.6])


class RecordingNoise:
    """An ImageNoise that remembers every draw, so a test can replay the process independently."""

    def __init__(self, seed, n):
        self.inner = ImageNoise(seed, range(n))
        self.draws = []

    def randn(self, *shape):
        z = self.inner.randn(*shape)
        self.draws.append(z)
        return z


def closed_form_d3(x, eps, a_t, a_prev, sigma, z):
    """App. D.3, written in float64 NumPy in the paper's arrangement."""
    x, eps = x.astype(np.float64), eps.astype(np.float64)
    out = math.sqrt(a_prev) * (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    out = out + math.sqrt(1 - a_prev - sigma**2) * eps
    if z is not None:
        out = out + sigma * z.astype(np.float64)
    return out


@pytest.mark.parametrize("eta", [0.0, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("kind", ["uniform", "quad"])
def test_every_update_equals_the_closed_form(eta, kind):
    model = mixture()
    tau = timesteps(kind, 20)
    noise = RecordingNoise(7, 64)
    x_T = noise.inner.randn(4)
    states = [x_T]
    sample(model, x_T, tau, SCHEDULE, eta, noise, callback=lambda i, t, x, x0: states.append(x))
    draws = iter(noise.draws)
    worst = 0.0
    for k, (t, t_prev) in enumerate(step_pairs(tau)):
        a_t, a_prev = float(SCHEDULE.alpha_bar(t)), float(SCHEDULE.alpha_bar(t_prev))
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) if a_t != a_prev else 0.0
        z = next(draws).numpy() if sigma > 0 else None
        x = states[k]
        eps = model(x, torch.full((x.shape[0],), float(t))).numpy()
        expected = closed_form_d3(x.numpy(), eps, a_t, a_prev, sigma, z)
        worst = max(worst, float(np.abs(states[k + 1].numpy() - expected).max()))
    assert next(draws, None) is None  # no noise drawn that the process did not use
    assert worst < 2e-6, worst  # float32 arithmetic against the float64 closed form


def test_sigma_hat_update_is_the_posterior_mean_with_clipped_x0():
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(16, 4, generator=g) * 1.6 - 0.8  # inside [-1, 1]: clipping inactive
    eps = torch.randn(16, 4, generator=g, dtype=torch.float64).float()
    z = torch.randn(16, 4, generator=g)
    for t, t_prev in [(900, 800), (100, 0), (50, 49)]:
        a_t, a_prev = float(SCHEDULE.alpha_bar(t)), float(SCHEDULE.alpha_bar(t_prev))
        x_t = math.sqrt(a_t) * x0 + math.sqrt(1 - a_t) * eps
        got, _ = sigma_hat_step(x_t, eps, a_t, a_prev, z)
        # App. D.3, second equation: the eta=1 mean with sigma-hat as the noise scale.
        expected = closed_form_d3(x_t.numpy(), eps.numpy(), a_t, a_prev, sigma_eta(a_t, a_prev, 1.0), None)
        expected = expected + sigma_hat(a_t, a_prev) * z.numpy()
        np.testing.assert_allclose(got.numpy(), expected, atol=3e-5)
    # Outside [-1, 1] the official sampler clips the prediction, which changes the step.
    a_t, a_prev = float(SCHEDULE.alpha_bar(500)), float(SCHEDULE.alpha_bar(400))
    x_t = math.sqrt(a_t) * torch.full((1, 4), 3.0)
    _, x0_pred = sigma_hat_step(x_t, torch.zeros(1, 4), a_t, a_prev, None)
    assert float(x0_pred.max()) == 1.0


def test_lemma1_marginals_by_monte_carlo():
    """Running q_sigma(x_prev | x_t, x0) (eq. 7) down tau keeps q(x_t | x0) = N(sqrt(a_t) x0, (1 - a_t) I)."""
    n, x0 = 200_000, torch.tensor([0.7, -0.3])
    g = torch.Generator().manual_seed(11)
    tau = timesteps("uniform", 10)
    for eta in (0.0, 0.5, 1.0):
        a_T = float(SCHEDULE.alpha_bar(tau[-1]))
        x = math.sqrt(a_T) * x0 + math.sqrt(1 - a_T) * torch.randn(n, 2, generator=g, dtype=torch.float64)
        for t, t_prev in step_pairs(tau)[:-1]:
            a_t, a_prev = float(SCHEDULE.alpha_bar(t)), float(SCHEDULE.alpha_bar(t_prev))
            true_eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
            z = torch.randn(n, 2, generator=g, dtype=torch.float64)
            x, _ = generalized_step(x, true_eps, a_t, a_prev, sigma_eta(a_t, a_prev, eta), z)
            mean_err = (x.mean(0) - math.sqrt(a_prev) * x0).abs().max() / math.sqrt((1 - a_prev) / n)
            var_err = (x.var(0) / (1 - a_prev) - 1).abs().max() / math.sqrt(2 / n)
            assert mean_err < 5 and var_err < 5, (eta, t_prev, float(mean_err), float(var_err))


def test_eta_zero_is_deterministic_and_ignores_the_noise_stream():
    model, tau = mixture(), timesteps("uniform", 10)
    x_T = ImageNoise(0, range(32)).randn(4)
    a = sample(model, x_T, tau, SCHEDULE, 0.0, ImageNoise(1, range(32)))
    b = sample(model, x_T, tau, SCHEDULE, 0.0, ImageNoise(2, range(32)))
    assert torch.equal(a, b)
    c = sample(model, x_T, tau, SCHEDULE, 1.0, ImageNoise(1, range(32)))
    d = sample(model, x_T, tau, SCHEDULE, 1.0, ImageNoise(2, range(32)))
    assert not torch.equal(c, d)


def test_same_latent_gives_close_samples_across_step_counts():
    model = mixture()
    x_T = ImageNoise(5, range(2000)).randn(4)
    ref = sample(model, x_T, timesteps("uniform", 1000), SCHEDULE, 0.0)
    unrelated = (ref - ref.roll(1, 0)).norm(dim=1).mean()
    for S in (20, 50, 100):
        got = sample(model, x_T, timesteps("uniform", S), SCHEDULE, 0.0)
        assert (got - ref).norm(dim=1).mean() < 0.1 * unrelated


class BatchNoise:
    """One generator for the whole batch: fast, for statistics that do not need per-image streams."""

    def __init__(self, seed, n):
        self.g, self.n = torch.Generator().manual_seed(seed), n

    def randn(self, *shape):
        return torch.randn((self.n,) + shape, generator=self.g)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sample_statistics_approach_the_data_as_S_grows(eta):
    model = GaussianMixtureEps(SCHEDULE, torch.full((1, 2), 0.3), stds=[0.5])
    errors = {}
    for S in (10, 100, 1000):
        noise = BatchNoise(3, 20_000)
        x = sample(model, noise.randn(2), timesteps("uniform", S), SCHEDULE, eta, noise).double()
        errors[S] = float((x.mean(0) - 0.3).abs().max() + (x.std(0) - 0.5).abs().max())
    # measured: S=10 ~0.13 (eta 0) / 0.17 (eta 1), S=100 ~0.02 / 0.04, S=1000 ~0.006 / 0.009 (Monte Carlo floor ~0.006)
    assert errors[10] > errors[100] > errors[1000], errors
    assert errors[1000] < 0.03, errors


def test_encode_decode_error_falls_with_S():
    model = mixture(dim=8)
    x0 = model.sample_data(256, torch.Generator().manual_seed(4)).float()
    mse = {}
    for S in (10, 20, 50, 100, 1000):
        tau = timesteps("uniform", S)
        mse[S] = float(reconstruction_mse(x0, decode(model, encode(model, x0, tau, SCHEDULE), tau, SCHEDULE)).mean())
    assert mse[10] > mse[20] > mse[50] > mse[100] > mse[1000], mse
    assert mse[1000] < 1e-5 and mse[1000] < mse[10] / 500, mse


def test_encoding_reaches_the_prior():
    model = mixture(dim=8)
    x0 = model.sample_data(4000, torch.Generator().manual_seed(5)).float()
    x_T = encode(model, x0, timesteps("uniform", 1000), SCHEDULE)
    assert abs(float(x_T.mean())) < 0.02 and abs(float(x_T.std()) - 1) < 0.02


def test_sigma_eta_one_is_the_ddpm_posterior_std_and_sigma_hat_is_larger():
    betas = SCHEDULE.betas
    for t in range(1, 1000):
        a_t, a_prev = float(SCHEDULE.alpha_bar(t)), float(SCHEDULE.alpha_bar(t - 1))
        posterior_var = (1 - a_prev) / (1 - a_t) * float(betas[t])  # Ho et al. beta-tilde_t
        assert sigma_eta(a_t, a_prev, 1.0) == pytest.approx(math.sqrt(posterior_var), rel=1e-9)
        assert sigma_hat(a_t, a_prev) == pytest.approx(math.sqrt(float(betas[t])), rel=1e-9)
    for kind in ("uniform", "quad"):
        for S in (10, 50, 1000):
            for (t, a_t, a_prev, s1), (_, _, _, sh) in zip(
                process_steps(timesteps(kind, S), SCHEDULE, 1.0), process_steps(timesteps(kind, S), SCHEDULE, "hat")
            ):
                assert sh >= s1 - 1e-15


def test_eta_validation():
    assert parse_eta(0) == 0.0 and parse_eta("0.5") == 0.5 and parse_eta("hat") == "hat"
    for bad in (-0.1, "sigma", float("nan"), True):
        with pytest.raises(HarnessError, match="eta must be a number >= 0 or 'hat'"):
            parse_eta(bad)
    with pytest.raises(HarnessError, match="too large"):
        process_steps(timesteps("uniform", 10), SCHEDULE, 3.0)


def test_images_do_not_depend_on_batch_size():
    model, tau = mixture(), timesteps("uniform", 10)
    for eta in (0.0, 1.0, "hat"):
        whole = sample_seeded(model, range(8), 42, (4,), tau, SCHEDULE, eta)
        parts = torch.cat([sample_seeded(model, idx, 42, (4,), tau, SCHEDULE, eta) for idx in ([0, 1, 2], [3, 4, 5], [6, 7])])
        assert torch.equal(whole, parts)
        reordered = sample_seeded(model, [5, 2], 42, (4,), tau, SCHEDULE, eta)
        assert torch.equal(reordered, whole[[5, 2]])


def test_unet_images_do_not_depend_on_batch_size():
    """Images 0..7 sampled in one batch of 8 and in batches of 3, 3, 2 (and 1) with the digits U-Net: bitwise equal."""
    from omegaconf import OmegaConf

    from harness.diffusion.unet import build_unet

    torch.manual_seed(0)
    model = build_unet(OmegaConf.load("conf/model/digits.yaml").architecture).eval()
    tau = timesteps("uniform", 10)
    for eta in (0.0, 1.0):
        whole = sample_seeded(model, range(8), 1, (1, 8, 8), tau, SCHEDULE, eta)
        parts = [sample_seeded(model, idx, 1, (1, 8, 8), tau, SCHEDULE, eta) for idx in ([0, 1, 2], [3, 4, 5], [6], [7])]
        assert torch.equal(whole, torch.cat(parts))


def test_prefetched_noise_is_the_same_stream():
    """The CUDA path draws several steps of noise at once; the values must equal step-by-step draws."""
    one, block = ImageNoise(9, [4, 0, 7]), ImageNoise(9, [4, 0, 7], prefetch=4)
    for _ in range(10):
        assert torch.equal(one.randn(1, 8, 8), block.randn(1, 8, 8))
