import numpy as np
import pytest
import torch

from harness.core.errors import HarnessError
from harness.diffusion.schedule import NoiseSchedule
from harness.diffusion.trajectory import step_pairs, timesteps


def test_linear_schedule_matches_official_construction():
    s = NoiseSchedule.linear()
    assert s.betas.dtype == torch.float64 and s.T == 1000
    np.testing.assert_array_equal(s.betas.numpy(), np.linspace(1e-4, 0.02, 1000, dtype=np.float64))
    expected = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))
    np.testing.assert_allclose(s.alpha_bar(torch.arange(1000)).numpy(), expected, rtol=1e-13)
    assert float(s.alpha_bar(-1)) == 1.0
    assert float(s.alpha_bar(0)) == pytest.approx(1 - 1e-4, abs=1e-15)
    assert 4.0e-5 < float(s.alpha_bar(999)) < 4.1e-5
    with pytest.raises(IndexError):
        s.alpha_bar(1000)


def test_uniform_trajectory_is_official_range():
    assert timesteps("uniform", 10) == list(range(0, 1000, 100))
    assert timesteps("uniform", 20)[-1] == 950
    assert timesteps("uniform", 50)[-1] == 980
    assert timesteps("uniform", 100)[-1] == 990
    assert timesteps("uniform", 1000) == list(range(1000))
    # S that does not divide T: more steps than asked for, and the NFE says so.
    assert len(timesteps("uniform", 30)) == 31
    assert len(timesteps("uniform", 300)) == 334


@pytest.mark.parametrize("S,unique", [(10, 10), (20, 20), (50, 49), (100, 96), (1000, 688)])
def test_quad_trajectory_matches_official_code(S, unique):
    tau = timesteps("quad", S)
    assert len(tau) == S  # NFE counts the repeats
    assert len(set(tau)) == unique
    assert tau[0] == 0 and tau[-1] == 800
    assert tau == sorted(tau)
    expected = [int(v) for v in np.linspace(0, np.sqrt(800.0), S) ** 2]
    assert tau == expected


def test_paper_readings_end_at_T():
    assert timesteps("linear_paper", 10) == [99, 199, 299, 399, 499, 599, 699, 799, 899, 999]
    q = timesteps("quad_paper", 10)
    assert q[-1] == 999 and q[0] == 9 and q == sorted(q)  # floor(10 * 1) - 1
    assert len(timesteps("linear_paper", 30)) == 30


@pytest.mark.parametrize("S", [0, -3, 1001, 2.5, "10"])
def test_bad_step_counts_are_refused(S):
    with pytest.raises(HarnessError, match="S .*1..1000"):
        timesteps("uniform", S)


def test_unknown_trajectory_is_refused():
    with pytest.raises(HarnessError, match="Unknown trajectory 'cubic'"):
        timesteps("cubic", 10)


def test_step_pairs_walk_down_to_the_data():
    assert step_pairs([0, 100, 200]) == [(200, 100), (100, 0), (0, -1)]
