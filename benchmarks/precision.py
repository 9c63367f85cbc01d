"""Precision evidence: how far samples move when the network runs in tf32 or bf16, or compiled, instead of fp32.

For each model and eta, N images are sampled with the DDIM sampler (``harness.diffusion.sampling.sample_seeded``) in every
mode from the same per-image noise (same seed: image i has the same x_T and, for eta > 0, the same per-step noise in
every mode), so any difference comes from the arithmetic alone. Against the fp32 eager images (the paper's
arithmetic), per mode:

* ``max px`` / ``mean px``: the max and mean absolute difference of the uint8 pixels (the saved PNGs' values);
  ``px differ``: the fraction of pixels that differ at all;
* ``FD``: the Frechet distance between the mode's image set and the fp32 set, with raw pixels on [0, 1] as the
  features (no Inception network: for the digits, 64 features; for the CIFAR-10-size U-Net, 3072, with random
  weights, so its images are not meaningful pictures, only a measure of numerical drift); identical sets give
  values of order 1e-12 (rounding), which may be negative;
* ``FD seed floor`` (per model and eta): the same distance between the fp32 set and an fp32 set of N other images
  (seed + 1): what sampling noise alone moves the statistic at this N. A mode whose FD is far below the floor
  changes the FID far less than the choice of seed does.

Modes: on the CPU, fp32 and bf16 eager (tf32 does not exist there), and with ``--compile`` also torch.compile'd;
on a CUDA device, fp32, tf32 and bf16, each eager and compiled (``--no-compile`` skips the compiled ones), all set by
``harness.models.acceleration.prepare_model``. Models: the digits U-Net (shipped weights; uniform tau) and, on a GPU, the
CIFAR-10 U-Net (random weights, seed 0; quad tau, as the paper's CIFAR-10 runs).

    python benchmarks/precision.py                               # CPU: digits, N=500, S=20, eta 0 and 1
    python benchmarks/precision.py --compile                     # CPU, with the compiled modes (slow to compile)
    python benchmarks/precision.py --out $OUT                    # GPU: digits and cifar10, all six modes

Writes benchmarks/results/precision-<device>.json.
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: F401  (puts the repository on sys.path)
import numpy as np
import torch
from common import Bench, load_model, pick_device, print_table, set_threads, sync

from harness.models.acceleration import COMPILE_MODES, prepare_model, warm_up
from harness.diffusion.images import to_uint8
from harness.diffusion.noise import NOISE_SCHEMES
from harness.diffusion.sampling import sample_seeded
from harness.diffusion.schedule import NoiseSchedule
from harness.diffusion.trajectory import timesteps

TRAJECTORY = {"digits": "uniform", "cifar10": "quad"}
DEFAULT_N = {"digits": 500, "cifar10": 1024}
DEFAULT_BATCH = {"digits": 500, "cifar10": 256}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(C_a) + tr(C_b) - 2 tr((C_a C_b)^(1/2)) of two [N, D] feature sets (float64).

    tr((C_a C_b)^(1/2)) is the sum of the square roots of the eigenvalues of C_a^(1/2) C_b C_a^(1/2), a symmetric
    positive semi-definite matrix with the same eigenvalues as C_a C_b (stable when N < D makes C singular).
    """
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def modes(device: torch.device, compiled: bool) -> list[tuple[str, str]]:
    """(precision, compile) pairs; the first, fp32 eager, is the reference."""
    precisions = ("fp32", "tf32", "bf16") if device.type == "cuda" else ("fp32", "bf16")
    return [(p, "none") for p in precisions] + ([(p, "default") for p in precisions] if compiled else [])


def sample_set(model, n, batch, seed, shape, tau, eta, device, scheme) -> tuple[torch.Tensor, float]:
    """N images (uint8, on the CPU) in batches of ``batch``, and the seconds it took."""
    schedule = NoiseSchedule.linear()
    out = []
    sync(device)
    start = time.perf_counter()
    for first in range(0, n, batch):
        indices = range(first, min(n, first + batch))
        x = sample_seeded(model, indices, seed, shape, tau, schedule, eta, device, noise_scheme=scheme)
        out.append(to_uint8(x).cpu())
    sync(device)
    return torch.cat(out), time.perf_counter() - start


