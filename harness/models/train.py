"""python -m harness.models.train: train a U-Net with L_simple (Ho et al. 2020; the DDIM paper's L_1, gamma = 1).

    L_simple = E_{x0, t, eps} || eps - eps_theta(sqrt(a_t) x0 + sqrt(1 - a_t) eps, t) ||^2   (mean over dimensions)

AdamW, gradient clipping, an EMA of the weights with warm-up, and timesteps drawn antithetically as the official
code (t and T - 1 - t). Checkpoints are the official ``ckpt.pth`` list [model, optimizer, epoch, step, ema], written
atomically every ``checkpoint_every`` steps; rerunning the same command resumes from the last one.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from harness.core.cli import reports_errors
from harness.core.config import HYDRA_CONFIG_PATH
from harness.core.errors import HarnessError
from harness.core.files import save_atomic
from harness.data import digits
from harness.diffusion.schedule import NoiseSchedule
from harness.diffusion.unet import build_unet

log = logging.getLogger(__name__)


def l_simple(model, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Eq. (5) with gamma = 1: mean squared error of the noise prediction at x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps."""
    a = alpha_bar[t].float().view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1.0 - a).sqrt() * eps
    return (model(x_t, t.float()) - eps).pow(2).mean()


def antithetic_timesteps(n: int, T: int, generator: torch.Generator) -> torch.Tensor:
    """t ~ U{0..T-1} for half the batch and T - 1 - t for the other half (official ``train``)."""
    t = torch.randint(0, T, (n // 2 + 1,), generator=generator)
    return torch.cat([t, T - t - 1])[:n]


class EMA:
    """Exponential moving average of parameters; with warm-up the decay is min(decay, (1 + n) / (10 + n))."""

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool):
        self.decay, self.warmup, self.updates = decay, warmup, 0
        self.shadow = {k: v.detach().clone() for k, v in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay
        for k, v in model.named_parameters():
            self.shadow[k].lerp_(v.detach(), 1.0 - d)

    def state_dict(self) -> dict:
        return dict(self.shadow)

    def load_state_dict(self, state: dict, updates: int) -> None:
        self.shadow = {k: v.clone() for k, v in state.items()}
        self.updates = updates


def load_training_images(dataset_cfg: DictConfig) -> torch.Tensor:
    if dataset_cfg.name == "digits":
        return digits.images(dataset_cfg.train_split)
    raise HarnessError(
        f"Training is implemented for the digits dataset only (got {dataset_cfg.name!r}); the paper's models are the "
        "pretrained checkpoints (model.checkpoint)."
    )


def train(cfg: DictConfig, out_dir: Path) -> dict:
    tc = cfg.train
    torch.set_num_threads(int(tc.threads))
    data = load_training_images(cfg.dataset)
    schedule = NoiseSchedule.linear(cfg.diffusion.T, cfg.diffusion.beta_start, cfg.diffusion.beta_end)
    alpha_bar = schedule.alpha_bar_ext[1:]
    T = schedule.T

    torch.manual_seed(int(tc.seed))
    model = build_unet(cfg.model.architecture)
    opt = torch.optim.AdamW(model.parameters(), lr=float(tc.lr), weight_decay=float(tc.weight_decay))
    ema = EMA(model, float(tc.ema_decay), bool(tc.ema_warmup))
    gen = torch.Generator().manual_seed(int(tc.seed))
    step, history = 0, []

    ckpt_path = out_dir / "ckpt.pth"
    if ckpt_path.exists():
        states = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(states[0])
        opt.load_state_dict(states[1])
        step = int(states[3])
        ema.load_state_dict(states[4], step)
        gen.manual_seed(int(tc.seed) + step)  # a fresh, deterministic stream after a resume
        history = json.loads((out_dir / "history.json").read_text()) if (out_dir / "history.json").exists() else []
        log.info("resumed from %s at step %d", ckpt_path, step)

    from tqdm import tqdm  # lazy: tqdm: only when a bar is shown

    model.train()
    running, t0 = 0.0, time.perf_counter()
    bar = tqdm(total=int(tc.steps), initial=step, desc="train", unit="step", mininterval=2.0)
    while step < int(tc.steps):
        idx = torch.randint(0, len(data), (int(tc.batch_size),), generator=gen)
        x0 = data[idx]
        t = antithetic_timesteps(len(idx), T, gen)
        eps = torch.randn(x0.shape, generator=gen)
        loss = l_simple(model, x0, t, eps, alpha_bar)
        for group in opt.param_groups:
            group["lr"] = float(tc.lr) * min(1.0, (step + 1) / max(1, int(tc.warmup_steps)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(tc.grad_clip))
        opt.step()
        ema.update(model)
        step += 1
        running += loss.item()
        bar.update(1)
        if step % int(tc.log_every) == 0:
            history.append({"step": step, "loss": running / int(tc.log_every), "seconds": time.perf_counter() - t0})
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
            running = 0.0
        if step % int(tc.checkpoint_every) == 0 or step == int(tc.steps):
            save_atomic([model.state_dict(), opt.state_dict(), 0, step, ema.state_dict()], ckpt_path)
            (out_dir / "history.json").write_text(json.dumps(history, indent=1))
    bar.close()
    return {"steps": step, "history": history, "checkpoint": str(ckpt_path)}


@hydra.main(version_base="1.3", config_path=HYDRA_CONFIG_PATH, config_name="train")
@reports_errors
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig  # lazy: Hydra's internals: only when a sweep or job runs

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    result = train(cfg, out_dir)
    last = result["history"][-1]["loss"] if result["history"] else float("nan")
    print(f"trained {result['steps']} steps, last logged loss {last:.4f}; checkpoint {result['checkpoint']}")


if __name__ == "__main__":
    main()
