"""The paper's Tables 1-3 filled with measured values: one block per dataset, cells "measured (paper)".

Table 1 is the headline metric (FID) of DDIM-family sample runs by eta and S, Table 2 reconstruction MSE by S, Table 3
LSUN FID, DDIM vs DDPM. Rows and columns are the paper's plus every measured eta and S. A dataset the paper did not
use (digits) is followed by the paper's CIFAR-10 block for comparing orderings; each dataset's headline block by one
block per other metric it was scored on. A cell shows the run chosen for it: per (eta, S) the newest run with its
block's most common settings (N, seed, trajectory, checkpoint, feature extractor, precision), of a cell grown by
repeats its largest run (harness.run.cell's series); a cell whose run differs is marked with a dagger, and the block's
notes name every difference and every run left out.

The sampler axis: samplers compared at equal NFE (the network evaluations per image the runs counted).

Per dataset where more than one sampler was run: a sampler-by-NFE table of the headline metric (mean ± 95%
interval), the cells behind a figure of each metric against NFE per sampler, and, for exact-score datasets (their
runs log ``flow_rmse``, the RMS distance of the samples to the exact probability-flow solution from the same x_T),
each deterministic sampler's measured order (minus the log-log slope of flow_rmse against NFE over its cells)
beside its theoretical order (tag ``sampler_order``). DDIM rows are one per eta; DDIM with eta > 0 (and sigma-hat)
is stochastic and has no order. The newest run of each (sampler, NFE) cell is used (of a cell grown by repeats,
its largest).

Figure 4's data: hours to sample 50k images against the number of network evaluations, per dataset and device.

Timing jobs give ``hours_50k`` directly. A dataset without timing jobs falls back to its sample jobs:
``seconds_per_image * 50000 / 3600`` (sampling wall time of the FID job, which includes batching effects), and the
report says so. Runs at the same NFE (e.g. different eta, which costs the same) are combined by their median.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd
from scipy import stats

from harness.core.names import REPEAT_STATS, Metric, Tag
from harness.diffusion.eta import eta_row_name, eta_sort_key
from harness.report.labels import (
    DAGGER,
    DASH,
    ORDERING_REFERENCE,
    SAMPLE_METRICS,
    dataset_name,
    direction,
    fmt_cell,
    fmt_number,
    fmt_value,
    label,
    paper_cells,
    paper_layout,
)
from harness.report.render import text
from harness.report.runs import RunSet, grown_over
from harness.report.stats import Line, fit_line, loglog_line

SETTINGS = ["N", "seed", "trajectory", "checkpoint_id", "feature_extractor", "precision"]
SETTING_NAMES = {"checkpoint_id": "checkpoint", "feature_extractor": "feature extractor"}
LONG_SETTINGS = ["nfe", "N", "seed", "trajectory", "checkpoint_id", "feature_extractor", "precision", "device_name"]
# the long CSV: its columns (stderr for a table with one) from these columns of a block's cells, then r0, r1, ...
LONG = {"table": "table", "dataset": "dataset", "row": "row", "eta": "eta", "S": "S", "value": "measured",
        "paper": "paper", "reference_paper_value": "reference_paper_value", "reference_dataset": "reference_dataset",
        "flagged": "flagged", "stderr": "stderr", "run_id": "run_id", **{k: SETTING_NAMES.get(k, k) for k in LONG_SETTINGS},
        "metric": "metric", "repeats": "K", **{s: s for s in REPEAT_STATS}}
ONE_ROW = "0"  # the eta of a table with one row (reconstruction encodes and decodes with eta = 0)


@dataclass(frozen=True)
class Spec:
    """One of the paper's tables: the runs it shows and what differs in how it shows them."""

    number: int
    title: str
    job: str  # its runs: the DDIM runs of this job
    lsun: bool | None  # True: LSUN datasets only, False: all but LSUN, None: any
    metric: str | None = None  # the one metric shown; None: each dataset's headline metric, then a block per other one
    row: str | None = None  # the name of its one row (eta 0); None: one row per eta
    stderr: str | None = None  # the metric of a cell's standard error over its images: its interval, a long-CSV column
    features: bool = True  # scored in a feature space: the extractor is a setting of its blocks and named in them

    @property
    def settings(self) -> list[str]:
        """The run settings of its blocks: a cell whose run differs from its block's most common is flagged."""
        return [k for k in SETTINGS if self.features or k != "feature_extractor"]


