"""The paper's numbers (Song, Meng, Ermon, ICLR 2021), from the project's own copy ``paper_values.csv``: which
datasets, rows (eta) and columns (S) each of Tables 1-3 has, and its values as printed (``45.20``, ``0.0009``) and as
floats. Figure 4 has no numeric values in the paper; ``FIG4_READING`` holds what its caption and the introduction say.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from harness.diffusion.eta import SIGMA_HAT, eta_label, eta_sort_key

PAPER_CSV = Path(__file__).with_name("paper_values.csv")
ORDERING_REFERENCE = "cifar10"  # the paper block shown beside datasets the paper did not use (digits)

# Figure 4 (no numbers in the paper): hours to sample 50k images on one Nvidia 2080 Ti, linear in the trajectory
# length; the introduction: about 20 h for 1000-step DDPM on CIFAR-10 32x32 and nearly 1000 h at 256x256.
FIG4_READING = [
    {"label": "paper: ~20 h at 1000 steps, CIFAR-10 32x32 (2080 Ti)", "steps": 1000, "hours": 20.0},
    {"label": "paper: ~1000 h at 1000 steps, 256x256 (2080 Ti)", "steps": 1000, "hours": 1000.0},
]


@lru_cache(maxsize=1)
def load_paper() -> pd.DataFrame:
    """Columns: table, dataset, row (as in the CSV), S, value (float), what, text (as printed), eta (harness label)."""
    df = pd.read_csv(PAPER_CSV, comment="#", dtype={"value": str})
    df["text"] = df["value"]
    df["value"] = df["text"].astype(float)
    df["eta"] = df["row"].str.removeprefix("eta=").replace({"sigma_hat": SIGMA_HAT}).map(eta_label)
    return df


def paper_layout(table: int) -> tuple[list[str], list[str], list[int]]:
    """The datasets (in the paper's order), rows (eta labels, in the paper's order) and S of one paper table."""
    df = load_paper()[load_paper()["table"] == table]
    return list(dict.fromkeys(df["dataset"])), sorted(set(df["eta"]), key=eta_sort_key), sorted(set(df["S"].tolist()))


def paper_cells(table: int, dataset: str) -> pd.DataFrame:
    """One dataset block of a paper table (empty if none), index (eta label, S): value and text (as printed)."""
    df = load_paper()
    return df[(df["table"] == table) & (df["dataset"] == dataset)].set_index(["eta", "S"])[["value", "text"]]
