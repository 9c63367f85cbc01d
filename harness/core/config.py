"""Where the harness's Hydra configs are: the package ``harness.conf`` (the repository's ``conf/`` folder, shipped
inside the wheel; ``conf/sweeps`` links to the top-level ``sweeps/`` presets) and reading one config of a group."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_PACKAGE = "harness.conf"
HYDRA_CONFIG_PATH = f"pkg://{CONFIG_PACKAGE}"


def config_dir() -> Path:
    return Path(str(files(CONFIG_PACKAGE)))


def load(group: str, name: str) -> DictConfig:
    """One config of a group as it is on disk (no defaults list, no interpolation resolved): e.g. ``load("model", "digits")``."""
    return OmegaConf.load(config_dir() / group / f"{name}.yaml")


def names(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))

