"""The Hydra app behind ``python -m harness`` (and the ``ddim-harness`` command): one job per cell.

The configs are the package ``harness.conf`` (the repository's ``conf/``, shipped in the wheel), found through the
installed package rather than a search path over the working directory.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from .config import HYDRA_CONFIG_PATH


def task(cfg: DictConfig) -> dict:
    """One Hydra job: one cell (harness.runner.run_job). Module-level, so worker processes can import it by name."""
    from .runner import run_job

    return run_job(cfg)


main = hydra.main(version_base="1.3", config_path=HYDRA_CONFIG_PATH, config_name="config")(task)
