"""How often the report's 95% intervals hold the truth, and how often its verdicts read PASS or FAIL when two cells
are in truth the same: the report's own interval and verdict functions, replicated many times where the truth is
known.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/calibration.py [--reps 200] [--N 250] [--K 5] [--digits-blocks 25]

Each replication is one claim comparison as the report makes it (``harness.report.claims``): two cells of K repeats
of N images, the paired differences d_k = m_k(a) - m_k(b), the t-interval ``stats.paired_interval`` and the verdict
``claims._verdict`` (PASS / FAIL when the interval lies wholly on one side of 0). Cells are sampled and scored by the
harness's own functions, in process: ``sampling.sample_seeded`` (per-image (seed, index) noise, the DDIM sampler),
``exact.score_exact`` (fd_true, flow_rmse) and ``metrics.feature_metrics`` / ``metrics.score`` (FID, FID-inf, KID,
precision, recall, pixel FD, through torch-fidelity's functions).

Exact-score data (the analytic eps*, no model error; ``--reps`` independent replications per setting, the paired
cells of one replication share their seed as the report's cells do, every replication has its own seeds):
  * glyphs64 (4 glyphs + isotropic noise, 1x8x8, the digits' size): fd_true (against the closed-form law) and, on
    the samples as 8-bit images, the digits' image metrics in pixel features against a fixed reference of
    ``--reference`` exact draws (as the digits' FID is against its 1,500 training images): FID, FID-inf, and (null of
    the law only, on its first ``--suite-K`` repeats, since they cost most) KID, precision, recall.
  * gaussian64 (one Gaussian, 1x8x8): fd_true and flow_rmse (the distance to the exact flow from the same x_T).
Settings: two nulls (the DDIM sampler against itself with other seeds; the data law against itself: exact draws)
and two alternatives (S=10 vs S=20 at eta=0; eta=0 vs eta=1 at S=10). The truth of a difference: 0 under a null;
under an alternative the population value of each cell, from all its reps x K x N samples pooled (FD-type metrics:
the Frechet distance of the pooled moments; flow_rmse: the root of the pooled mean square); for KID, precision and
recall only the expectation at the cell's N exists as a target (the mean of all replications' differences).
Coverage is reported against both targets: ``cover_pop`` (the metric's own value, what a claim is about) and
``cover_N`` (the expectation at N, what a t-interval over repeats estimates); a gap between them is bias.

Digits (the shipped model, DDIM S=10): ``--digits-blocks`` blocks of N images from each of two seeds (two seeds of
the same cell: a null), scored as a cell is (``metrics.score``, digits-cnn features, against digits-train). Disjoint
replications (blocks r*K..(r+1)*K of each seed) are few; the null verdict rate is also estimated from
``--digits-draws`` random choices of K blocks per seed (every such choice is K independent repeats of each cell, so
the rate is unbiased, but the choices share blocks: the effective number of replications lies between the disjoint
count and the number of draws).

Writes benchmarks/results/calibration-cpu.json (the machine's facts, the load, the seconds taken). At the paper's N
(one repeat of 50,000 in blocks, a block jackknife): benchmarks/calibration_paper.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import Bench, load_model, machine_info, print_table
from harness.metrics import features as F
from harness.diffusion.analytic import exact_mixture, frechet_distance
from harness.metrics.exact import score_exact
from harness.diffusion.images import to_uint8
from harness.metrics.suite import Scoring, feature_metrics, fid_infinity, score
from harness.core.names import Metric
from harness.diffusion.noise import DEFAULT_NOISE_SCHEME
from harness.report.claims import FAIL, PASS, _verdict  # the report's verdict rule, called as the report calls it
from harness.report.stats import paired_interval
from harness.diffusion.sampling import sample_seeded
from harness.diffusion.samplers import SAMPLERS
from harness.diffusion.schedule import NoiseSchedule
from harness.diffusion.trajectory import timesteps

CPU = torch.device("cpu")
DDIM = SAMPLERS["ddim"]
FID_TARGET = {Metric.FID: Metric.FID, Metric.FID_INF: Metric.FID}  # FID-inf estimates FID's N -> inf value
PIXEL_METRICS = {Metric.FID, Metric.FID_INF, Metric.KID, Metric.PRC_PRECISION, Metric.PRC_RECALL}


class CellData:
    """Every replication's per-repeat metrics of one cell ([reps, K] per metric) and its pooled moments."""

    def __init__(self):
        self.values: dict[str, list[list[float]]] = {}
        self.moments: dict[str, list] = {}  # name: [count, sum, sum of outer products]

    def add(self, per_repeat: list[dict]):
        for name in per_repeat[0]:
            self.values.setdefault(name, []).append([r.get(name, math.nan) for r in per_repeat])

    def pool(self, name: str, x: np.ndarray):
        m = self.moments.setdefault(name, [0, 0.0, 0.0])
        m[0] += len(x)
        m[1] = m[1] + x.sum(0)
        m[2] = m[2] + x.T @ x

    def stats(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        n, s, ss = self.moments[name]
        mean = s / n
        return mean, (ss - n * np.outer(mean, mean)) / (n - 1)

    def array(self, name: str) -> np.ndarray:
        return np.asarray(self.values[name], dtype=float)


def pixel_features(x: torch.Tensor, extractor) -> torch.Tensor:
    """The samples as 8-bit images (``images.to_uint8``, as the store keeps images) through the pixels extractor."""
    with torch.no_grad():
        return extractor(to_uint8(x))[0].double()


def sample_cell(mixture, schedule, *, S: int | None, eta: float, seed: int, n: int, law: bool) -> torch.Tensor:
    """n samples of a cell as the store holds them (float32): DDIM from the analytic eps*, or exact draws of the law."""
    if law:
        return mixture.sample(n, torch.Generator().manual_seed(seed)).float()
    tau = timesteps("uniform", S)
    return sample_seeded(mixture.eps_model(schedule), range(n), seed, mixture.shape, tau, schedule, eta, CPU,
                         sampler=DDIM.sample).float()


def run_cell(mixture, schedule, spec: dict, args, extractor, ref_stats, suite: Scoring | None) -> CellData:
    data, K, N = CellData(), args.K, args.N
    tau = timesteps("uniform", spec["S"]) if spec["S"] else None
    for r in range(args.reps):
        seed = spec["seed"](r)
        x = sample_cell(mixture, schedule, S=spec["S"], eta=spec["eta"], seed=seed, n=K * N, law=spec["law"])
        per = score_exact(x, K, mixture, seed=seed, tau=tau, schedule=schedule, noise_scheme=DEFAULT_NOISE_SCHEME,
                          deterministic=spec["eta"] == 0 and not spec["law"])
        data.pool("x", x.double().flatten(1).numpy())
        if extractor is not None:
            f = pixel_features(x, extractor)
            data.pool("features", f.numpy())
            for k in range(K):
                block = f[k * N:(k + 1) * N]
                if suite is not None and k < args.suite_K:  # the whole suite, as a cell of the digits is scored
                    per[k].update(feature_metrics({(F.PIXELS, "pixels"): block.float()}, ref_stats["features"], suite))
                    per[k].pop(Metric.FD_PIXELS, None)  # the same numbers as FID here (pixel features)
                    per[k].pop(Metric.KID_SUBSET_STD, None)
                else:
                    b = block.numpy()
                    per[k][Metric.FID] = frechet_distance(b.mean(0), np.cov(b, rowvar=False), *ref_stats["moments"])
                    per[k][Metric.FID_INF] = fid_infinity(b, *ref_stats["moments"])
        data.add(per)
    return data


def population(mixture, data: CellData, metric: str, ref_stats) -> float | None:
    """The metric's own (N-free) value for the cell, from its pooled samples; None where it has none."""
    if metric in (Metric.FD_TRUE, Metric.FD_TRUE_INF):  # FD-inf estimates the FD's N -> inf value
        return frechet_distance(*data.stats("x"), mixture.mean(), mixture.covariance())
    if metric in FID_TARGET:
        return frechet_distance(*data.stats("features"), *ref_stats["moments"])
    if metric == Metric.FLOW_RMSE:
        return math.sqrt(float((data.array(metric) ** 2).mean()))
    return None


def judge(metric: str, a: np.ndarray, b: np.ndarray, K: int, truth_pop: float | None, truth_n: float) -> dict:
    """Replications of one comparison: coverage of both targets, and how often PASS / FAIL."""
    intervals = [paired_interval(a[r, :K], b[r, :K]) for r in range(len(a))]
    verdicts = [_verdict(metric, iv) for iv in intervals]
    half = [(iv.high - iv.low) / 2 for iv in intervals]
    out = {"metric": metric, "K": K, "reps": len(a), "truth_pop": truth_pop, "truth_N": truth_n,
           "cover_pop": None if truth_pop is None else float(np.mean([iv.low <= truth_pop <= iv.high for iv in intervals])),
           "cover_N": float(np.mean([iv.low <= truth_n <= iv.high for iv in intervals])),
           "pass_rate": verdicts.count(PASS) / len(a), "fail_rate": verdicts.count(FAIL) / len(a),
           "median_half_width": float(np.median(half)),
           "sd_difference": float(np.std(a[:, :K] - b[:, :K], ddof=1))}
    out["decided_rate"] = out["pass_rate"] + out["fail_rate"]
    return out


EXACT = {  # dataset: cells (S, eta, law, which seed: 'p' paired / 'o' other) and the settings comparing them
    "glyphs64": {
        "cells": {"ddim10": (10, 0.0, False, "p"), "ddim10_other": (10, 0.0, False, "o"), "ddim20": (20, 0.0, False, "p"),
                  "ddim10_eta1": (10, 1.0, False, "p"), "law": (None, 0.0, True, "p"), "law_other": (None, 0.0, True, "o")},
        "suite": ("law", "law_other"),
        "settings": [("null: DDIM S=10 eta=0, two seeds", "ddim10", "ddim10_other"),
                     ("null: the data law against itself (exact draws), two seeds", "law", "law_other"),
                     ("alternative: S=10 vs S=20 (eta=0, paired)", "ddim10", "ddim20"),
                     ("alternative: eta=0 vs eta=1 (S=10, paired)", "ddim10", "ddim10_eta1")],
    },
    "gaussian64": {
        "cells": {"ddim10": (10, 0.0, False, "p"), "ddim10_other": (10, 0.0, False, "o"), "ddim20": (20, 0.0, False, "p"),
                  "ddim10_eta1": (10, 1.0, False, "p")},
        "suite": (),
        "settings": [("null: DDIM S=10 eta=0, two seeds", "ddim10", "ddim10_other"),
                     ("alternative: S=10 vs S=20 (eta=0, paired)", "ddim10", "ddim20"),
                     ("alternative: eta=0 vs eta=1 (S=10, paired)", "ddim10", "ddim10_eta1")],
    },
}


def run_exact(args) -> list[dict]:
    schedule, rows = NoiseSchedule.linear(), []
    extractor = F.make_extractor(F.PIXELS, ["pixels"], None, CPU)
    for name, plan in EXACT.items():
        mixture = exact_mixture(name)
        pixels = name == "glyphs64" and (args.metrics is None or bool(set(args.metrics) & PIXEL_METRICS))
        ref_stats = None
        if pixels:
            ref = pixel_features(mixture.sample(args.reference, torch.Generator().manual_seed(10**6)).float(), extractor)
            r = ref.numpy()
            ref_stats = {"features": {(F.PIXELS, "pixels"): ref.float()}, "moments": (r.mean(0), np.cov(r, rowvar=False))}
        suite = Scoring(reference="exact draws", feature_extractor=F.PIXELS, image_size=8)
        cells = {}
        settings = [s for s in plan["settings"] if args.settings in ("all", s[0].split(":")[0])]
        needed = {c for s in settings for c in s[1:]}
        for cell, (S, eta, law, which) in [(c, v) for c, v in plan["cells"].items() if c in needed]:
            start = time.perf_counter()
            spec = {"S": S, "eta": eta, "law": law,
                    "seed": (lambda r: r) if which == "p" else (lambda r: args.reps + r)}
            cells[cell] = run_cell(mixture, schedule, spec, args, extractor if pixels else None, ref_stats,
                                   suite if cell in plan["suite"] else None)
            print(f"{name} {cell}: {args.reps} x {args.K} x {args.N} samples scored in {time.perf_counter() - start:.0f} s",
                  flush=True)
        for setting, a_name, b_name in settings:
            a, b, null = cells[a_name], cells[b_name], setting.startswith("null")
            for metric in [m for m in a.values if m in b.values and (args.metrics is None or m in args.metrics)]:
                va, vb = a.array(metric), b.array(metric)
                pa, pb = (population(mixture, c, metric, ref_stats) for c in (a, b))
                truth_pop = 0.0 if null else (None if pa is None else pa - pb)
                truth_n = 0.0 if null else float((va - vb).mean())
                for K in [k for k in sorted({2, args.K}) if np.isfinite(va[:, :k]).all() and np.isfinite(vb[:, :k]).all()]:
                    rows.append({"dataset": name, "setting": setting, "a": a_name, "b": b_name, "N": args.N,
                                 "null": null, "value_a": float(va.mean()), "value_b": float(vb.mean()),
                                 **judge(metric, va, vb, K, truth_pop, truth_n)})
    return rows


def run_digits(args) -> dict:
    """Two seeds of the digits cell S=10 eta=0: per-block metrics, then the null verdict rates."""
    model, shape, weights = load_model("digits", CPU)
    schedule, tau, n = NoiseSchedule.linear(), timesteps("uniform", args.digits_S), args.digits_blocks * args.N
    scoring = Scoring(reference="digits-train", feature_extractor=F.DIGITS, image_size=8, fid_infinity=True)
    per_seed, seconds = [], {}
    for seed in (1, 2):
        start = time.perf_counter()
        with torch.no_grad():
            images = torch.cat([to_uint8(sample_seeded(model, range(i, min(n, i + 500)), seed, shape, tau, schedule,
                                                       0.0, CPU, sampler=DDIM.sample)) for i in range(0, n, 500)])
        seconds[f"sampling_seed{seed}"] = time.perf_counter() - start
        start = time.perf_counter()
        blocks = score(images, args.digits_blocks, scoring, CPU)
        seconds[f"scoring_seed{seed}"] = time.perf_counter() - start
        per_seed.append(blocks)
        print(f"digits seed {seed}: {n} images sampled and scored as {args.digits_blocks} blocks", flush=True)
    metrics = [m for m in per_seed[0][0] if m != Metric.KID_SUBSET_STD]
    K, rng = args.K, np.random.default_rng(0)
    disjoint = args.digits_blocks // K
    draws = [(rng.choice(args.digits_blocks, K, replace=False), rng.choice(args.digits_blocks, K, replace=False))
             for _ in range(args.digits_draws)]
    rows = []
    for metric in metrics:
        a = np.array([b[metric] for b in per_seed[0]])
        b = np.array([b[metric] for b in per_seed[1]])
        dis = [_verdict(metric, paired_interval(a[r * K:(r + 1) * K], b[r * K:(r + 1) * K])) for r in range(disjoint)]
        res = [_verdict(metric, paired_interval(a[i], b[j])) for i, j in draws]
        rows.append({"metric": metric, "K": K, "N": args.N, "blocks_per_seed": args.digits_blocks,
                     "mean_seed1": float(a.mean()), "mean_seed2": float(b.mean()), "sd_block": float(a.std(ddof=1)),
                     "disjoint_reps": disjoint, "disjoint_decided": sum(v in (PASS, FAIL) for v in dis),
                     "draws": len(draws), "decided_rate_draws": float(np.mean([v in (PASS, FAIL) for v in res])),
                     "blocks_seed1": a.tolist(), "blocks_seed2": b.tolist()})
    return {"model": weights, "S": args.digits_S, "eta": 0.0, "seeds": [1, 2], "seconds": seconds, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=200, help="independent replications per exact-score setting")
    parser.add_argument("--N", type=int, default=250, help="images per repeat (the digits' default)")
    parser.add_argument("--K", type=int, default=5, help="repeats per cell (the digits' default); K=2 (the exact "
                                                         "datasets' default) is reported from the first 2 repeats")
    parser.add_argument("--suite-K", type=int, default=2, help="repeats of the law's null cells scored with KID and "
                        "precision/recall too (they cost most: 0.2 s a repeat)")
    parser.add_argument("--reference", type=int, default=1500, help="exact draws in glyphs64's fixed reference set")
    parser.add_argument("--digits-blocks", type=int, default=25, help="blocks of N digits images per seed (0: skip)")
    parser.add_argument("--digits-draws", type=int, default=2000, help="random choices of K blocks per seed")
    parser.add_argument("--digits-S", type=int, default=10)
    parser.add_argument("--out", default=None, help="folder for the JSON (default benchmarks/results)")
    parser.add_argument("--settings", default="all", choices=["all", "null", "alternative"])
    parser.add_argument("--metrics", type=lambda v: v.split(","), default=None,
                        help="only these metrics' rows (comma-separated); with --merge-into, they replace those rows")
    parser.add_argument("--merge-into", default=None, help="an earlier run's JSON: replace its rows of --metrics for "
                        "--settings with this run's and record this run as a supplement (no digits part)")
    args = parser.parse_args()
    bench = Bench("calibration", args)
    start = time.perf_counter()
    exact = run_exact(args)
    exact_s = time.perf_counter() - start
    columns = [("dataset", "data", "s"), ("setting", "setting", "s"), ("metric", "metric", "s"), ("K", "K", "d"),
               ("truth_pop", "truth", ".3g"), ("cover_pop", "cover", ".3f"), ("cover_N", "cover@N", ".3f"),
               ("pass_rate", "PASS", ".3f"), ("fail_rate", "FAIL", ".3f"), ("median_half_width", "half-width", ".3g")]
    print_table([{**r, "setting": r["setting"].split(":")[0] + ":" + r["setting"].split(":")[1][:28]} for r in exact],
                columns, title=f"Exact-score data: {args.reps} replications per row, N={args.N}")
    digits = None
    if args.digits_blocks:
        start = time.perf_counter()
        digits = run_digits(args)
        digits["seconds"]["total"] = time.perf_counter() - start
        print_table(digits["rows"], [("metric", "metric", "s"), ("disjoint_reps", "disjoint reps", "d"),
                                     ("disjoint_decided", "decided", "d"), ("draws", "draws", "d"),
                                     ("decided_rate_draws", "null decided rate", ".3f"), ("sd_block", "sd", ".3g")],
                    title=f"Digits, two seeds of S={args.digits_S} eta=0 (a null), K={args.K}, N={args.N}")
    if args.merge_into:
        merge(args, exact, exact_s, bench)
        return
    bench.write(CPU, {"exact": {"seconds": round(exact_s, 1), "rows": exact}, "digits": digits}, args.out)


def merge(args, rows: list[dict], seconds: float, bench: Bench) -> None:
    """Replace the earlier run's rows of these metrics and settings by this run's; say so in ``supplements``."""
    path = Path(args.merge_into)
    payload = json.loads(path.read_text())
    replaced = {(r["dataset"], r["setting"], r["metric"]) for r in rows}
    old = payload["results"]["exact"]["rows"]
    payload["results"]["exact"]["rows"] = [r for r in old if (r["dataset"], r["setting"], r["metric"]) not in replaced]
    payload["results"]["exact"]["rows"] += rows
    payload.setdefault("supplements", []).append({
        "command": shlex.join(["python", *sys.argv]), "date": bench.started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 1), "loadavg_before": list(bench.loadavg_before), "loadavg_after": list(os.getloadavg()),
        "git_commit": machine_info(CPU)["git_commit"], "rows_replaced": sorted(map(list, replaced))})
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"merged {len(rows)} rows into {path}")


if __name__ == "__main__":
    main()
