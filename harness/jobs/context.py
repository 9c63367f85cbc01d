"""What every job of a cell gets: its config, device, tracking run, folder, trajectory and model loader."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from omegaconf import DictConfig

from ..checkpoints import load_checkpoint
from ..runtime import apply_precision
from ..sampling import parse_eta
from ..schedule import NoiseSchedule
from ..tracking import CellRun
from ..trajectory import timesteps


class Interrupted(RuntimeError):
    """Raised by the test hook ``debug.fail_after_batches`` to simulate a job killed mid-sampling."""


@dataclass
class CellContext:
    cfg: DictConfig
    device: torch.device
    run: CellRun
    cell_dir: Path
    summary: str = ""

    @cached_property
    def schedule(self) -> NoiseSchedule:
        d = self.cfg.diffusion
        return NoiseSchedule.linear(int(d.T), float(d.beta_start), float(d.beta_end))

    @cached_property
    def tau(self) -> list[int]:
        return timesteps(self.cfg.trajectory, int(self.cfg.S), int(self.cfg.diffusion.T))

    @property
    def eta(self) -> float | str:
        return parse_eta(self.cfg.eta)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        d = self.cfg.dataset
        return (int(d.channels), int(d.image_size), int(d.image_size))

    def load_model(self) -> torch.nn.Module:
        """The configured U-Net with its checkpoint, on the job's device, in eval mode; records the checkpoint."""
        model, info = load_checkpoint(self.cfg.model)
        self.run.set_tags(
            {
                "checkpoint_sha256": info.get("sha256"),
                "checkpoint_path": info.get("path"),
                "checkpoint_weights": info.get("weights"),
            }
        )
        return apply_precision(model.to(self.device).eval(), self.cfg.precision, self.device)

    def interrupt_hook(self, batches_done: int) -> None:
        limit = self.cfg.debug.fail_after_batches
        if limit is not None and batches_done >= int(limit):
            raise Interrupted(f"debug.fail_after_batches={limit}: stopping after {batches_done} batches")
