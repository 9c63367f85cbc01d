"""The networks' weights: the checkpoint registry and verified downloads (checkpoints), Hugging Face hub snapshots
and the diffusers layout converted to the official one (hub, diffusers_format), safe loading into the U-Net
(loading), how the network is run (acceleration: precision, compile), the digits classifier, training and export.
Imports ``harness.diffusion``, ``harness.data`` and ``harness.core``."""
