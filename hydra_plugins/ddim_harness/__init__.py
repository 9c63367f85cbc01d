"""Hydra instantiates launchers only from classes defined in the ``hydra_plugins`` package: this is the harness's
launcher (the code is harness.launcher), selected by conf/hydra/launcher/parallel.yaml."""

from harness.launcher import CellLauncher as _CellLauncher


class CellLauncher(_CellLauncher):
    """Worker processes on this machine, each cell alone (see harness.launcher)."""
