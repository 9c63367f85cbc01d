"""How much one cell's FID moves between seeds on the CPU default (digits, shipped model, digits-cnn FID).

    python benchmarks/seed_spread.py [--N 1000] [--seeds 100,101,102,103]

For S in 10, 20, 100 and eta in 0, 1 (and sigma-hat at S=10): FID of N samples for each base seed, with mean and
standard deviation. Differences between cells smaller than this spread are noise, not orderings.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from omegaconf import OmegaConf

from common import ROOT, Bench
from harness.model_loading import load_checkpoint
from harness.fid import compute_fid
from harness.images import to_uint8
from harness.sampling import sample_seeded
from harness.schedule import NoiseSchedule
from harness.trajectory import timesteps

CELLS = [(10, 0.0), (10, 1.0), (10, "hat"), (20, 0.0), (20, 1.0), (100, 0.0), (100, 1.0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--N", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seeds", default="100,101,102,103")
    args = parser.parse_args()
    bench = Bench("seed_spread", args)
    seeds = [int(s) for s in args.seeds.split(",")]
    model, _ = load_checkpoint(OmegaConf.load(ROOT / "conf" / "model" / "digits.yaml"))
    schedule = NoiseSchedule.linear()
    rows = []
    print(f"{'S':>4} {'eta':>4}  FID per seed {seeds}  mean  sd")
    for S, eta in CELLS:
        tau = timesteps("uniform", S)
        fids = []
        for seed in seeds:
            x = torch.cat([
                sample_seeded(model, range(b, min(b + args.batch, args.N)), seed, (1, 8, 8), tau, schedule, eta)
                for b in range(0, args.N, args.batch)
            ])
            fids.append(compute_fid(to_uint8(x), "digits-train", verbose=False)["fid"])
        row = {"S": S, "eta": eta, "fid": fids, "mean": statistics.mean(fids), "sd": statistics.stdev(fids)}
        rows.append(row)
        print(f"{S:>4} {eta!s:>4}  {[round(f, 2) for f in fids]}  {row['mean']:.2f}  {row['sd']:.2f}", flush=True)
    bench.write(torch.device("cpu"), {"N": args.N, "seeds": seeds, "cells": rows})


if __name__ == "__main__":
    main()
