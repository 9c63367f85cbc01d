"""Figure 4's data: hours to sample 50k images against the number of network evaluations, per dataset and device.

Timing jobs give ``hours_50k`` directly. A dataset without timing jobs falls back to its sample jobs:
``seconds_per_image * 50000 / 3600`` (sampling wall time of the FID job, which includes batching effects), and the
report says so. Runs at the same NFE (e.g. different eta, which costs the same) are combined by their median.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .stats import Line, fit_line, loglog_line
from ..names import Metric
from .labels import dataset_name
from .runs import RunSet

METRICS = {Metric.HOURS_50K: "hours_50k", Metric.SECONDS_PER_IMAGE: "seconds_per_image"}  # the columns below
TIMING_SOURCE = "timing jobs (hours_50k)"
SAMPLE_SOURCE = "sample jobs (fallback: seconds_per_image * 50000 / 3600)"


@dataclass
class TimingLine:
    dataset: str
    device: str
    source: str
    points: pd.DataFrame  # one row per NFE: nfe, hours, seconds_per_image
    runs: pd.DataFrame  # the runs behind it

    @property
    def label(self) -> str:
        return f"{dataset_name(self.dataset)}, {self.device}"

    @property
    def loglog(self) -> Line:
        """log hours against log NFE: slope 1 = proportional."""
        return loglog_line(self.points["nfe"], self.points["hours"])

    @property
    def linear(self) -> Line:
        """seconds_per_image = a + b NFE (its R^2 says how straight the line is)."""
        return fit_line(self.points["nfe"], self.points["seconds_per_image"])

    @property
    def fallback(self) -> bool:
        return self.source == SAMPLE_SOURCE


def _device(row: pd.Series) -> str:
    """'cpu: <model>' / 'cuda:0: <GPU name>', with the precision when it is not fp32."""
    name, dev, precision = row["device_name"], row["device"], row["precision"]
    if isinstance(name, str) and name and name != "None":
        label = f"{dev}: {name}" if isinstance(dev, str) and dev and dev not in name else name
    else:
        label = str(dev) if isinstance(dev, str) else "unknown device"
    return label if precision in (None, "fp32") or pd.isna(precision) else f"{label}, {precision}"


def timing_lines(runs: RunSet) -> list[TimingLine]:
    lines = []
    timing = runs.job("timing", [Metric.HOURS_50K, Metric.SECONDS_PER_IMAGE]).rename(columns=METRICS)
    sample = runs.job("sample", [Metric.SECONDS_PER_IMAGE]).rename(columns=METRICS)
    for ds in sorted(set(timing["dataset"]) | set(sample["dataset"])):
        sub, source = timing[(timing["dataset"] == ds) & timing["hours_50k"].notna()], TIMING_SOURCE
        if sub.empty:
            sub = sample[(sample["dataset"] == ds) & sample["seconds_per_image"].notna()]
            sub, source = sub.assign(hours_50k=sub["seconds_per_image"] * 50_000 / 3600.0), SAMPLE_SOURCE
        if sub.empty:
            continue
        sub = sub.assign(device_label=sub.apply(_device, axis=1), nfe=sub["nfe"].fillna(sub["S"]).astype(int))
        for device, group in sub.groupby("device_label", sort=True):
            points = group.groupby("nfe", sort=True).agg(hours=("hours_50k", "median"),
                                                          seconds_per_image=("seconds_per_image", "median"))
            if source == SAMPLE_SOURCE:  # from the median seconds per image, as the sample jobs give no hours
                points["hours"] = points["seconds_per_image"] * 50_000 / 3600.0
            lines.append(TimingLine(ds, device, source, points.reset_index(), group.sort_values("nfe", kind="stable")))
    return lines
