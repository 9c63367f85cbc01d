"""How the network is run: precision (``harness.core.runtime.apply_precision``) and, optionally, ``torch.compile``.

The default, fp32 without compile, is the paper's arithmetic. The other settings trade exactness for speed; a run
logs the record ``prepare_model`` returns, so its images can be told apart. Compile modes (``COMPILE_MODES``):

* ``"none"`` (default): the eager model.
* ``"default"``: TorchInductor kernels (fused elementwise ops, generated Triton or C++), no CUDA graphs.
* ``"reduce-overhead"``: as default, plus CUDA graphs on a GPU (one replay per step instead of hundreds of kernel
  launches); worth it where launches dominate (small batches).
* ``"max-autotune"``: benchmarks kernel choices (matmul/conv templates) at compile time, which takes much longer,
  and uses CUDA graphs on a GPU.

Models are compiled with ``dynamic=False``: each batch shape gets its own static kernels (and CUDA graph); a run
whose last batch is smaller compiles once more for it. With CUDA graphs, an output tensor is valid until the next
call of the model; the sampler uses each network output once, within its step. On the CPU CUDA graphs do not apply.
"""

from __future__ import annotations

import time

import torch

from harness.core.errors import HarnessError
from harness.core.runtime import apply_precision, check_precision

COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
AUTOCAST_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def check_compile_mode(mode: str) -> str:
    if mode not in COMPILE_MODES:
        raise HarnessError(
            f"Unknown compile mode {mode!r}: choose one of {COMPILE_MODES} ('none', the eager model, is the default)."
        )
    return mode


def prepare_model(
    model: torch.nn.Module, *, precision: str = "fp32", compile: str = "none", device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, dict]:
    """The model to sample with, and a record of what was applied (for the run's params/tags).

    ``precision`` as ``apply_precision``: fp32 (the paper's), tf32 (CUDA matmul/conv in TF32), bf16 or fp16 autocast.
    ``compile``: one of ``COMPILE_MODES`` (see the module docstring). ``compile="none"`` with fp32 returns ``model``
    itself. The model should already be on ``device`` and in eval mode. Compilation happens lazily, at the first call:
    time it with ``warm_up`` so that it is reported apart from the sampling time.
    """
    check_precision(precision)
    check_compile_mode(compile)
    device = torch.device(device)
    prepared = apply_precision(model, precision, device)
    if compile != "none":
        prepared = torch.compile(prepared, mode=None if compile == "default" else compile, dynamic=False)
    record = {
        "precision": precision,
        "compile": compile,
        "tf32": precision == "tf32" and device.type == "cuda",
        "autocast_dtype": AUTOCAST_DTYPES.get(precision),
        "cuda_graphs": compile in CUDA_GRAPH_MODES and device.type == "cuda",
    }
    return prepared, record


@torch.no_grad()
def warm_up(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, calls: int = 3) -> float:
    """Wall seconds of ``calls`` forwards on one batch (synchronised on a GPU): a compiled model compiles at the first
    and, with CUDA graphs, records its graph at the next ones, so this is the compile (and capture) time to report
    apart from the per-step time. Use the sampler's batch shape and a [1] timestep ``t``, as the sampler calls it."""
    if calls < 1:
        raise HarnessError(f"warm_up needs at least one call, got calls={calls}.")
    start = time.perf_counter()
    for _ in range(calls):
        model(x, t)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - start
