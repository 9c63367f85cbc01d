"""Names and number formats shared by every part of the report."""

from __future__ import annotations

import math

ETA_ORDER = ["0", "0.2", "0.5", "1", "hat"]
DATASET_NAMES = {
    "digits": "digits 8x8",
    "cifar10": "CIFAR-10",
    "celeba": "CelebA",
    "lsun_bedroom": "LSUN Bedroom",
    "lsun_church": "LSUN Church",
}
DASH = "-"


def eta_label(value) -> str:
    """'0', '0.2', '1', ... or 'hat' for any spelling of an eta (0.0, '1.0', 'sigma_hat', 'hat')."""
    text = str(value).strip().lower()
    if text in ("hat", "sigma_hat", "sigma-hat"):
        return "hat"
    return f"{float(text):g}"


def eta_sort_key(label: str) -> tuple:
    if label == "hat":
        return (1, 0.0)
    return (0, float(label))


def ordered_etas(labels) -> list[str]:
    """The paper's rows first (0, 0.2, 0.5, 1, hat), other measured etas in numeric order before hat."""
    return sorted(set(labels), key=eta_sort_key)


def row_name(eta: str) -> str:
    return "sigma-hat" if eta == "hat" else f"eta={eta}"


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


def fmt_value(value: float | None, metric: str = "fid") -> str:
    """FID: 2 decimals (3 significant digits below 1); MSE: 3 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if metric == "fid":
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:#.3g}"
    return f"{value:.3g}"


def fmt_number(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}g}"
