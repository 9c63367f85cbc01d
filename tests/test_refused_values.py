"""Issue 20, problem 7: absurd values are refused when the cell is built, before any model, data or store is touched,
with one line naming the fix (they used to end in NaN metrics or an OverflowError traceback after sampling)."""

from __future__ import annotations

import pytest

from clitools import TINY, cells, harness
from harness.core.errors import HarnessError


REFUSED = {
    ("metrics.kid_subset_size=0",): "metrics.kid_subset_size must be an integer >= 2, got 0",
    ("metrics.kid_subset_size=1",): "metrics.kid_subset_size must be an integer >= 2, got 1",
    ("eta=1e308",): "eta=1e+308 is too large for the step 980 -> 960",
    ("eta=1e308", "S=1000"): "eta=1e+308 is too large for the step 999 -> 998",
    ("metrics.prc_neighborhood=0",): "metrics.prc_neighborhood must be an integer >= 1, got 0",
    ("N=3", "metrics.prc_neighborhood=3"): "precision/recall needs more than metrics.prc_neighborhood=3 images per repeat",
    ("metrics.kid_subsets=0",): "metrics.kid_subsets must be an integer >= 1, got 0",
    ("metrics.fid_inf_draws=0",): "metrics.fid_inf_draws must be an integer >= 1, got 0",
    ("metrics.fid_inf_fractions=[0.5,1.5]",): "metrics.fid_inf_fractions must be fractions in (0, 1]",
    ("metrics.blocks=0",): "metrics.blocks must be an integer >= 1, got 0",
    ("N=250", "metrics.blocks=3"): "metrics.blocks=3 must divide N=250 into blocks of at least 2 images",
    ("metrics.batch_size=0",): "metrics.batch_size must be an integer >= 1, got 0",
    ("metrics.cmmd=true", "metrics.cmmd_estimator=vstat"): "metrics.cmmd_estimator='vstat' is not an estimator",
    ("metrics.fd_dinov2=true", "metrics.vit_batch_size=0"): "metrics.vit_batch_size must be an integer >= 1, got 0",
    ("job.grid_images=0",): "job.grid_images must be an integer >= 1, got 0",
    ("job.grid_scale=-1",): "job.grid_scale must be an integer >= 1, got -1",
    ("diffusion.beta_end=5",): "are not a noise schedule: set 0 < beta_start <= beta_end < 1",
    ("diffusion.beta_start=nan",): "are not a noise schedule",
    ("dataset=gmm_ring2d", "diffusion.schedule=log_snr", "diffusion.lambda_min=20"): "are not a log-SNR schedule",
}


@pytest.mark.parametrize("overrides", list(REFUSED), ids=" ".join)
def test_absurd_values_are_refused_when_the_cell_is_built(overrides):
    with pytest.raises(HarnessError) as err:
        cells(*overrides)
    assert REFUSED[overrides] in str(err.value)


def test_negative_zero_eta_is_eta_zero():
    minus, zero = cells("eta=-0.0")[0], cells("eta=0")[0]
    assert minus.eta_label == "0" and minus.key == zero.key


@pytest.mark.slow
def test_refused_on_the_command_line_before_any_work(tmp_path):
    for i, (value, says) in enumerate((("metrics.kid_subset_size=0", REFUSED[("metrics.kid_subset_size=0",)]),
                                       ("eta=1e308", "eta=1e+308 is too large for the step 999 -> 666: sigma^2"))):
        proc = harness(tmp_path / str(i), *TINY, value, check=False)
        text = (proc.stdout + proc.stderr).strip()
        assert proc.returncode == 2 and text.startswith("error: ") and "\n" not in text and says in text, text
        assert not (tmp_path / str(i) / "out" / "images").exists() or not any((tmp_path / str(i) / "out" / "images").iterdir())
