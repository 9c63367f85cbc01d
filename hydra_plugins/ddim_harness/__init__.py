"""Hydra instantiates launchers and sweepers only from classes defined in the ``hydra_plugins`` package: these are
the harness's launchers (the code is harness.sweep.launcher and harness.sweep.slurm), selected by
conf/hydra/launcher/parallel.yaml and slurm.yaml, and sweeper (harness.sweep.sweeper), selected by
conf/hydra/sweeper/cells.yaml."""

from harness.sweep.launcher import CellLauncher as _CellLauncher
from harness.sweep.slurm import SlurmLauncher as _SlurmLauncher
from harness.sweep.sweeper import CellSweeper as _CellSweeper


class CellLauncher(_CellLauncher):
    """Worker processes on this machine, each cell alone (see harness.sweep.launcher)."""


class CellSweeper(_CellSweeper):
    """The cells of a sweep planned, built, launched and summarised (see harness.sweep.sweeper)."""


class SlurmLauncher(_SlurmLauncher):
    """A sweep's jobs as one Slurm array, each task followed to its end (see harness.sweep.slurm)."""
