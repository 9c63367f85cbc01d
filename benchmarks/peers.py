"""Images per second of the harness's sampler against two peers, on the same U-Net weights, batch and device.

(a) harness: ``harness.diffusion.sampling.sample_seeded`` (per-image noise streams, eq. 12, float64 schedule scalars).
(b) diffusers: a loop over ``DDIMScheduler`` (linear betas 1e-4..0.02, T=1000, clip_sample=False,
    set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading"): ``set_timesteps(S)``, then
    ``eps = model(x, t); x = scheduler.step(eps, t, x, eta=eta, generator=g).prev_sample``; the U-Net is wrapped
    so that it takes diffusers' integer timestep tensors.
(c) official-style: a loop written the way ermongroup/ddim's ``generalized_steps`` is (every x_t and x0 prediction
    kept in lists and moved to the CPU each step, a_t by a cumprod over [0, betas] and ``index_select`` each step,
    noise from ``torch.randn_like`` each step, even for eta = 0).
Each run draws its own x_T inside the timed region. Also checks that (a) and (b) (and (c)) give the same images for
eta = 0 from the same x_T on the uniform trajectory (S must divide 1000): the max |difference| is reported; it is
not 0 because diffusers and the official code hold alpha_bar in float32, the harness in float64.

    python benchmarks/peers.py                       # digits, batch 500, S=50, eta 0 and 1
    python benchmarks/peers.py --model cifar10 --batch 8 --steps 5

Needs diffusers: pip install --no-compile -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # diffusers must never reach the Hub here

import common  # noqa: F401,E402  (puts the repository on sys.path)
import torch  # noqa: E402
from common import Bench, common_args, load_model, measure, pick_device, print_table, set_threads  # noqa: E402

from harness.diffusion.noise import ImageNoise  # noqa: E402
from harness.diffusion.sampling import sample, sample_seeded  # noqa: E402
from harness.diffusion.schedule import NoiseSchedule, linear_betas  # noqa: E402
from harness.diffusion.trajectory import timesteps  # noqa: E402

T, BETA_START, BETA_END = 1000, 1e-4, 0.02


# --- (b) diffusers -------------------------------------------------------------------------------------------------

class DiffusersTimestep(torch.nn.Module):
    """The harness U-Net called with diffusers' timestep (an int64 0-d tensor on the CPU) as a [1] float tensor."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x, t.reshape(1).to(device=x.device, dtype=x.dtype))


def diffusers_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=T, beta_start=BETA_START, beta_end=BETA_END, beta_schedule="linear",
        clip_sample=False, set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading",
    )


def diffusers_loop(scheduler, model, x, steps, eta, generator):
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        eps = model(x, t)
        x = scheduler.step(eps, t, x, eta=eta, generator=generator).prev_sample
    return x


# --- (c) the official code's generalized_steps, as it is written there ---------------------------------------------

def compute_alpha(beta, t):
    beta = torch.cat([torch.zeros(1).to(beta.device), beta], dim=0)
    return (1 - beta).cumprod(dim=0).index_select(0, t + 1).view(-1, 1, 1, 1)


def official_loop(x, seq, model, b, eta):
    n, device = x.size(0), x.device
    seq_next = [-1] + list(seq[:-1])
    x0_preds, xs = [], [x]
    for i, j in zip(reversed(seq), reversed(seq_next)):
        t = (torch.ones(n) * i).to(device)
        next_t = (torch.ones(n) * j).to(device)
        at = compute_alpha(b, t.long())
        at_next = compute_alpha(b, next_t.long())
        xt = xs[-1].to(device)
        et = model(xt, t)
        x0_t = (xt - et * (1 - at).sqrt()) / at.sqrt()
        x0_preds.append(x0_t.to("cpu"))
        c1 = eta * ((1 - at / at_next) * (1 - at_next) / (1 - at)).sqrt()
        c2 = ((1 - at_next) - c1**2).sqrt()
        xt_next = at_next.sqrt() * x0_t + c1 * torch.randn_like(x) + c2 * et
        xs.append(xt_next.to("cpu"))
    return xs, x0_preds


