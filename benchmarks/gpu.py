"""GPU benchmark, one call of a few minutes (compiles included): the CIFAR-10 U-Net (conf/model/cifar10.yaml,
random weights) and the whole sampler on one CUDA device.

1. Forward time at --batch (256) per mode: eager fp32 (TF32 off, the paper's), tf32, bf16 autocast, channels_last
   (fp32) and channels_last + bf16; and fp32, tf32, bf16 torch.compile'd (``--compile-mode``, default "default";
   "none" skips them), all through ``harness.models.acceleration.prepare_model``. The compile time (``warm_up``: the first
   calls) is reported apart. Also: the hours to sample 50,000 images at S = 10, 100, 1000 from the forward alone,
   against the paper's Figure 4 reading (about 20 h for 50,000 CIFAR-10 images at 1000 steps on one GTX 2080 Ti),
   and the fraction of the GPU's dense bf16 tensor-core peak reached.
2. The whole sampler (``sample_seeded``: per-image noise streams, x_T, eq. 12 at eta = 1 so noise is drawn at every
   step, the network) on the quad trajectory with --sampler-steps, for every precision x compile x noise scheme
   ("cpu-generator", "philox"): image-evaluations per second (batch x NFE / run time), the fraction of the bf16 peak,
   the noise cost (the run against the same run fed noise drawn in advance), and the hours of Table 1's CIFAR-10
   grid (5 rows: eta = 0, 0.2, 0.5, 1 and sigma-hat; S = 10, 20, 50, 100, 1000 on the quad trajectory; 50,000 images
   per cell) on 1 and 8 GPUs.
3. The sampler overhead ratio in fp32 (as benchmarks/sampler_overhead.py): CIFAR-10 at --batch and the digits model
   (shipped weights) at batch 500, eta 0 and 1.

    python benchmarks/gpu.py                              # writes benchmarks/results/gpu-cuda-<gpu>.json
    python benchmarks/gpu.py --compile-mode max-autotune --out $OUT
    python benchmarks/gpu.py --smoke --out /tmp/smoke     # any machine (the CPU without CUDA): digits U-Net, batch 4,
                                                          # fp32 eager only

Needs only torch, numpy, PyYAML and tqdm besides the harness's files (no Hydra, MLflow or torch-fidelity), so it
runs from a bare checkout. Without a CUDA device it says so and exits with status 0, measuring nothing, unless
--smoke is given: then it runs every code path on the CPU with a tiny workload (its numbers mean nothing for a GPU
and are written only under --out).
"""

from __future__ import annotations

import argparse
import sys

import common  # noqa: F401  (puts the repository on sys.path)
import torch
from common import Bench, load_model, measure, print_table
from torch.utils.flop_counter import FlopCounterMode

from harness.models.acceleration import COMPILE_MODES, prepare_model, warm_up
from harness.diffusion.noise import DEFAULT_NOISE_SCHEME, NOISE_SCHEMES, ImageNoise
from harness.diffusion.sampling import sample, sample_seeded
from harness.diffusion.schedule import NoiseSchedule
from harness.diffusion.trajectory import timesteps

PAPER_HOURS_1000 = 20.0  # Figure 4, CIFAR-10: ~20 h for 50k images at 1000 steps on one 2080 Ti
EAGER_MODES = {  # name: (harness precision, channels_last)
    "fp32": ("fp32", False), "tf32": ("tf32", False), "bf16": ("bf16", False),
    "channels_last": ("fp32", True), "channels_last+bf16": ("bf16", True),
}
COMPILED_PRECISIONS = ("fp32", "tf32", "bf16")
# Dense (no 2:4 sparsity) BF16 tensor-core peaks in TFLOP/s, by a substring of torch.cuda.get_device_name, first match
# wins. NVIDIA's datasheets quote the sparse figure, twice the dense one: H100 SXM5 and H200 SXM "1,979 teraFLOPS*",
# H100 NVL and H200 NVL 1,671*, H100 PCIe 1,513* (NVIDIA H100 / H200 Tensor Core GPU datasheets; 989.4 dense for the
# SXM5 in the NVIDIA H100 Tensor Core GPU Architecture whitepaper); A100 (SXM4 and PCIe) 312 dense, 624 sparse (NVIDIA
# A100 datasheet). The SXM5 H100 reports itself as "NVIDIA H100 80GB HBM3".
BF16_DENSE_TFLOPS = (
    ("H100 PCIe", 756.5), ("H100 NVL", 835.5), ("H100", 989.4),
    ("H200 NVL", 835.5), ("H200", 989.4),
    ("A100", 312.0),
)
# Table 1, CIFAR-10 block: 5 rows (eta = 0, 0.2, 0.5, 1 and sigma-hat) x 5 values of S, 50,000 images per cell, quad tau
TABLE1_ROWS, TABLE1_S, TABLE1_IMAGES, TABLE1_TRAJECTORY = 5, (10, 20, 50, 100, 1000), 50_000, "quad"


