"""python -m harness: one Hydra job per cell (dataset, S, eta); ``-m`` sweeps, e.g. ``-m eta=0,0.2,0.5,1 S=10,20,50,100``."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from .cli import reports_errors
from .config import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@reports_errors
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from .cells import check_cell

    check_cell(cfg)  # bad input stops here, before the heavy imports and any work
    from .runner import run_cell

    run_cell(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