SPECS = [Spec(1, "Table 1: FID by eta and number of sampling steps S", "sample", False),
         Spec(2, "Table 2: reconstruction error (per-dimension MSE, pixels on [0,1]) by S", "recon", None,
              metric=Metric.RECON_MSE, row="reconstruction MSE", stderr=Metric.RECON_MSE_STDERR, features=False),
         Spec(3, "Table 3: LSUN FID, DDIM (eta=0) vs DDPM (eta=1)", "sample", True)]


def _no_cells(*columns: str) -> pd.DataFrame:
    return pd.DataFrame(columns=list(columns), index=pd.MultiIndex.from_tuples([], names=["eta", "S"]))


@dataclass
class Block:
    """One dataset block of a table: its rows (eta labels) by its columns (S). ``measured`` and ``paper`` are indexed
    by (eta, S): the run chosen for a cell with its value and interval; the paper's value and printed text."""

    dataset: str
    label: str
    rows: list[str]
    cols: list[int]
    metric: str = Metric.FID
    measured: pd.DataFrame = field(default_factory=_no_cells)
    paper: pd.DataFrame = field(default_factory=lambda: _no_cells("value", "text"))
    paper_only: bool = False  # the paper's values shown for reference (cells hold the paper value)
    reference: pd.DataFrame | None = None  # the paper's block the measured values are ranked against
    reference_dataset: str | None = None
    notes: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # the block's most common run settings

    @property
    def comparable(self) -> bool:
        """Whether the measured values estimate the paper's numbers (same dataset)."""
        return self.reference_dataset == self.dataset

    def grid(self) -> pd.DataFrame:
        """Display strings, rows by S: measured (with a dagger where flagged) and the paper's value in parentheses."""
        index = pd.MultiIndex.from_product([self.rows, self.cols], names=["eta", "S"])
        paper = self.paper["text"].reindex(index)
        if self.paper_only:
            text = paper.fillna(DASH)
        else:
            m = self.measured.reindex(columns=["value", "ci95_low", "ci95_high", "flagged", "min", "repeats", "blocks"])
            text = pd.Series([fmt_cell(v, lo, hi, self.metric) + _edm_min(low, k, b, self.metric) + (DAGGER if f else "")
                              for v, lo, hi, f, low, k, b in m.itertuples(index=False)], index=m.index,
                             dtype=object).reindex(index).fillna(DASH)
            text = text.where(paper.isna(), text + " (" + paper + ")")
        return text.unstack("S").reindex(index=self.rows, columns=self.cols)


def _edm_min(low, repeats, blocks, metric: str) -> str:
    """EDM's convention beside ours: a blocked cell of several repeats of N (EDM: 3 of 50,000) also shows the minimum
    over its repeats' pooled values (docs/evidence.md says which number to compare with which)."""
    if pd.isna(blocks) or pd.isna(repeats) or int(blocks) < 2 or int(repeats) < 2 or pd.isna(low):
        return ""
    return f" min {fmt_value(low, metric)}"


