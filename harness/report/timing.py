"""Figure 4's data: hours to sample 50k images against the number of network evaluations, per dataset and device.

Timing jobs give ``hours_50k`` directly. A dataset without timing jobs falls back to its sample jobs:
``seconds_per_image * 50000 / 3600`` (sampling wall time of the FID job, which includes batching effects), and the
report says so. Runs at the same NFE (e.g. different eta, which costs the same) are combined by their median.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.core.names import Metric
from harness.report.labels import dataset_name
from harness.report.runs import RunSet
from harness.report.stats import Line, fit_line, loglog_line

SPI = Metric.SECONDS_PER_IMAGE
TIMING_SOURCE = "timing jobs (hours_50k)"
SAMPLE_SOURCE = "sample jobs (fallback: seconds_per_image * 50000 / 3600)"


@dataclass
class TimingLine:
    dataset: str
    device: str
    fallback: bool  # from the sample jobs: the dataset has no timing jobs
    points: pd.DataFrame  # one row per NFE: nfe, hours, seconds_per_image
    runs: pd.DataFrame  # the runs behind it

    @property
    def source(self) -> str:
        return SAMPLE_SOURCE if self.fallback else TIMING_SOURCE

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
        return fit_line(self.points["nfe"], self.points[SPI])


def _device(name, device, precision) -> str:
    """'cpu: <model>' / 'cuda:0: <GPU name>', with the precision when it is not fp32."""
    if isinstance(name, str) and name and name != "None":
        label = f"{device}: {name}" if isinstance(device, str) and device and device not in name else name
    else:
        label = str(device) if isinstance(device, str) else "unknown device"
    return label if precision in (None, "fp32") or pd.isna(precision) else f"{label}, {precision}"


def timing_lines(runs: RunSet) -> list[TimingLine]:
    timing = runs.cells("timing", Metric.HOURS_50K, SPI).rename(columns={"value": "hours"})
    sample = runs.cells("sample", SPI).rename(columns={"value": SPI})
    sample = sample[sample["checkpoint"].astype(str) != "None"]  # an analytic model evaluates no network: no time
    lines = []
    for ds in sorted(set(timing["dataset"]) | set(sample["dataset"])):
        sub = timing[(timing["dataset"] == ds) & timing["hours"].notna()]
        fallback = sub.empty
        if fallback:
            sub = sample[(sample["dataset"] == ds) & sample[SPI].notna()]
        sub = sub.assign(device_label=[_device(*r) for r in zip(sub["device_name"], sub["device"], sub["precision"])],
                         nfe=sub["nfe"].fillna(sub["S"]).astype(int))
        for device, group in sub.groupby("device_label", sort=True):
            points = group.groupby("nfe", sort=True)[[SPI] if fallback else ["hours", SPI]].median()
            if fallback:  # from the median seconds per image, as the sample jobs give no hours
                points["hours"] = points[SPI] * 50_000 / 3600.0
            lines.append(TimingLine(ds, device, fallback, points.reset_index(), group.sort_values("nfe", kind="stable")))
    return lines
