"""Calibration at the paper's N: how often the block-jackknife intervals of harness.metrics.blocks hold the truth,
and how often its paired verdicts read PASS or FAIL when two cells are in truth the same (docs/evidence.md).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/calibration_paper.py [--reps 200] [--N 50000,10000] [--K 10]

Exact-score data (glyphs64: 4 glyphs + isotropic noise, 1x8x8; harness.diffusion.analytic) in two feature spaces:
the pixels (64-d) and the digits CNN's penultimate features (64-d, a fixed trained network: the digits' FID space).
Each cell is a pool of ``--pool`` images (uint8, as the store keeps them) whose features are computed once; a
replication draws its N images from the pool with replacement, so they are N independent draws of the pool's law,
and the truth is known exactly: the Frechet distance of the pool's moments (divisor P: the pool's own law) to the
reference's. The reference is fixed (``--reference`` exact draws of the law, like CIFAR-10's 50,000 training images).

Cells: ``law`` (exact draws), ``law_wide`` (the same draws with the noise 5% wider: paired with ``law`` index for
index, as cells sharing x_T are), ``ddim10`` and ``ddim20`` (DDIM from the analytic eps*, the same x_T per index).
Settings: two nulls (``law`` against an independent draw of ``law``; ``ddim10`` likewise) and two alternatives
(``law`` vs ``law_wide``; S=10 vs S=20), all at each N and number of blocks K. Per setting: the coverage of the
true difference by the report's paired interval (``stats.paired_interval``) over the K pseudo-values, and the verdict
rates (``claims._verdict``); for contrast the same over the K blocks' own FDs ("blocks as repeats": biased by
about c K / N). Per cell: the coverage of E[FD_N] by the headline's interval (pooled FD -+ t sd(p) / sqrt(K);
E[FD_N] estimated by the mean over replications) and of the population FD by the bias-corrected one.

KID, precision and recall are not replicated here (KID costs about 5 s a call on one core at subsets of 1,000;
precision/recall a k-NN over 50,000 images): at paper scale they decide nothing (harness.report.claims).
Writes benchmarks/results/calibration-paper-cpu.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import Bench, print_table
from harness.diffusion.analytic import exact_mixture, psd_sqrt
from harness.diffusion.images import to_uint8
from harness.diffusion.samplers import SAMPLERS
from harness.diffusion.sampling import sample_seeded
from harness.diffusion.schedule import NoiseSchedule
from harness.diffusion.trajectory import timesteps
from harness.metrics import features as F
from harness.metrics.blocks import block_moments, frechet_from_moments, merge_blocks, t_quantile
from harness.report.claims import FAIL, PASS, _verdict  # the report's verdict rule, called as the report calls it
from harness.report.stats import paired_interval

CPU = torch.device("cpu")
METRIC = "fid"  # lower is better: the verdict rule of every Frechet distance
SPACES = {"pixels": (F.PIXELS, "pixels"), "digits-cnn": (F.DIGITS, F.default_layer(F.DIGITS, "fid"))}
CELLS = {"law", "law_wide", "ddim10", "ddim20"}
SETTINGS = [  # (name, cell a, cell b, paired: a and b share their draws' indices)
    ("null: the law against itself, two draws", "law", "law", False),
    ("null: DDIM S=10, two draws", "ddim10", "ddim10", False),
    ("alternative: the law vs its noise 5% wider (paired)", "law", "law_wide", True),
    ("alternative: DDIM S=10 vs S=20 (paired)", "ddim10", "ddim20", True),
]


def pools(mixture, P: int, seed: int) -> dict[str, torch.Tensor]:
    """Each cell's P images, uint8."""
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(mixture.weights, P, replacement=True, generator=g)
    z = torch.randn((P, *mixture.shape), dtype=torch.float64, generator=g)
    std = mixture.stds[k].reshape(P, 1, 1, 1)
    out = {"law": to_uint8((mixture.means[k] + std * z).float()),
           "law_wide": to_uint8((mixture.means[k] + 1.05 * std * z).float())}
    schedule = NoiseSchedule.linear()
    for S in (10, 20):
        tau, batches = timesteps("uniform", S), []
        for i in range(0, P, 20000):
            batches.append(to_uint8(sample_seeded(mixture.eps_model(schedule), range(i, min(P, i + 20000)), seed,
                                                  mixture.shape, tau, schedule, 0.0, CPU, sampler=SAMPLERS["ddim"].sample).float()))
        out[f"ddim{S}"] = torch.cat(batches)
    return out


