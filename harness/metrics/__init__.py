"""Scoring images: the reference sets as torch-fidelity inputs (references), feature extractors (features), the
metric suite of a sample cell (suite) and scores against an exact law (exact). Imports ``harness.models``,
``harness.data``, ``harness.diffusion`` and ``harness.core``; never tracking or configuration."""
