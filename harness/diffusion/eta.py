"""eta, the one number that picks a process of the paper's family (eq. 16), parsed in one place.

A valid eta is a finite number >= 0 (0 = DDIM, 1 = DDPM) or the marker ``"hat"`` for Table 1's sigma-hat process.
``eta_label`` is its one spelling everywhere (run params, run names, the cell key, the report): the shortest text
that reads back as exactly the same float (``0``, ``0.2``, ``1``, ``0.30000000000000004``) or ``hat``, so two etas
share a label, and a cell, only when they are equal.
"""

from __future__ import annotations

import math

from harness.core.errors import HarnessError

SIGMA_HAT = "hat"
Eta = float | str  # a float >= 0, or SIGMA_HAT


def parse_eta(value: float | int | str) -> Eta:
    """A valid eta from a config value: a number >= 0 (or its text), or ``"hat"``; else a HarnessError."""
    problem = f"eta must be a number >= 0 or '{SIGMA_HAT}' (the sigma-hat process), got {value!r}."
    if isinstance(value, str):
        if value.strip().lower() == SIGMA_HAT:
            return SIGMA_HAT
        try:
            value = float(value)
        except ValueError:
            raise HarnessError(problem) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise HarnessError(problem)
    return float(value) + 0.0  # -0.0 is 0: one cell, one label


def eta_label(eta: Eta) -> str:
    """``hat`` or the shortest exact text of the float: ``f"{eta:g}"`` when it reads back equal, else ``repr``."""
    eta = parse_eta(eta)
    if eta == SIGMA_HAT:
        return SIGMA_HAT
    short = f"{eta:g}"
    return short if float(short) == eta else repr(eta)


def eta_sort_key(label: str) -> tuple[int, float]:
    """Numbers in increasing order, then sigma-hat (the paper's row order)."""
    return (1, 0.0) if label == SIGMA_HAT else (0, float(label))


def eta_row_name(label: str) -> str:
    """How a table row names an eta: ``eta=0.2`` or ``sigma-hat``."""
    return "sigma-hat" if label == SIGMA_HAT else f"eta={label}"
