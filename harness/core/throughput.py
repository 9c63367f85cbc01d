"""Sampling throughput: seconds per image and network evaluation, the device kind that measured it, and durations in
words (the dry run's estimates and the report's plans)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    seconds_per_image_nfe: float
    runs: int  # how many runs it is the median of (0: given on the command line)
    kind: str  # "GPU", "CPU" or "given"
    source: str = ""  # for one run: "run <id> on <device name>"


def device_kind(device: str) -> str:
    """``GPU`` for a run's device tag ``cuda``/``cuda:1``, else ``CPU``."""
    return "GPU" if device.startswith("cuda") else "CPU"


def duration(seconds: float) -> str:
    """``45 s``, ``12 min`` or ``3.2 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
