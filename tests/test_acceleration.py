"""prepare_model: precision and torch.compile options, and the record a run logs."""

import pytest
import torch
from torch import nn

from harness.models.acceleration import COMPILE_MODES, prepare_model, warm_up
from harness.core.errors import HarnessError
from harness.core.runtime import Autocast


class Tiny(nn.Module):
    """A small eps-model-shaped network: convolutions, GroupNorm, SiLU and a [1] timestep broadcast over the batch."""

    def __init__(self):
        super().__init__()
        self.conv1, self.norm, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(4, 8), nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x, t):
        h = nn.functional.silu(self.norm(self.conv1(x))) * torch.cos(t / 1000)[:, None, None, None]
        return self.conv2(h)


def test_default_is_the_eager_fp32_model_itself():
    model = Tiny().eval()
    prepared, record = prepare_model(model, device="cpu")
    assert prepared is model
    assert record == {"precision": "fp32", "compile": "none", "tf32": False, "autocast_dtype": None, "cuda_graphs": False}


def test_bf16_wraps_the_model_in_autocast():
    model = Tiny().eval()
    prepared, record = prepare_model(model, precision="bf16", compile="none", device="cpu")
    assert isinstance(prepared, Autocast) and prepared.model is model
    assert record["autocast_dtype"] == "bfloat16" and record["compile"] == "none"
    out = prepared(torch.randn(2, 1, 8, 8), torch.full((1,), 10.0))
    assert out.dtype == torch.float32


def test_bad_options_are_refused_naming_the_choices():
    with pytest.raises(HarnessError, match="Unknown compile mode 'fast'.*'none', 'default', 'reduce-overhead', 'max-autotune'"):
        prepare_model(Tiny(), compile="fast")
    with pytest.raises(HarnessError, match="Unknown compile mode True"):
        prepare_model(Tiny(), compile=True)
    with pytest.raises(HarnessError, match="Unknown precision 'fp8'"):
        prepare_model(Tiny(), precision="fp8")
    with pytest.raises(HarnessError, match="at least one call"):
        warm_up(Tiny(), torch.randn(1, 1, 8, 8), torch.zeros(1), calls=0)


def test_warm_up_times_the_calls():
    calls = []
    model = lambda x, t: calls.append(x.shape) or x  # noqa: E731
    assert warm_up(model, torch.zeros(3, 1, 8, 8), torch.zeros(1), calls=2) > 0
    assert calls == [(3, 1, 8, 8)] * 2


@pytest.mark.slow  # about 20 s on one CPU core: importing and running TorchInductor's C++ backend
def test_compiled_model_matches_the_eager_one():
    assert COMPILE_MODES[0] == "none"
    torch.manual_seed(0)
    model = Tiny().eval()
    x, t = torch.randn(4, 1, 8, 8), torch.full((1,), 500.0)
    for precision, tol in (("fp32", 1e-5), ("bf16", 2e-2)):
        eager, _ = prepare_model(model, precision=precision, compile="none")
        compiled, record = prepare_model(model, precision=precision, compile="default")
        assert record["compile"] == "default" and not record["cuda_graphs"]
        assert type(compiled._orig_mod) is type(eager)  # torch.compile's wrapper around the (precision-wrapped) model
        assert warm_up(compiled, x, t, calls=1) > 0
        with torch.no_grad():
            out, ref = compiled(x, t), eager(x, t)
        assert out.dtype == torch.float32 and (out - ref).abs().max() < tol, precision
