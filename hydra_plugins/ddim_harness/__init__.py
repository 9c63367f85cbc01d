"""Hydra instantiates launchers and sweepers only from classes defined in the ``hydra_plugins`` package: these are
the harness's launcher (the code is harness.launcher), selected by conf/hydra/launcher/parallel.yaml, and sweeper
(harness.parts), selected by conf/hydra/sweeper/cells.yaml."""

from harness.launcher import CellLauncher as _CellLauncher
from harness.parts import CellSweeper as _CellSweeper


class CellLauncher(_CellLauncher):
    """Worker processes on this machine, each cell alone (see harness.launcher)."""


class CellSweeper(_CellSweeper):
    """Hydra's basic sweeper, with a cell's parts=k expanded into its k part jobs (see harness.parts)."""
