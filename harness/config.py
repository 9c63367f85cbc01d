"""Hydra glue: resolvers used by ``conf/`` and the callback that checks a sweep before launching it."""

from __future__ import annotations

import os
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


def default_workers() -> int:
    """Parallel jobs for a local multirun: one per GPU on a CUDA machine, else one per CPU core."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return os.cpu_count() or 1


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("harness.workers"):
        OmegaConf.register_new_resolver("harness.workers", default_workers)


class CheckSweep(Callback):
    """Hydra callback: validate every swept value (S, eta, N, trajectory) before any job is launched."""

    def on_multirun_start(self, config: DictConfig, **_: Any) -> None:
        import sys

        from .cells import check_sweep_overrides
        from .errors import HarnessError

        try:
            check_sweep_overrides(list(config.hydra.overrides.task), config)
        except HarnessError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