def features(images: torch.Tensor, space: str) -> np.ndarray:
    name, layer = SPACES[space]
    extractor = F.make_extractor(name, [layer], None, CPU)
    with torch.no_grad():
        return torch.cat([extractor(images[i:i + 10000])[0] for i in range(0, len(images), 10000)]).double().numpy()


def population(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and covariance of the pool's own law (divisor P: draws with replacement are iid from it)."""
    mean = x.mean(0)
    return mean, (x - mean).T @ (x - mean) / len(x)


def fd(mu, cov, ref):
    from harness.diffusion.analytic import frechet_distance

    return frechet_distance(mu, cov, ref["mu"], ref["cov"])


def replicate(feats: dict, refs: dict, N: int, Ks: list[int], reps: int, seed: int) -> dict:
    """values[(space, cell, draw, K)] = [reps] x (pooled, pseudo [K], blocks [K])."""
    Kmax = max(Ks)
    rng = np.random.default_rng(seed)
    out: dict = {}
    for _ in range(reps):
        shared = rng.integers(len(next(iter(feats.values()))["law"]), size=N)
        other = rng.integers(len(next(iter(feats.values()))["law"]), size=N)
        for space, cells in feats.items():
            ref = refs[space]
            for cell in CELLS:
                for draw, idx in (("shared", shared), ("other", other)) if cell in ("law", "ddim10") else (("shared", shared),):
                    moments = block_moments(cells[cell][idx], Kmax)
                    for K in Ks:
                        full, loo, blocks = frechet_from_moments(*merge_blocks(moments, K), ref["mu"], ref["root"],
                                                                 ref["cov"])
                        out.setdefault((space, cell, draw, K), []).append((full, K * full - (K - 1) * loo, blocks))
    return out


def rows_of(values: dict, truths: dict, N: int, Ks: list[int]) -> tuple[list[dict], list[dict]]:
    settings, cells = [], []
    for (space, cell, draw, K), reps in values.items():
        if draw != "shared":
            continue
        pooled = np.array([r[0] for r in reps])
        pseudo = np.array([r[1] for r in reps])
        half = np.array([t_quantile(K - 1) * p.std(ddof=1) / np.sqrt(K) for p in pseudo])
        centre_j = pseudo.mean(1)
        e_n, pop = float(pooled.mean()), truths[space][cell]
        cells.append({"space": space, "cell": cell, "N": N, "K": K, "reps": len(reps), "truth_pop": pop,
                      "mean_pooled": e_n, "bias_pooled": e_n - pop, "bias_jackknife": float(centre_j.mean()) - pop,
                      "sd_pooled": float(pooled.std(ddof=1)), "median_half_width": float(np.median(half)),
                      "cover_N": float(np.mean(np.abs(pooled - e_n) <= half)),
                      "cover_pop_jackknife": float(np.mean(np.abs(centre_j - pop) <= half))})
    for name, a, b, is_paired in SETTINGS:
        for space in truths:
            for K in Ks:
                va, vb = values[(space, a, "shared", K)], values[(space, b, "shared" if is_paired else "other", K)]
                truth = truths[space][a] - truths[space][b] if is_paired else 0.0
                for method, idx in (("jackknife", 1), ("blocks as repeats", 2)):
                    ivs = [paired_interval(ra[idx], rb[idx]) for ra, rb in zip(va, vb)]
                    verdicts = [_verdict(METRIC, iv) for iv in ivs]
                    settings.append({
                        "setting": name, "space": space, "N": N, "K": K, "method": method, "reps": len(ivs),
                        "null": name.startswith("null"), "truth": truth,
                        "mean_estimate": float(np.mean([iv.estimate for iv in ivs])),
                        "cover": float(np.mean([iv.low <= truth <= iv.high for iv in ivs])),
                        "pass_rate": verdicts.count(PASS) / len(ivs), "fail_rate": verdicts.count(FAIL) / len(ivs),
                        "decided_rate": (verdicts.count(PASS) + verdicts.count(FAIL)) / len(ivs),
                        "median_half_width": float(np.median([(iv.high - iv.low) / 2 for iv in ivs]))})
    return settings, cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=200, help="independent replications per N")
    parser.add_argument("--N", type=lambda v: [int(x) for x in v.split(",")], default=[50000, 10000])
    parser.add_argument("--K", type=lambda v: [int(x) for x in v.split(",")], default=[5, 10, 20],
                        help="numbers of blocks (each divides the largest); the harness's default is 10")
    parser.add_argument("--pool", type=int, default=200000, help="images per cell's pool (features computed once)")
    parser.add_argument("--reference", type=int, default=50000, help="exact draws in the fixed reference")
    parser.add_argument("--spaces", type=lambda v: v.split(","), default=list(SPACES))
    parser.add_argument("--out", default=None, help="folder for the JSON (default benchmarks/results)")
    args = parser.parse_args()
    bench, seconds = Bench("calibration-paper", args), {}
    mixture = exact_mixture("glyphs64")
    start = time.perf_counter()
    images = pools(mixture, args.pool, seed=1)
    reference = to_uint8(mixture.sample(args.reference, torch.Generator().manual_seed(10**6)).float())
    seconds["pools"] = time.perf_counter() - start
    print(f"pools of {args.pool} images x {len(images)} cells in {seconds['pools']:.0f} s", flush=True)
    feats, refs, truths = {}, {}, {}
    for space in args.spaces:
        start = time.perf_counter()
        feats[space] = {c: features(x, space) for c, x in images.items()}
        r = features(reference, space)
        mu, cov = r.mean(0), np.cov(r, rowvar=False)
        refs[space] = {"mu": mu, "cov": cov, "root": psd_sqrt(cov)}
        truths[space] = {c: fd(*population(x), refs[space]) for c, x in feats[space].items()}
        seconds[f"features_{space}"] = time.perf_counter() - start
        print(f"{space}: features in {seconds[f'features_{space}']:.0f} s; population FDs "
              + ", ".join(f"{c} {v:.4g}" for c, v in truths[space].items()), flush=True)
    settings, cells = [], []
    for i, N in enumerate(args.N):
        start = time.perf_counter()
        values = replicate(feats, refs, N, args.K, args.reps, seed=100 + i)
        s, c = rows_of(values, truths, N, args.K)
        settings += s
        cells += c
        seconds[f"replications_N{N}"] = time.perf_counter() - start
        print(f"N={N}: {args.reps} replications in {seconds[f'replications_N{N}']:.0f} s", flush=True)
    print_table([r for r in settings], [
        ("setting", "setting", ".24s"), ("space", "space", "s"), ("N", "N", "d"), ("K", "K", "d"), ("method", "method", "s"),
        ("truth", "truth", ".3g"), ("cover", "cover", ".3f"), ("pass_rate", "PASS", ".3f"), ("fail_rate", "FAIL", ".3f"),
        ("median_half_width", "half-width", ".3g")], title=f"Paired comparisons, {args.reps} replications per row")
    print_table(cells, [("space", "space", "s"), ("cell", "cell", "s"), ("N", "N", "d"), ("K", "K", "d"),
                        ("truth_pop", "FD_pop", ".4g"), ("bias_pooled", "bias pooled", ".3g"),
                        ("bias_jackknife", "bias jackknife", ".3g"), ("cover_N", "cover E[FD_N]", ".3f"),
                        ("cover_pop_jackknife", "cover FD_pop (jackknife)", ".3f")],
                title="Per cell: the headline's interval")
    bench.write(CPU, {"seconds": {k: round(v, 1) for k, v in seconds.items()}, "truths": truths,
                      "settings": settings, "cells": cells}, args.out)


if __name__ == "__main__":
    main()
