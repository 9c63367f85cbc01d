"""Sampler overhead: time of a full sampling run / (NFE x time of one network forward on the same batch).

Everything but the network (per-image noise streams, x_T, the eq. 12 arithmetic, the timestep tensors) is overhead;
1.0 is the limit, the target is <= 1.05 at the runner's batch size. Two variants per eta (0 = DDIM, 1 = DDPM):
``sample_seeded`` (what the runner calls: seeds one generator per image, draws x_T, samples) and ``sample`` (x_T
and the noise source made outside the timed region). Uniform tau, so NFE = S when S divides 1000. The forward time
is the median over repeats of min(NFE, 10) forwards run back to back, divided by their number.

    python benchmarks/sampler_overhead.py --model both
    python benchmarks/sampler_overhead.py --model digits --batch 500 --steps 50 --repeats 5
"""

from __future__ import annotations

import argparse

import common  # noqa: F401  (puts the repository on sys.path)
import torch
from common import Bench, common_args, load_model, measure, pick_device, print_table, set_threads

from harness.diffusion.noise import ImageNoise
from harness.diffusion.sampling import sample, sample_seeded
from harness.diffusion.schedule import NoiseSchedule
from harness.diffusion.trajectory import timesteps

# (batch, steps) per model and device type; digits batch 500 is the runner's default batch_size
DEFAULTS = {
    ("digits", "cpu"): (500, 50), ("digits", "cuda"): (500, 50),
    ("cifar10", "cpu"): (8, 5), ("cifar10", "cuda"): (256, 20),
}


def overhead(model, shape, batch, steps, device, repeats=3, warmup=1, etas=(0.0, 1.0)) -> dict:
    """Forward time and the overhead ratio of ``sample_seeded`` and ``sample`` for each eta."""
    schedule = NoiseSchedule.linear()
    tau = timesteps("uniform", steps)
    nfe = len(tau)
    x = torch.randn(batch, *shape, device=device)
    t = torch.full((1,), float(tau[len(tau) // 2]), device=device)  # the sampler's [1] shared timestep
    # k forwards back to back between two synchronisations, as the sampler runs them (on a GPU a lone synchronised
    # forward would also pay the kernel-launch latency that the sampler's queue hides)
    k = min(nfe, 10)
    block = measure(lambda: [model(x, t) for _ in range(k)], device, repeats=max(3, repeats), warmup=max(1, warmup))
    fwd = {"median_s": block["median_s"] / k, "block_forwards": k, "block": block}
    indices = range(batch)
    rows = []
    for eta in etas:
        seeded = measure(lambda: sample_seeded(model, indices, 0, shape, tau, schedule, eta, device),
                         device, repeats, warmup)

        def fresh():  # x_T and a fresh noise source, untimed
            noise = ImageNoise(0, indices, device)
            return noise.randn(*shape), noise

        plain = measure(lambda x_T, noise: sample(model, x_T, tau, schedule, eta, noise), device, repeats, warmup, fresh)
        for fn, timing in (("sample_seeded", seeded), ("sample", plain)):
            run_s = timing["median_s"]
            rows.append({
                "function": fn, "eta": eta, "batch": batch, "S": steps, "nfe": nfe,
                "run_s": run_s, "forward_s": fwd["median_s"], "ratio": run_s / (nfe * fwd["median_s"]),
                "overhead_ms_per_step": 1000 * (run_s - nfe * fwd["median_s"]) / nfe,
                "images_per_s": batch / run_s, "timing": timing,
            })
    return {"forward": fwd, "rows": rows}


COLUMNS = [("model", "model", "s"), ("function", "function", "s"), ("eta", "eta", "g"), ("batch", "batch", "d"),
           ("nfe", "NFE", "d"), ("forward_ms", "fwd ms", ".2f"), ("run_s", "run s", ".3f"),
           ("ratio", "run/(NFE*fwd)", ".3f"), ("overhead_ms_per_step", "extra ms/step", ".2f")]


def main() -> None:
    parser = common_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--model", choices=["digits", "cifar10", "both"], default="digits")
    parser.add_argument("--batch", type=int, default=None, help="default: digits 500; cifar10 8 on CPU, 256 on CUDA")
    parser.add_argument("--steps", type=int, default=None, help="S (uniform tau); default: digits 50; cifar10 5 on CPU, 20 on CUDA")
    args = parser.parse_args()
    bench = Bench("sampler_overhead", args)
    device = pick_device(args.device)
    set_threads(args.threads)
    results = {}
    for name in (["digits", "cifar10"] if args.model == "both" else [args.model]):
        model, shape, weights = load_model(name, device)
        batch, steps = DEFAULTS[(name, device.type)]
        res = overhead(model, shape, args.batch or batch, args.steps or steps, device, args.repeats, args.warmup)
        res["weights"] = weights
        results[name] = res
        for row in res["rows"]:
            row.update(model=name, forward_ms=1000 * row["forward_s"])
    print_table([r for res in results.values() for r in res["rows"]], COLUMNS,
                f"sampler overhead on {device} ({torch.get_num_threads()} threads); limit 1.0, target <= 1.05")
    bench.write(device, results, args.out)


if __name__ == "__main__":
    main()