# --------------------------------------------------------------------------------------------------------------------

def identity_check(model, shape, batch, steps, device) -> dict:
    """Max |difference| of the eta = 0 images of (b) and (c) against (a), all from the harness's x_T."""
    tau = timesteps("uniform", steps)
    x_T = ImageNoise(0, range(batch), device).randn(*shape)
    with torch.no_grad():
        ours = sample(model, x_T, tau, NoiseSchedule.linear(T, BETA_START, BETA_END), 0.0)
        theirs = diffusers_loop(diffusers_scheduler(), DiffusersTimestep(model), x_T.clone(), steps, 0.0, None)
        betas = linear_betas(T, BETA_START, BETA_END).float().to(device)
        official = official_loop(x_T.clone(), tau, model, betas, 0.0)[0][-1].to(device)
    return {
        "diffusers_timesteps_equal": diffusers_scheduler_timesteps(steps) == list(reversed(tau)),
        "max_abs_diff_diffusers": float((ours - theirs).abs().max()),
        "max_abs_diff_official": float((ours - official).abs().max()),
        "max_abs_image": float(ours.abs().max()),
    }


def diffusers_scheduler_timesteps(steps):
    s = diffusers_scheduler()
    s.set_timesteps(steps)
    return s.timesteps.tolist()


def main() -> None:
    parser = common_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--model", choices=["digits", "cifar10"], default="digits")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--steps", type=int, default=50, help="S; the identity check needs S to divide 1000")
    parser.add_argument("--etas", default="0,1", help="comma-separated etas")
    args = parser.parse_args()
    import diffusers

    bench = Bench("peers", args)
    device = pick_device(args.device)
    set_threads(args.threads)
    model, shape, weights = load_model(args.model, device)
    wrapped = DiffusersTimestep(model)
    b, S = args.batch, args.steps
    tau = timesteps("uniform", S)
    schedule = NoiseSchedule.linear(T, BETA_START, BETA_END)
    betas = linear_betas(T, BETA_START, BETA_END).float().to(device)  # as the official code holds them
    scheduler = diffusers_scheduler()

    def peer_x_T(generator):
        return torch.randn((b, *shape), generator=generator, device=device)

    rows = []
    for eta in [float(e) for e in args.etas.split(",")]:
        gen = torch.Generator(device).manual_seed(0)
        runs = {
            "harness": lambda: sample_seeded(model, range(b), 0, shape, tau, schedule, eta, device),
            "diffusers": lambda: diffusers_loop(scheduler, wrapped, peer_x_T(gen), S, eta, gen),
            "official-style": lambda: official_loop(peer_x_T(gen), tau, model, betas, eta),
        }
        timings = {name: measure(fn, device, args.repeats, args.warmup) for name, fn in runs.items()}
        ours = b / timings["harness"]["median_s"]
        for name, timing in timings.items():
            ips = b / timing["median_s"]
            rows.append({"sampler": name, "eta": eta, "batch": b, "S": S, "nfe": len(tau), "run_s": timing["median_s"],
                         "images_per_s": ips, "harness_over_this": ours / ips, "timing": timing})
    check = identity_check(model, shape, b, S, device) if T % S == 0 else {"skipped": f"S={S} does not divide {T}"}

    print_table(rows, [("sampler", "sampler", "s"), ("eta", "eta", "g"), ("batch", "batch", "d"), ("nfe", "NFE", "d"),
                       ("run_s", "run s", ".3f"), ("images_per_s", "images/s", ".1f"),
                       ("harness_over_this", "harness/this", ".3f")],
                f"{args.model} U-Net ({weights}) on {device}, {torch.get_num_threads()} threads; target harness/peer >= 1.0")
    print(f"\neta=0 identity (same x_T, uniform tau, S={S}): {check}")
    bench.write(device, {"model": args.model, "weights": weights, "diffusers": diffusers.__version__,
                         "rows": rows, "identity_eta0": check}, args.out)


if __name__ == "__main__":
    main()
