"""The harness's Hydra configs, shipped inside the package as ``harness.conf`` (pyproject maps this folder)."""
