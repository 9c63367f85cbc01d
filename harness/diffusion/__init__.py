"""The mathematics of the paper, pure functions over tensors: the noise schedule, the sub-sequences tau, eta, the
per-image noise streams, the generalized generative process (eq. 12) and its successors, the U-Net, the exact eps of
Gaussian mixtures, slerp and the official image quantization. Imports only ``harness.core``: no files of the
harness above, no tracking, no configuration."""