@dataclass
class ReportTable:
    spec: Spec
    blocks: list[Block] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metric_blocks: dict[str, list[Block]] = field(default_factory=dict)  # dataset: its blocks of other metrics

    @property
    def key(self) -> str:
        return f"table{self.spec.number}"

    @property
    def row_header(self) -> str:
        return "eta" if self.spec.row is None else ""

    @property
    def cols(self) -> list[int]:
        return sorted({s for b in self.blocks for s in b.cols})

    def row_label(self, row: str) -> str:
        return eta_row_name(row) if self.spec.row is None else self.spec.row

    def measured_blocks(self, other_metrics: bool = False) -> list[Block]:
        """The blocks with measured cells: the headline blocks, and the other metrics' blocks if asked."""
        blocks = [*self.blocks, *(b for bs in self.metric_blocks.values() for b in bs)] if other_metrics else self.blocks
        return [b for b in blocks if not b.paper_only and len(b.measured)]

    def block_frame(self, block: Block) -> pd.DataFrame:
        """One block as displayed: the row label, then one column per S."""
        grid = block.grid().rename(index=self.row_label, columns=lambda s: f"S={s}")
        return grid.rename_axis(index=self.row_header, columns=None).reset_index()

    def display_frame(self) -> pd.DataFrame:
        """Every block in one frame (the wide CSV): block, row, S columns (union over blocks)."""
        columns = ["block", self.row_header, *(f"S={s}" for s in self.cols)]
        frames = [self.block_frame(b).assign(block=b.label).reindex(columns=columns, fill_value=DASH) for b in self.blocks]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

    def long_frame(self) -> pd.DataFrame:
        """One line per measured or paper cell, numbers unformatted (the long CSV): the mean, its interval and
        summary over repeats, and each repeat's value."""
        frames = []
        for b in [b for b in self.blocks if not b.paper_only]:
            index = pd.MultiIndex.from_product([b.rows, b.cols], names=["eta", "S"])
            repeats = [c for c in b.measured.columns if re.fullmatch(r"r\d+", c)]
            cells = b.measured.reindex(index=index, columns=[*LONG, *repeats]).drop(columns=["eta", "S"])
            cells["paper"] = b.paper["value"].reindex(index)
            cells["reference_paper_value"] = None if b.comparable else b.reference["value"].reindex(index)
            cells = cells[cells["value"].notna() | cells["paper"].notna() | cells["run_id"].notna()].reset_index()
            cells = cells.assign(table=self.spec.number, dataset=b.dataset, row=cells["eta"].map(self.row_label),
                                 reference_dataset=None if b.comparable else b.reference_dataset, metric=b.metric,
                                 flagged=cells["flagged"].astype(object))
            cells = cells.drop(columns=[] if self.spec.stderr else ["stderr"])
            frames.append(cells[[c for c in [*LONG, *repeats] if c in cells]].rename(columns=LONG))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _choose(block: Block, runs: pd.DataFrame, keys: list[str], notes: bool) -> None:
    """Place one dataset's runs into its block: per (eta, S) the newest run with the block's most common settings
    (else the newest); flag the cells whose run differs and note every difference and every run left out."""
    runs = runs.sort_values("start_time", ascending=False, kind="stable")
    settings = pd.Series([tuple("None" if pd.isna(v) else str(v) for v in row) for row in runs[keys].itertuples(False)],
                         index=runs.index)
    counts = Counter(settings)
    reference = next(s for s in settings if counts[s] == max(counts.values()))  # ties: the newest run's
    block.settings = dict(zip(keys, reference))
    runs = runs.assign(flagged=settings != reference, settings=settings, grown=grown_over(runs))
    chosen = runs.sort_values(["flagged", "grown"], kind="stable").drop_duplicates(["eta", "S"])
    block.measured = chosen.assign(S=chosen["S"].astype(int)).set_index(["eta", "S"])
    if not notes:
        return
    for i, k in enumerate(keys):
        values = Counter(s[i] for s in settings)
        if len(values) > 1:
            parts = [f"{v} in {n} run(s) (the block's most common setting)" if v == reference[i] else
                     f"{v} in run(s) {', '.join(r for r, s in zip(runs['run_id'], settings) if s[i] == v)}"
                     for v, n in values.most_common()]
            block.notes.append(text("mixed_settings", dataset=dataset_name(block.dataset), setting=SETTING_NAMES.get(k, k),
                                    parts=parts))
    shown = set(chosen["run_id"])
    hidden = [f"{r.run_id} ({eta_row_name(r.eta)}, S={r.S}, "
              + ", ".join(f"{SETTING_NAMES.get(k, k)}={v}" for k, v in zip(keys, r.settings)) + ")"
              for _, g in runs.groupby(["eta", "S"], sort=False) for r in g.itertuples()
              if r.run_id not in shown and not r.grown]
    if hidden:
        block.notes.append(text("hidden_runs", dataset=dataset_name(block.dataset), runs=hidden))
    smaller = [f"{r.run_id} ({eta_row_name(r.eta)}, S={r.S}, K={r.repeats})" for r in runs[runs["grown"]].itertuples()]
    if smaller:
        block.notes.append(text("grown_runs", dataset=dataset_name(block.dataset), runs=smaller))


