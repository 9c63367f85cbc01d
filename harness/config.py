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
    """Hydra callback, before any job is launched: compose and validate every cell of the sweep (bad input stops the
    whole sweep with one message); with ``dry_run=true`` print the plan instead of launching."""

    def on_multirun_start(self, config: DictConfig, **_: Any) -> None:
        import sys

        from .cells import check_cell
        from .errors import HarnessError
        from .sweep import compose_cells

        try:
            configs = [cfg for _, cfg in compose_cells(config)]
            for cfg in configs:
                check_cell(cfg)
            if config.get("dry_run"):
                from .dryrun import print_plan

                print_plan(configs)
                sys.exit(0)
        except HarnessError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