def bf16_peak_tflops(gpu_name: str) -> float | None:
    return next((peak for key, peak in BF16_DENSE_TFLOPS if key in gpu_name), None)


def table1_image_evaluations() -> int:
    """Network evaluations of Table 1's CIFAR-10 grid: rows x images x sum over S of NFE (= len(tau), quad)."""
    return TABLE1_ROWS * TABLE1_IMAGES * sum(len(timesteps(TABLE1_TRAJECTORY, S)) for S in TABLE1_S)


def flops_per_image(model, shape, device) -> float:
    """FLOPs of one network evaluation of one image (torch's FlopCounterMode: convolutions and matrix products), from
    a batch of 2 (the U-Net evaluates a batch of one as a batch of two)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(2, *shape, device=device), torch.full((1,), 500.0, device=device))
    return counter.get_total_flops() / 2


def hours_50k(images_per_s: float, steps: int) -> float:
    return 50_000 * steps / images_per_s / 3600


class Replay:
    """A noise source handing out draws made in advance, to time the sampler without drawing any noise."""

    def __init__(self, draws: list[torch.Tensor]):
        self.draws = draws

    def randn(self, *shape: int) -> torch.Tensor:
        return self.draws.pop(0)


def sampler_rows(model, shape, batch, tau, device, schemes, repeats, warmup) -> tuple[list[dict], dict]:
    """Whole-sampler timings at eta = 1 for each noise scheme, and the same run fed noise drawn in advance."""
    schedule, nfe = NoiseSchedule.linear(), len(tau)

    def predrawn():
        noise = ImageNoise(0, range(batch), device)
        return noise.randn(*shape), Replay([noise.randn(*shape) for _ in range(nfe)])

    replay = measure(lambda x_T, noise: sample(model, x_T, tau, schedule, 1.0, noise), device, repeats, warmup, predrawn)
    rows = []
    for scheme in schemes:
        timing = measure(lambda: sample_seeded(model, range(batch), 0, shape, tau, schedule, 1.0, device, noise_scheme=scheme),
                         device, repeats, warmup)
        run_s = timing["median_s"]
        rows.append({
            "noise_scheme": scheme, "batch": batch, "nfe": nfe, "run_s": run_s, "step_ms": 1000 * run_s / nfe,
            "image_evals_per_s": batch * nfe / run_s,
            "noise_ms_per_step": 1000 * (run_s - replay["median_s"]) / nfe,
            "noise_fraction": (run_s - replay["median_s"]) / run_s, "timing": timing,
        })
    return rows, replay


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards per mode (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile-mode", default="default", choices=COMPILE_MODES,
                        help="torch.compile mode of the compiled rows; none skips them")
    parser.add_argument("--sampler-steps", type=int, default=25,
                        help="S of the whole-sampler runs (quad tau, eta 1); 25 draws (x_T and 24 steps) are exactly one "
                             "prefetch block of the cpu-generator scheme on CUDA, so it draws nothing it does not use")
    parser.add_argument("--sampler-repeats", type=int, default=2)
    parser.add_argument("--overhead-steps", type=int, default=20, help="S of the sampler-overhead runs (uniform tau)")
    parser.add_argument("--overhead-repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny run of every code path on any device (digits U-Net, batch 4, fp32 eager): a test, not a measurement")
    parser.add_argument("--out", default=None, help="folder for the JSON (default benchmarks/results; with --smoke, no JSON without it)")
    args = parser.parse_args()
    if args.smoke:
        args.device = args.device if torch.cuda.is_available() else "cpu"
        args.batch, args.repeats, args.warmup, args.sampler_repeats, args.overhead_repeats = 4, 1, 0, 1, 1
        args.sampler_steps, args.overhead_steps, args.compile_mode = 3, 3, "none"
    elif not torch.cuda.is_available():
        print(f"gpu.py: no CUDA device is available here (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda or 'none'}); nothing was measured. Run it on a machine with an NVIDIA GPU "
              "(or try the code paths with --smoke).", file=sys.stderr)
        return 0
    from sampler_overhead import overhead

    bench = Bench("gpu-smoke" if args.smoke else "gpu", args)
    device = torch.device(args.device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = bf16_peak_tflops(gpu_name)
    name = "digits" if args.smoke else "cifar10"
    net, shape, weights = load_model(name, device)
    flops = flops_per_image(net, shape, device)
    x = torch.randn(args.batch, *shape, device=device)
    t = torch.full((1,), 500.0, device=device)
    tau = timesteps("quad", args.sampler_steps)
    schemes = NOISE_SCHEMES

    def peak_fraction(evals_per_s: float) -> float | None:
        return evals_per_s * flops / (peak * 1e12) if peak else None

    forward, sampler, failed = [], [], []
    modes = [("fp32", "none", False)] if args.smoke else (
        [(p, "none", cl) for p, cl in EAGER_MODES.values()]
        + ([(p, args.compile_mode, False) for p in COMPILED_PRECISIONS] if args.compile_mode != "none" else []))
    for precision, compile_mode, channels_last in modes:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        label = ("compile:" if compile_mode != "none" else "") + ("channels_last+" if channels_last else "") + precision
        label = {"channels_last+fp32": "channels_last"}.get(label, label)
        model, record = prepare_model(net.to(memory_format=fmt), precision=precision, compile=compile_mode, device=device)
        xm = x.contiguous(memory_format=fmt)
        try:
            compile_s = warm_up(model, xm, t) if compile_mode != "none" else None
        except Exception as exc:  # a failed compile is a result too; the other numbers still count
            print(f"torch.compile ({label}) failed: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
            failed.append({"mode": label, "error": f"{type(exc).__name__}: {exc}"[:2000]})
            continue
        timing = measure(lambda: model(xm, t), device, args.repeats, args.warmup)
        row = {"mode": label, **record, "compile_s": compile_s, **timing}
        row["images_per_s"] = args.batch / row["median_s"]
        row["forward_ms"] = 1000 * row["median_s"]
        row["bf16_peak_fraction"] = peak_fraction(row["images_per_s"])
        row.update({f"hours_S{s}": hours_50k(row["images_per_s"], s) for s in (10, 100, 1000)})
        row["speedup_vs_paper_1000"] = PAPER_HOURS_1000 / row["hours_S1000"]
        forward.append(row)
        if not channels_last:
            rows, replay = sampler_rows(model, shape, args.batch, tau, device, schemes, args.sampler_repeats, 1)
            for r in rows:
                r.update(mode=label, precision=precision, compile=compile_mode, compile_s=compile_s,
                         predrawn_noise_run_s=replay["median_s"], bf16_peak_fraction=peak_fraction(r["image_evals_per_s"]))
                r["table1_hours_1gpu"] = table1_image_evaluations() / r["image_evals_per_s"] / 3600
                r["table1_hours_8gpu"] = r["table1_hours_1gpu"] / 8
            sampler.extend(rows)
        torch.compiler.reset()
    net = net.to(memory_format=torch.contiguous_format)
    fp32, _ = prepare_model(net, precision="fp32", device=device)  # back to the default for the overhead runs

    paper = {"mode": "paper (2080 Ti, Fig. 4)", "hours_S10": PAPER_HOURS_1000 / 100, "hours_S100": PAPER_HOURS_1000 / 10,
             "hours_S1000": PAPER_HOURS_1000}
    print(f"{name} U-Net ({weights}): {flops / 1e9:.2f} GFLOP per image per evaluation (FlopCounterMode); "
          f"dense bf16 peak of {gpu_name}: " + (f"{peak:g} TFLOP/s" if peak else "not in the table"))
    print_table(forward + [paper], [
        ("mode", "mode", "s"), ("forward_ms", f"ms/fwd (b={args.batch})", ".2f"), ("images_per_s", "img-NFE/s", ".0f"),
        ("bf16_peak_fraction", "of bf16 peak", ".1%"), ("compile_s", "compile s", ".1f"), ("hours_S10", "h 50k S=10", ".3f"),
        ("hours_S100", "h 50k S=100", ".2f"), ("hours_S1000", "h 50k S=1000", ".2f"), ("speedup_vs_paper_1000", "x paper", ".3g")],
        f"{name} U-Net forward on {gpu_name}")
    evaluations = table1_image_evaluations()
    print_table(sampler, [
        ("mode", "mode", "s"), ("noise_scheme", "noise", "s"), ("step_ms", "ms/step", ".2f"),
        ("image_evals_per_s", "img-evals/s", ".0f"), ("bf16_peak_fraction", "of bf16 peak", ".1%"),
        ("noise_ms_per_step", "noise ms/step", ".2f"), ("noise_fraction", "noise share", ".1%"),
        ("table1_hours_1gpu", "Table 1 h, 1 GPU", ".1f"), ("table1_hours_8gpu", "8 GPUs", ".2f")],
        f"whole sampler (sample_seeded, eta 1, quad S={args.sampler_steps}, NFE {len(tau)}, batch {args.batch}); "
        f"Table 1 CIFAR-10 = {evaluations:,} image-evaluations")

    overhead_models = [("digits", 500 if not args.smoke else args.batch)] + ([] if args.smoke else [("cifar10", args.batch)])
    overheads = {}
    for model_name, batch in overhead_models:
        if model_name == name:
            m, m_shape, m_weights = fp32, shape, weights
        else:
            m, m_shape, m_weights = load_model(model_name, device)
        overheads[model_name] = overhead(m, m_shape, batch, args.overhead_steps, device, args.overhead_repeats, 1)
        overheads[model_name]["weights"] = m_weights
        for r in overheads[model_name]["rows"]:
            r.update(model=model_name, forward_ms=1000 * r["forward_s"])
    print_table([r for res in overheads.values() for r in res["rows"]], [
        ("model", "model", "s"), ("function", "function", "s"), ("eta", "eta", "g"), ("batch", "batch", "d"),
        ("nfe", "NFE", "d"), ("forward_ms", "fwd ms", ".2f"), ("run_s", "run s", ".3f"),
        ("ratio", "run/(NFE*fwd)", ".3f"), ("overhead_ms_per_step", "extra ms/step", ".2f")],
        "sampler overhead, fp32; limit 1.0, target <= 1.05")
    seeded = next(r for r in overheads[overhead_models[-1][0]]["rows"] if r["function"] == "sample_seeded" and r["eta"] == 0.0)
    sampler_hours = {s: 50_000 * s * seeded["run_s"] / (seeded["batch"] * seeded["nfe"]) / 3600 for s in (10, 100, 1000)}
    print(f"\n{overhead_models[-1][0]} hours for 50k images through the whole sampler (fp32, eta 0, from the run above): "
          + ", ".join(f"S={s}: {h:.2f} h" for s, h in sampler_hours.items()) + f" (paper, CIFAR-10, S=1000: ~{PAPER_HOURS_1000:g} h)")
    results = {
        "batch": args.batch, "model": name, "weights": weights, "gpu": gpu_name, "flops_per_image_eval": flops,
        "bf16_dense_peak_tflops": peak, "default_noise_scheme": DEFAULT_NOISE_SCHEME, "forward": forward,
        "compile_failed": failed, "paper_hours_1000": PAPER_HOURS_1000, "sampler": sampler,
        "table1": {"rows": TABLE1_ROWS, "S": list(TABLE1_S), "images_per_cell": TABLE1_IMAGES,
                   "trajectory": TABLE1_TRAJECTORY, "image_evaluations": evaluations,
                   "note": "hours from the eta = 1 sampler rate (noise every step); 8 GPUs: the images of every cell "
                           "split evenly (per-image seeds make shards exact), FID time not included"},
        "sampler_overhead": overheads, "sampler_hours_50k_fp32_eta0": sampler_hours,
    }
    if args.smoke and args.out is None:
        print("\n--smoke: no JSON written (give --out to keep one)")
    else:
        bench.write(device, {"smoke": args.smoke, **results}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
