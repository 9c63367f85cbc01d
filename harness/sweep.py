"""A multirun's cells before launch: the same expansion as Hydra's basic sweeper, each cell composed and checked."""

from __future__ import annotations

from omegaconf import DictConfig


def sweep_overrides(config: DictConfig) -> list[list[str]]:
    """The override list of every job, as Hydra's BasicSweeper builds them (preset params, then the command line)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(arguments)
    return BasicSweeper.split_arguments(overrides, None)[0]


def compose_cells(config: DictConfig) -> list[tuple[list[str], DictConfig]]:
    """(overrides, composed job config) for every cell of the sweep; needs Hydra initialised (inside the app)."""
    from hydra import compose

    return [(cell, compose(config_name="config", overrides=cell)) for cell in sweep_overrides(config)]