def features(runs: pd.DataFrame, metric: str) -> str | None:
    """The feature space(s) a metric was computed in (tag ``features.<metric>``; older runs: the feature extractor)."""
    tags = runs.get(Tag.FEATURES_PREFIX + metric, pd.Series(dtype=object)).dropna()
    if tags.empty and metric == Metric.FID:
        tags = runs["feature_extractor"].dropna()
    return ", ".join(sorted({str(x) for x in tags})) or None


def _block(spec: Spec, runs: RunSet, dataset: str, metric: str, headline: bool) -> Block:
    """The measured block of one dataset and metric (the headline block carries the paper's values and the notes on
    its runs)."""
    sub = runs.cells(spec.job, metric, *([spec.stderr, Metric.N_IMAGES] if spec.stderr else []))
    sub = sub[(sub["dataset"] == dataset) & (sub["sampler"] == "ddim")]
    if spec.stderr:  # the interval of a mean over n images: t(n-1) standard errors
        sub = sub.rename(columns={spec.stderr: "stderr", Metric.N_IMAGES: "n_images"})
        half = stats.t.ppf(0.975, sub["n_images"] - 1) * sub["stderr"]
        sub = sub.assign(ci95_low=sub["value"] - half, ci95_high=sub["value"] + half)
    if spec.row is not None:
        sub = sub.assign(eta=ONE_ROW)
    _, paper_rows, paper_S = paper_layout(spec.number)
    block = Block(dataset, "", sorted(set(paper_rows) | set(sub["eta"]), key=eta_sort_key),
                  sorted(set(paper_S) | set(sub["S"].astype(int))), metric)
    if headline:
        block.paper = block.reference = paper_cells(spec.number, dataset)
        block.reference_dataset = dataset if len(block.paper) else None
    if len(sub):
        _choose(block, sub, spec.settings, notes=headline)
    extractor = features(sub, metric)
    how = [f"{label(metric)} in {extractor} features"] if extractor and spec.features else []
    how += [f"N={block.settings['N']}", f"trajectory {block.settings['trajectory']}"] if block.settings else []
    if not headline:
        block.label = f"{dataset_name(dataset)}: {how[0] if extractor else label(metric)} ({direction(metric)})"
        return block
    has_paper = len(block.paper) > 0
    block.label = (f"{dataset_name(dataset)}: measured{' (paper)' if has_paper else ''}"
                   + (f"; {', '.join(how)}" if how else "") + ("" if has_paper else "; no paper values"))
    if not has_paper:
        block.reference, block.reference_dataset = paper_cells(spec.number, ORDERING_REFERENCE), ORDERING_REFERENCE
        block.notes.append(text("reference_note", dataset=dataset_name(dataset), extractor=extractor,
                                features=spec.features, reference=dataset_name(ORDERING_REFERENCE)))
    return block


def headline_metric(runs: RunSet, dataset: str, job: str) -> str:
    """The dataset's headline metric for its tables: its runs' (of ``job``) tag ``headline_metric``, else the first
    metric of SAMPLE_METRICS they logged (older runs: FID)."""
    mine = runs.runs[(runs.runs["dataset"] == dataset) & (runs.runs["job"] == job)]
    tags = mine["headline_metric"].dropna()
    logged = set(runs.values.loc[runs.values["run_id"].isin(mine["run_id"]), "metric"])
    return str(tags.mode().iloc[0]) if len(tags) else next((m for m in SAMPLE_METRICS if m in logged), Metric.FID)


