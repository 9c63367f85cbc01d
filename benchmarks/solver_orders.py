"""Convergence orders and errors of every sampler on an exact Gaussian, with no model error at all.

    python benchmarks/solver_orders.py [--samples 256] [--S 10,20,40,80,160]

Data: ``gaussian64`` (one Gaussian N(mu, 0.5^2 I), mu a gradient 1x8x8 image) with its exact eps*
(``harness.diffusion.analytic``), samples x_T from N(0, I) in float64, and the reference ``exact_flow`` (the probability-flow
ODE solved in closed form).

(1) Orders: on ``log_snr_linear_schedule`` (lambda = log(alpha / sigma) from 10 at t = 0 to -5 at t = 960) with
    tau = 0, 960/S, ..., 960, i.e. equal steps in lambda: the RMS error of x_0 against the exact flow for each S, and
    the fitted slope of log(error) against log(S) over the S >= 20 (the asymptotic order; theory in the registry).
(2) Equal NFE on the paper's schedule (linear betas 1e-4..0.02, T = 1000, uniform tau, S from ``steps_for_nfe``):
    RMS error for NFE 10, 20, 50. On this grid the last steps are long in lambda (20 -> 0 is h = 2.1 at NFE 50) and
    dominate the error; there the data-prediction multistep extrapolation of dpmpp_2m and unipc does no better than
    DDIM, which is why (1) measures orders on equal lambda steps. The step from t = 0 (sigma / alpha = 0.01) into the
    data is first order for every sampler but PLMS/PNDM and puts a floor of about 1e-4 under these errors.
Both report the exact W2 between the sampler's output distribution and the data: for a Gaussian, eps* is affine in
x, so every sampler is an affine map x_T -> A x_T + d; running it on the D + 1 probes 0, e_1, ..., e_D gives (A, d),
and x_T ~ N(sqrt(a_T) mu, v_T I) (the true marginal at tau[-1]) maps to N(A sqrt(a_T) mu + d, v_T A A^T) exactly.

Writes benchmarks/results/solver_orders-cpu.json (the machine's facts, no paths).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys

import numpy as np
import torch

from common import RESULTS, machine_info, print_table
from harness.diffusion.analytic import exact_flow, exact_mixture, log_snr_linear_schedule
from harness.metrics.exact import exact_w2
from harness.diffusion.samplers import SAMPLERS, CountingModel, steps_for_nfe
from harness.diffusion.schedule import NoiseSchedule
from harness.diffusion.trajectory import timesteps


def measure(name, model, x_T, tau, schedule, data):
    counting = CountingModel(model)
    x0 = SAMPLERS[name].sample(counting, x_T, tau, schedule)
    exact = exact_flow(x_T, tau[-1], schedule, data.means[0], float(data.stds[0]))
    rms = float((x0 - exact).pow(2).mean().sqrt())
    return {"nfe": counting.nfe, "rms_error": rms, "w2": exact_w2(SAMPLERS[name].sample, model, tau, schedule, data)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--S", default="10,20,40,80,160", help="steps on the log-SNR-linear schedule (divisors of 960)")
    parser.add_argument("--nfe", default="10,20,50", help="NFE targets on the paper's schedule")
    args = parser.parse_args()
    started, load_before = datetime.datetime.now(datetime.timezone.utc), os.getloadavg()
    data = exact_mixture("gaussian64")
    x_T = torch.randn(args.samples, *data.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    steps, targets = [int(s) for s in args.S.split(",")], [int(n) for n in args.nfe.split(",")]

    schedule = log_snr_linear_schedule()
    model = data.eps_model(schedule)
    orders, rows = {}, []
    for name, info in SAMPLERS.items():
        runs = [dict(S=S, **measure(name, model, x_T, list(range(0, 961, 960 // S)), schedule, data)) for S in steps]
        fit = [r for r in runs if r["S"] >= 20]
        slope = -np.polyfit(np.log([r["S"] for r in fit]), np.log([r["rms_error"] for r in fit]), 1)[0]
        orders[name] = {"theory": info.order, "slope": round(float(slope), 3), "runs": runs}
        rows.append({"name": name, "theory": info.order, "slope": slope,
                     **{f"e{r['S']}": r["rms_error"] for r in runs}, **{f"n{r['S']}": r["nfe"] for r in runs}})
    print_table(rows, [("name", "sampler", "s"), ("theory", "order", "d"), ("slope", "slope", ".2f")]
                + [(f"e{S}", f"err S={S}", ".2e") for S in steps] + [(f"n{S}", f"NFE S={S}", "d") for S in steps],
                title="(1) RMS error vs the exact flow, log-SNR-linear schedule, equal lambda steps "
                      "(slope over S >= 20)")

    paper = NoiseSchedule.linear()
    model = data.eps_model(paper)
    equal_nfe, rows = {}, []
    for name in SAMPLERS:
        equal_nfe[name] = []
        for target in targets:
            S = steps_for_nfe(name, target, "uniform")
            run = measure(name, model, x_T, timesteps("uniform", S), paper, data)
            equal_nfe[name].append(dict(target_nfe=target, S=S, **run))
        rows.append({"name": name, **{f"e{r['target_nfe']}": r["rms_error"] for r in equal_nfe[name]},
                     **{f"w{r['target_nfe']}": r["w2"] for r in equal_nfe[name]},
                     **{f"n{r['target_nfe']}": r["nfe"] for r in equal_nfe[name]}})
    print_table(rows, [("name", "sampler", "s")] + [(f"n{t}", f"NFE~{t}", "d") for t in targets]
                + [(f"e{t}", f"err@{t}", ".2e") for t in targets] + [(f"w{t}", f"W2@{t}", ".2e") for t in targets],
                title="(2) Equal NFE on the paper's schedule (linear betas, uniform tau): RMS error and exact W2")

    payload = {
        "benchmark": "solver_orders",
        "date": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1),
        "command": shlex.join(["python", "benchmarks/solver_orders.py", *sys.argv[1:]]),
        "options": vars(args),
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "machine": machine_info(torch.device("cpu")),
        "results": {
            "data": {"name": data.name, "std": float(data.stds[0]), "samples": args.samples, "dtype": "float64"},
            "orders_log_snr_linear_schedule": {
                "lambda": [10.0, -5.0], "t_max": 960, "fit_S_min": 20, "samplers": orders,
            },
            "equal_nfe_paper_schedule": equal_nfe,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "solver_orders-cpu.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
