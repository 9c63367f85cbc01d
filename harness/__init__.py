"""Regenerates the experiments of "Denoising Diffusion Implicit Models" (Song, Meng, Ermon, ICLR 2021)."""
