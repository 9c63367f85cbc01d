"""Figure 4's data: hours to sample 50k images against the number of network evaluations, per dataset and device.

Timing jobs give ``hours_50k`` directly. A dataset without timing jobs falls back to its sample jobs:
``seconds_per_image * 50000 / 3600`` (sampling wall time of the FID job, which includes batching effects), and the
report says so. Runs at the same NFE (e.g. different eta, which costs the same) are combined by their median.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .labels import dataset_name
from .runs import RunSet
from .stats import linear_fit, loglog_slope

TIMING_SOURCE = "timing jobs (hours_50k)"
SAMPLE_SOURCE = "sample jobs (fallback: seconds_per_image * 50000 / 3600)"


@dataclass
class TimingLine:
    dataset: str
    device: str
    source: str
    nfe: list[int] = field(default_factory=list)
    hours: list[float] = field(default_factory=list)
    seconds_per_image: list[float] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{dataset_name(self.dataset)}, {self.device}"

    @property
    def slope(self) -> float:
        return loglog_slope(self.nfe, self.hours)

    @property
    def r2(self) -> float:
        """R^2 of a straight line seconds_per_image = a + b NFE."""
        return linear_fit([float(n) for n in self.nfe], self.seconds_per_image)[2]

    @property
    def fallback(self) -> bool:
        return self.source == SAMPLE_SOURCE


def _device(row: pd.Series) -> str:
    """'cpu: <model>' / 'cuda:0: <GPU name>', with the precision when it is not fp32."""
    name = row.get("device_name")
    dev = row.get("device")
    if isinstance(name, str) and name and name != "None":
        label = f"{dev}: {name}" if isinstance(dev, str) and dev and dev not in name else name
    else:
        label = str(dev) if isinstance(dev, str) else "unknown device"
    precision = row.get("precision")
    return label if precision in (None, "fp32") or pd.isna(precision) else f"{label}, {precision}"


def timing_lines(runs: RunSet) -> list[TimingLine]:
    lines = []
    timing, sample = runs.job("timing"), runs.job("sample")
    for ds in sorted(set(timing["dataset"]) | set(sample["dataset"])):
        sub = timing[(timing["dataset"] == ds) & timing["hours_50k"].notna()]
        source = TIMING_SOURCE
        if sub.empty:
            sub = sample[(sample["dataset"] == ds) & sample["seconds_per_image"].notna()]
            source = SAMPLE_SOURCE
        if sub.empty:
            continue
        sub = sub.assign(_device=sub.apply(_device, axis=1), _nfe=sub["nfe"].fillna(sub["S"]).astype(int))
        for device, group in sub.groupby("_device", sort=True):
            line = TimingLine(ds, device, source)
            for nfe, at in group.groupby("_nfe", sort=True):
                spi = float(at["seconds_per_image"].median())
                hours = float(at["hours_50k"].median()) if source == TIMING_SOURCE else spi * 50_000 / 3600.0
                line.nfe.append(int(nfe))
                line.hours.append(hours)
                line.seconds_per_image.append(spi)
                line.run_ids.extend(at["run_id"])
                line.batch_sizes.extend(int(b) for b in at["batch_size"].dropna())
            lines.append(line)
    return lines
