"""Hydra instantiates launchers and sweepers only from classes defined in ``hydra_plugins``, and imports this package
in every process it starts: these classes name the harness's (conf/hydra/launcher/*.yaml, conf/hydra/sweeper/cells.yaml)
and import their module only when Hydra makes one, so a single run imports no ``harness.sweep``."""

import importlib

from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper


class _Lazy:
    """Making one makes the class ``made`` names instead (``__init__`` is then not called on this one)."""

    made = ""
    setup = launch = sweep = None  # the made object's (these only make the shim concrete for Hydra's plugin scan)

    def __new__(cls, *args, **kwargs):
        module, name = cls.made.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)(*args, **kwargs)


class CellLauncher(_Lazy, Launcher):
    """Worker processes on this machine, each cell alone."""

    made = "harness.sweep.launcher.CellLauncher"


class SlurmLauncher(_Lazy, Launcher):
    """A sweep's jobs as one Slurm array, each task followed to its end."""

    made = "harness.sweep.slurm.SlurmLauncher"


class CellSweeper(_Lazy, Sweeper):
    """The cells of a sweep planned, built, launched and summarised."""

    made = "harness.sweep.sweeper.CellSweeper"