def features(images: torch.Tensor) -> np.ndarray:
    return images.flatten(1).double().div(255.0).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:<i>")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--models", default=None, help="comma-separated: digits, cifar10 (default: digits on the CPU, both on CUDA)")
    parser.add_argument("--N", type=int, default=None, help="images per set (default: digits 500, cifar10 1024)")
    parser.add_argument("--batch", type=int, default=None, help="sampling batch (default: digits 500, cifar10 256)")
    parser.add_argument("--S", type=int, default=20, help="sampling steps (tau: uniform for digits, quad for cifar10)")
    parser.add_argument("--etas", default="0,1", help="comma-separated eta values")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-scheme", default=NOISE_SCHEMES[0], choices=NOISE_SCHEMES)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also the torch.compile'd modes (default: on CUDA yes, on the CPU no)")
    parser.add_argument("--compile-mode", default="default", choices=COMPILE_MODES[1:])
    parser.add_argument("--out", default=None, help="folder for the JSON (default benchmarks/results)")
    args = parser.parse_args()
    bench = Bench("precision", args)
    device = pick_device(args.device)
    set_threads(args.threads)
    compiled = args.compile if args.compile is not None else device.type == "cuda"
    names = args.models.split(",") if args.models else (["digits", "cifar10"] if device.type == "cuda" else ["digits"])
    etas = [float(e) for e in args.etas.split(",")]

    results, rows = [], []
    for name in names:
        net, shape, weights = load_model(name, device)
        n, batch = args.N or DEFAULT_N[name], args.batch or DEFAULT_BATCH[name]
        tau = timesteps(TRAJECTORY[name], args.S)
        reference, floor = {}, {}
        fp32, _ = prepare_model(net, precision="fp32", compile="none", device=device)  # also turns cuDNN's TF32 off
        for eta in etas:  # the fp32 eager reference and the seed floor
            reference[eta], _ = sample_set(fp32, n, batch, args.seed, shape, tau, eta, device, args.noise_scheme)
            other, _ = sample_set(fp32, n, batch, args.seed + 1, shape, tau, eta, device, args.noise_scheme)
            floor[eta] = frechet_distance(features(reference[eta]), features(other))
        for precision, compile_mode in modes(device, compiled):
            mode_compile = compile_mode if compile_mode == "none" else args.compile_mode
            model, record = prepare_model(net, precision=precision, compile=mode_compile, device=device)
            compile_s = None
            if mode_compile != "none":
                x = torch.randn(min(n, batch), *shape, device=device)
                compile_s = warm_up(model, x, torch.full((1,), float(tau[-1]), device=device))
            for eta in etas:
                images, seconds = sample_set(model, n, batch, args.seed, shape, tau, eta, device, args.noise_scheme)
                diff = (images.int() - reference[eta].int()).abs()
                row = {
                    "model": name, "weights": weights, "mode": precision if mode_compile == "none" else f"compile:{precision}",
                    **record, "eta": eta, "N": n, "S": args.S, "nfe": len(tau), "trajectory": TRAJECTORY[name],
                    "max_px": int(diff.max()), "mean_px": float(diff.double().mean()),
                    "frac_px_differ": float((diff > 0).double().mean()),
                    "frechet_vs_fp32": frechet_distance(features(reference[eta]), features(images)),
                    "frechet_seed_floor": floor[eta], "sampling_s": seconds, "compile_s": compile_s,
                }
                rows.append(row)
            torch.compiler.reset()  # drop compiled graphs before the next mode
        results.append({"model": name, "weights": weights, "shape": list(shape), "batch": batch, "N": n,
                        "trajectory": TRAJECTORY[name], "seed_floor": floor})
    print_table(rows, [
        ("model", "model", "s"), ("mode", "mode", "s"), ("eta", "eta", "g"), ("N", "N", "d"), ("nfe", "NFE", "d"),
        ("max_px", "max px", "d"), ("mean_px", "mean px", ".4f"), ("frac_px_differ", "px differ", ".4f"),
        ("frechet_vs_fp32", "FD vs fp32", ".3g"), ("frechet_seed_floor", "FD seed floor", ".3g"),
        ("sampling_s", "sampling s", ".1f"), ("compile_s", "compile s", ".1f")],
        f"samples vs fp32 eager on {device} (uint8 pixels; FD on raw pixels in [0, 1]; noise scheme {args.noise_scheme})")
    bench.write(device, {"features": "raw pixels on [0, 1] (no Inception network); cifar10 has random weights",
                         "reference": "fp32 eager", "noise_scheme": args.noise_scheme, "models": results, "rows": rows},
                args.out)


if __name__ == "__main__":
    main()
