"""The sampler axis: samplers compared at equal NFE (the network evaluations per image the runs counted).

Per dataset where more than one sampler was run: a sampler-by-NFE table of the headline metric (mean ± 95%
interval), the cells behind a figure of each metric against NFE per sampler, and, for exact-score datasets (their
runs log ``flow_rmse``, the RMS distance of the samples to the exact probability-flow solution from the same x_T),
each deterministic sampler's measured order (minus the log-log slope of flow_rmse against NFE over its cells)
beside its theoretical order (tag ``sampler_order``). DDIM rows are one per eta; DDIM with eta > 0 (and sigma-hat)
is stochastic and has no order. The newest run of each (sampler, NFE) cell is used (of a cell grown by repeats,
its largest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from harness.diffusion.eta import eta_row_name, eta_sort_key
from harness.core.names import Metric
from harness.report.labels import DASH, SAMPLE_METRICS, dataset_name, fmt_cell, fmt_number
from harness.report.runs import RunSet, grown_over
from harness.report.stats import loglog_line
from harness.report.tables import headline_metric


def _registry_rank(sampler: str) -> int:
    """The sampler's place in the registry (harness.diffusion.samplers), samplers it no longer knows last."""
    from harness.diffusion.samplers import SAMPLERS  # the registry imports torch, which the report needs only for sampler views

    order = list(SAMPLERS)
    return order.index(sampler) if sampler in order else len(order)


@dataclass
class SamplerView:
    dataset: str
    metric: str  # the headline metric of the table
    cells: pd.DataFrame  # every metric's cells: row, sampler, eta, nfe, metric, value, intervals, repeats, run_id
    rows: list[str]
    orders: pd.DataFrame | None = None  # exact-score datasets: measured vs theoretical order
    notes: list[str] = field(default_factory=list)

    def grid(self) -> pd.DataFrame:
        """The headline metric, rows by NFE: mean ± half-width of the 95% interval."""
        cells = self.cells[self.cells["metric"] == self.metric]
        text = cells.assign(text=[fmt_cell(v, lo, hi, self.metric) for v, lo, hi in
                                  zip(cells["value"], cells["ci95_low"], cells["ci95_high"])])
        grid = text.pivot(index="row", columns="nfe", values="text").reindex(index=self.rows,
                                                                           columns=sorted(set(cells["nfe"])))
        grid = grid.fillna(DASH).rename(columns=lambda n: f"NFE={n}")
        return grid.rename_axis(index="sampler", columns=None).reset_index()


def _row(sampler: str, eta: str) -> str:
    return f"ddim ({eta_row_name(eta)})" if sampler == "ddim" else sampler


def _orders(cells: pd.DataFrame) -> pd.DataFrame:
    """Per deterministic sampler: minus the log-log slope of flow_rmse against NFE, with its 95% interval."""
    data = []
    flow = cells[(cells["metric"] == Metric.FLOW_RMSE) & ~((cells["sampler"] == "ddim") & (cells["eta"] != "0"))]
    for row, group in flow.groupby("row", sort=False):
        group = group[group["value"].map(lambda v: math.isfinite(v) and v > 0)]
        fit = loglog_line(group["nfe"], group["value"])
        order = group["sampler_order"].dropna()
        data.append({"sampler": row, "theoretical order": order.mode().iloc[0] if len(order) else None,
                     "measured order": -fit.slope, "ci95_low": -fit.slope_high, "ci95_high": -fit.slope_low,
                     "r2": fit.r2, "NFE": " ".join(map(str, sorted(group["nfe"]))), "cells": len(group)})
    return pd.DataFrame(data, columns=["sampler", "theoretical order", "measured order", "ci95_low", "ci95_high", "r2",
                                       "NFE", "cells"])


def orders_display(orders: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "sampler": orders["sampler"], "theoretical order": orders["theoretical order"].fillna("n/a"),
        "measured order": orders["measured order"].map(fmt_number),
        "95% CI": [f"[{fmt_number(lo)}, {fmt_number(hi)}]" if math.isfinite(lo) else "n/a (< 3 NFE)"
                   for lo, hi in zip(orders["ci95_low"], orders["ci95_high"])],
        "R^2 (log-log)": orders["r2"].map(lambda v: f"{v:.4f}" if math.isfinite(v) else "n/a"),
        "NFE": orders["NFE"], "cells": orders["cells"]})


def sampler_views(runs: RunSet) -> list[SamplerView]:
    views = []
    sample = runs.runs[runs.runs["job"] == "sample"]
    for dataset in sorted(d for d, g in sample.groupby("dataset") if g["sampler"].nunique() > 1):
        frames = []
        for metric in SAMPLE_METRICS:
            cells = runs.cells("sample", metric)
            cells = cells[cells["dataset"] == dataset]
            if len(cells):
                cells = cells.assign(row=[_row(s, e) for s, e in zip(cells["sampler"], cells["eta"])],
                                     nfe=cells["nfe"].fillna(cells["S"]).astype(int), metric=metric)
                cells = cells.sort_values("start_time", ascending=False).assign(grown=grown_over(cells))
                frames.append(cells.sort_values("grown", kind="stable").drop_duplicates(["row", "nfe"]).drop(
                    columns="grown"))
        cells = pd.concat(frames, ignore_index=True)
        key = {r: (_registry_rank(s), s, eta_sort_key(e))
               for r, s, e in zip(cells["row"], cells["sampler"], cells["eta"])}
        view = SamplerView(dataset, headline_metric(runs, dataset), cells, sorted(key, key=key.get))
        settings = {k: sorted({str(v) for v in cells[k]}) for k in ("N", "repeats", "seed")}
        if any(len(v) > 1 for v in settings.values()):
            view.notes.append(f"{dataset_name(dataset)}: the cells differ in " + "; ".join(
                f"{'K' if k == 'repeats' else k} ({', '.join(v)})" for k, v in settings.items() if len(v) > 1) + ".")
        if Metric.FLOW_RMSE in set(cells["metric"]):
            view.orders = _orders(cells.sort_values("row", key=lambda r: r.map(view.rows.index), kind="stable"))
        views.append(view)
    return views


def long_frame(views: list[SamplerView]) -> pd.DataFrame:
    """Every cell of every view, numbers unformatted (samplers_long.csv)."""
    columns = ["dataset", "row", "sampler", "eta", "nfe", "S", "metric", "value", "ci95_low", "ci95_high", "std", "min",
               "repeats", "N", "seed", "sampler_order", "run_id"]
    frames = [v.cells.assign(dataset=v.dataset).reindex(columns=columns) for v in views]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