def build_table(spec: Spec, runs: RunSet) -> ReportTable:
    paper, rows, paper_S = paper_layout(spec.number)
    frame = runs.runs[(runs.runs["job"] == spec.job) & (runs.runs["sampler"] == "ddim")]
    if spec.lsun is not None:
        frame = frame[frame["dataset"].isin(paper_layout(3)[0]) == spec.lsun]
    measured = set(frame["dataset"])
    table = ReportTable(spec, notes=[text("table_note", number=spec.number)])
    for ds in [d for d in paper if d in measured] + sorted(measured - set(paper)):
        metric = spec.metric or headline_metric(runs, ds, spec.job)
        block = _block(spec, runs, ds, metric, headline=True)
        table.blocks.append(block)
        if not block.comparable:
            label = (f"{dataset_name(ORDERING_REFERENCE)} (paper) - for comparing orderings only, NOT comparable to "
                     f"{dataset_name(ds)}")
            table.blocks.append(Block(ORDERING_REFERENCE, label, block.rows, paper_S, paper=block.reference,
                                      paper_only=True))
        if spec.metric is None:
            others = [_block(spec, runs, ds, m, headline=False) for m in SAMPLE_METRICS if m != metric]
            table.metric_blocks[ds] = [b for b in others if len(b.measured)]
    if not table.blocks:  # no runs for this table: the paper's blocks with '-' measured cells
        for ds in [d for d in paper if not runs.datasets_filter or d in runs.datasets_filter]:
            cells = paper_cells(spec.number, ds)
            table.blocks.append(Block(ds, f"{dataset_name(ds)}: measured (paper)", rows, paper_S, paper=cells,
                                      reference=cells, reference_dataset=ds))
        table.notes += [text("table_empty", number=spec.number)] if table.blocks else []
    table.notes += _across_blocks(table.blocks)
    blocked = [b.measured for b in table.blocks if "blocks" in b.measured and (b.measured["blocks"] > 1).any()]
    if blocked:
        table.notes.append(text("blocks_note", K=sorted({int(k) for m in blocked for k in m["blocks"] if k > 1})))
    return table


def _across_blocks(blocks: list[Block]) -> list[str]:
    """A note when the dataset blocks of one table were run with different N, seed, trajectory or extractor."""
    notes = []
    for key in ("N", "seed", "trajectory", "feature_extractor", "precision"):
        values = {b.dataset: b.settings[key] for b in blocks if key in b.settings}
        if len(set(values.values())) > 1:
            notes.append(f"{SETTING_NAMES.get(key, key)} differs between dataset blocks: "
                         + ", ".join(f"{dataset_name(d)} {v}" for d, v in values.items()) + ".")
    return [text("across_blocks", notes=notes)] if notes else []


def build_tables(runs: RunSet) -> list[ReportTable]:
    return [build_table(spec, runs) for spec in SPECS]


def _registry_rank(sampler: str) -> int:
    """The sampler's place in the registry (harness.diffusion.samplers), samplers it no longer knows last."""
    from harness.diffusion.samplers import SAMPLERS  # lazy: the registry brings torch; the report imports none itself

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
    also: dict[str, str] = field(default_factory=dict)  # FD_DINOv2, CMMD when logged: metric -> its feature space

    def grid(self, metric: str | None = None) -> pd.DataFrame:
        """The headline metric (or ``metric``), rows by NFE: mean ± half-width of the 95% interval."""
        metric = metric or self.metric
        cells = self.cells[self.cells["metric"] == metric]
        text = cells.assign(text=[fmt_cell(v, lo, hi, metric) for v, lo, hi in
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


SAMPLER_JOB = "sample"  # the samplers compared at equal NFE: the runs of this job


def sampler_views(runs: RunSet) -> list[SamplerView]:
    views = []
    sample = runs.runs[runs.runs["job"] == SAMPLER_JOB]
    for dataset in sorted(d for d, g in sample.groupby("dataset") if g["sampler"].nunique() > 1):
        frames = []
        for metric in SAMPLE_METRICS:
            cells = runs.cells(SAMPLER_JOB, metric)
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
        view = SamplerView(dataset, headline_metric(runs, dataset, SAMPLER_JOB), cells, sorted(key, key=key.get))
        mine = sample[sample["dataset"] == dataset]
        view.also = {m: features(mine, m) or "?" for m in (Metric.FD_DINOV2, Metric.FD_DINOV2_INF, Metric.CMMD)
                     if m != view.metric and m in set(cells["metric"])}
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


SPI = Metric.SECONDS_PER_IMAGE
TIMING_JOB, FALLBACK_JOB = "timing", "sample"  # Figure 4: the runs of the first, of the second where none
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
    timing = runs.cells(TIMING_JOB, Metric.HOURS_50K, SPI).rename(columns={"value": "hours"})
    sample = runs.cells(FALLBACK_JOB, SPI).rename(columns={"value": SPI})
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
