"""GPU benchmark, one short call (a few minutes; --compile adds the compile times): the CIFAR-10 U-Net
(conf/model/cifar10.yaml, random weights) and the sampler on one CUDA device.

1. Forward throughput at --batch (256) per precision mode, through the harness's own ``apply_precision``:
   fp32 (TF32 off, the paper's), tf32, bf16 autocast, channels_last (fp32) and channels_last + bf16; with
   ``--compile fp32,bf16`` also ``torch.compile``d models, their compile time (the first call) reported apart.
2. The hours to sample 50,000 images at S = 10, 100, 1000 from that throughput (NFE = S), against the paper's
   Figure 4 reading: about 20 h for 50,000 CIFAR-10 images at 1000 steps on one GTX 2080 Ti (1000 NFE per
   image; S = 10 and 100 scaled linearly from it, as the figure is).
3. The sampler overhead ratio on the GPU (as benchmarks/sampler_overhead.py, with torch.cuda.synchronize):
   CIFAR-10 at batch 256 and the digits model (shipped weights) at batch 500, fp32, eta 0 and 1.

    python benchmarks/gpu.py                     # writes benchmarks/results/gpu-cuda-<gpu>.json
    python benchmarks/gpu.py --compile fp32,bf16 --out $OUT

Needs only torch, numpy, PyYAML and tqdm besides the harness's files (no Hydra, MLflow or torch-fidelity), so it
runs from a bare checkout. Without a CUDA device it says so and exits with status 0, measuring nothing.
"""

from __future__ import annotations

import argparse
import sys
import time

import common  # noqa: F401  (puts the repository on sys.path)
import torch
from common import Bench, load_model, measure, print_table

PAPER_HOURS_1000 = 20.0  # Figure 4, CIFAR-10: ~20 h for 50k images at 1000 steps on one 2080 Ti
MODES = {  # name: (harness precision, channels_last)
    "fp32": ("fp32", False), "tf32": ("tf32", False), "bf16": ("bf16", False),
    "channels_last": ("fp32", True), "channels_last+bf16": ("bf16", True),
}


def prepare(model, mode, x, device):
    """(model, input) for a mode: TF32 flags / autocast as the harness sets them, and the memory format."""
    from harness.runtime import apply_precision

    precision, channels_last = MODES[mode]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return apply_precision(model.to(memory_format=fmt), precision, device), x.contiguous(memory_format=fmt)


def hours_50k(images_per_s: float, steps: int) -> float:
    return 50_000 * steps / images_per_s / 3600


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards per mode (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", default="", help="comma-separated modes to also run torch.compile'd, e.g. fp32,bf16")
    parser.add_argument("--overhead-steps", type=int, default=20, help="S of the sampler-overhead runs (uniform tau)")
    parser.add_argument("--overhead-repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="folder for the JSON (default benchmarks/results)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(f"gpu.py: no CUDA device is available here (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda or 'none'}); nothing was measured. Run it on a machine with an NVIDIA GPU.",
              file=sys.stderr)
        return 0
    from sampler_overhead import overhead

    bench = Bench("gpu", args)
    device = torch.device(args.device)
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.set_device(device)
    model, shape, weights = load_model("cifar10", device)
    x = torch.randn(args.batch, *shape, device=device)
    t = torch.full((1,), 500.0, device=device)

    rows = []
    for mode in MODES:
        m, xm = prepare(model, mode, x, device)
        timing = measure(lambda: m(xm, t), device, args.repeats, args.warmup)
        rows.append({"mode": mode, "compile_s": None, **timing})
    failed = []
    for mode in filter(None, args.compile.split(",")):
        m, xm = prepare(model, mode, x, device)
        compiled = torch.compile(m)
        start = time.perf_counter()
        try:
            with torch.no_grad():
                compiled(xm, t)
            torch.cuda.synchronize(device)
        except Exception as exc:  # a failed compile is a result too; the other numbers still count
            print(f"torch.compile ({mode}) failed: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
            failed.append({"mode": mode, "error": f"{type(exc).__name__}: {exc}"[:2000]})
            continue
        compile_s = time.perf_counter() - start
        timing = measure(lambda: compiled(xm, t), device, args.repeats, args.warmup)
        rows.append({"mode": f"compile:{mode}", "compile_s": compile_s, **timing})
    model, _ = prepare(model, "fp32", x, device)  # back to the default for the sampler
    for r in rows:
        r["images_per_s"] = args.batch / r["median_s"]
        r["forward_ms"] = 1000 * r["median_s"]
        r.update({f"hours_S{s}": hours_50k(r["images_per_s"], s) for s in (10, 100, 1000)})
        r["speedup_vs_paper_1000"] = PAPER_HOURS_1000 / r["hours_S1000"]
    paper = {"mode": "paper (2080 Ti, Fig. 4)", "hours_S10": PAPER_HOURS_1000 / 100, "hours_S100": PAPER_HOURS_1000 / 10,
             "hours_S1000": PAPER_HOURS_1000}
    print_table(rows + [paper], [
        ("mode", "mode", "s"), ("forward_ms", f"ms/fwd (b={args.batch})", ".2f"), ("images_per_s", "img-NFE/s", ".0f"),
        ("compile_s", "compile s", ".1f"), ("hours_S10", "h 50k S=10", ".3f"), ("hours_S100", "h 50k S=100", ".2f"),
        ("hours_S1000", "h 50k S=1000", ".2f"), ("speedup_vs_paper_1000", "x paper", ".3g")],
        f"CIFAR-10 U-Net ({weights}) forward on {torch.cuda.get_device_name(device)}")

    sampler = {}
    for name, batch in (("cifar10", args.batch), ("digits", 500)):
        net, net_shape, net_weights = (model, shape, weights) if name == "cifar10" else load_model("digits", device)
        sampler[name] = overhead(net, net_shape, batch, args.overhead_steps, device, args.overhead_repeats, 1)
        sampler[name]["weights"] = net_weights
        for r in sampler[name]["rows"]:
            r.update(model=name, forward_ms=1000 * r["forward_s"])
    print_table([r for res in sampler.values() for r in res["rows"]], [
        ("model", "model", "s"), ("function", "function", "s"), ("eta", "eta", "g"), ("batch", "batch", "d"),
        ("nfe", "NFE", "d"), ("forward_ms", "fwd ms", ".2f"), ("run_s", "run s", ".3f"),
        ("ratio", "run/(NFE*fwd)", ".3f"), ("overhead_ms_per_step", "extra ms/step", ".2f")],
        "sampler overhead on the GPU, fp32; limit 1.0, target <= 1.05")
    seeded = next(r for r in sampler["cifar10"]["rows"] if r["function"] == "sample_seeded" and r["eta"] == 0.0)
    sampler_hours = {s: 50_000 * s * seeded["run_s"] / (seeded["batch"] * seeded["nfe"]) / 3600 for s in (10, 100, 1000)}
    print("\nCIFAR-10 hours for 50k images through the whole sampler (fp32, eta 0, from the run above): "
          + ", ".join(f"S={s}: {h:.2f} h" for s, h in sampler_hours.items()) + f" (paper, S=1000: ~{PAPER_HOURS_1000:g} h)")
    bench.write(device, {"batch": args.batch, "weights": weights, "forward": rows, "compile_failed": failed, "paper_hours_1000": PAPER_HOURS_1000,
                         "sampler_overhead": sampler, "sampler_hours_50k_fp32_eta0": sampler_hours}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
