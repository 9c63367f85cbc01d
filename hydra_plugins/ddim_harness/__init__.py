"""Hydra search-path plugin: makes the repository's ``sweeps/`` folder the config group ``sweeps``.

``python -m harness sweeps=table1_cifar10`` then runs a preset of the paper's grids (see sweeps/README.md).
"""

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

REPO_ROOT = Path(__file__).resolve().parents[2]


class HarnessSweepsSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if (REPO_ROOT / "sweeps").is_dir():
            search_path.append(provider="ddim-harness-sweeps", path=f"file://{REPO_ROOT}")
