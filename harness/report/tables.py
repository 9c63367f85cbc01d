"""The paper's Tables 1-3 filled with measured values: one block per dataset, cells "measured (paper)".

* Table 1: FID of sample runs by eta (rows 0, 0.2, 0.5, 1, sigma-hat, other measured etas) and S (the paper's 10,
  20, 50, 100, 1000 plus every measured S); CIFAR-10 / CelebA cells carry the paper value in parentheses. A dataset
  the paper did not use (digits) shows measured values only, followed by the paper's CIFAR-10 block for comparing
  orderings (the values are not comparable).
* Table 2: reconstruction MSE of recon runs by S, the paper's CIFAR-10 row beside it.
* Table 3: LSUN FID, DDIM (eta=0) vs DDPM (eta=1), S 10/20/50/100 and the caption's 1000-step DDPM value.

"-" marks a cell that was not run. Within a dataset block the runs should share N, seed, trajectory, checkpoint and
feature extractor; where they do not, the differing values and run ids are listed in a note and the cells whose
settings differ from the block's most common settings are marked with a dagger.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from .labels import DASH, dataset_name, fmt_value, ordered_etas, row_name
from .paper import ORDERING_REFERENCE, PAPER_DATASETS, PAPER_S, paper_cells
from .runs import RunSet

DAGGER = "\u2020"
SETTINGS = {
    "sample": ["N", "seed", "trajectory", "checkpoint_id", "feature_extractor", "precision"],
    "recon": ["N", "seed", "trajectory", "checkpoint_id", "precision"],
}
SETTING_NAMES = {"checkpoint_id": "checkpoint", "feature_extractor": "feature extractor"}
RECON_ROW = "0"  # reconstruction encodes and decodes with eta = 0 (the paper's Table 2 row)


@dataclass
class Cell:
    value: float
    run_id: str
    flagged: bool = False
    extra: dict = field(default_factory=dict)


@dataclass
class Block:
    """One dataset block of a table."""

    dataset: str
    label: str
    rows: list[str]
    cols: list[int]
    measured: dict[tuple[str, int], Cell] = field(default_factory=dict)
    paper: dict[tuple[str, int], tuple[float, str]] = field(default_factory=dict)
    paper_only: bool = False  # the paper's values shown for reference (cells hold the paper value)
    comparable: bool = True  # the measured values estimate the paper's numbers (same dataset)
    reference: dict[tuple[str, int], tuple[float, str]] = field(default_factory=dict)  # for rank agreement
    reference_dataset: str | None = None
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # the block's most common run settings

    def cell_text(self, row: str, S: int, metric: str) -> str:
        p = self.paper.get((row, S))
        if self.paper_only:
            return p[1] if p else DASH
        m = self.measured.get((row, S))
        text = DASH if m is None else fmt_value(m.value, metric) + (DAGGER if m.flagged else "")
        return f"{text} ({p[1]})" if p else text


@dataclass
class ReportTable:
    number: int
    title: str
    metric: str  # "fid" or "mse"
    row_header: str
    blocks: list[Block] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"table{self.number}"

    @property
    def cols(self) -> list[int]:
        return sorted({s for b in self.blocks for s in b.cols})

    def row_label(self, row: str) -> str:
        return "reconstruction MSE" if self.metric == "mse" else row_name(row)

    def block_frame(self, block: Block) -> pd.DataFrame:
        """The display frame of one block: row label, then one column per S."""
        data = [
            {self.row_header: self.row_label(r), **{f"S={s}": block.cell_text(r, s, self.metric) for s in block.cols}}
            for r in block.rows
        ]
        return pd.DataFrame(data, columns=[self.row_header] + [f"S={s}" for s in block.cols])

    def display_frame(self) -> pd.DataFrame:
        """Every block in one frame (the wide CSV): block, row, S columns (union over blocks)."""
        cols = self.cols
        data = []
        for b in self.blocks:
            for r in b.rows:
                line = {"block": b.label, self.row_header: self.row_label(r)}
                line.update({f"S={s}": b.cell_text(r, s, self.metric) if s in b.cols else DASH for s in cols})
                data.append(line)
        return pd.DataFrame(data, columns=["block", self.row_header] + [f"S={s}" for s in cols])

    def long_frame(self) -> pd.DataFrame:
        """One line per measured or paper cell, numbers unformatted (the long CSV)."""
        data = []
        for b in self.blocks:
            if b.paper_only:
                continue
            for r in b.rows:
                for s in b.cols:
                    m, p = b.measured.get((r, s)), b.paper.get((r, s))
                    ref = b.reference.get((r, s))
                    if m is None and p is None:
                        continue
                    run = b.runs[b.runs["run_id"] == m.run_id].iloc[0] if m is not None else None
                    data.append(
                        {
                            "table": self.number,
                            "dataset": b.dataset,
                            "row": self.row_label(r),
                            "eta": r,
                            "S": s,
                            "measured": m.value if m else None,
                            "paper": p[0] if p else None,
                            "reference_paper_value": ref[0] if ref and not b.comparable else None,
                            "reference_dataset": b.reference_dataset if not b.comparable else None,
                            "flagged": bool(m.flagged) if m else None,
                            **({"stderr": m.extra.get("stderr") if m else None} if self.metric == "mse" else {}),
                            "run_id": m.run_id if m else None,
                            **{
                                SETTING_NAMES.get(k, k): (run[k] if run is not None else None)
                                for k in ["nfe", "N", "seed", "trajectory", "checkpoint_id", "feature_extractor", "precision",
                                          "device_name"]
                            },
                        }
                    )
        return pd.DataFrame(data)

    @property
    def run_ids(self) -> list[str]:
        return [c.run_id for b in self.blocks for c in b.measured.values()]


def _settings(run: pd.Series, keys: list[str]) -> tuple:
    return tuple("None" if pd.isna(run[k]) else str(run[k]) for k in keys)


def _fill(block: Block, df: pd.DataFrame, job: str, metric_col: str, row_of) -> None:
    """Place the runs of one dataset into its block; flag and note runs whose settings differ."""
    keys = SETTINGS[job]
    df = df.sort_values("start_time", ascending=False, kind="stable")
    block.runs = df
    if df.empty:
        return
    settings = {row["run_id"]: _settings(row, keys) for _, row in df.iterrows()}
    counts = Counter(settings.values())
    top = max(counts.values())
    reference = next(settings[r] for r in df["run_id"] if counts[settings[r]] == top)  # ties: the newest run's
    block.settings = dict(zip(keys, reference))
    hidden = []
    for (row, S), group in df.groupby([df.apply(row_of, axis=1), "S"], sort=False):
        matching = [r for r in group["run_id"] if settings[r] == reference]
        chosen_id = matching[0] if matching else group["run_id"].iloc[0]
        chosen = group[group["run_id"] == chosen_id].iloc[0]
        extra = {"stderr": chosen.get("recon_mse_stderr")} if metric_col == "recon_mse" else {}
        block.measured[(row, int(S))] = Cell(float(chosen[metric_col]), chosen_id, settings[chosen_id] != reference, extra)
        for other in group["run_id"]:
            if other != chosen_id:
                hidden.append(f"{other} ({row_name(row)}, S={S}, {_describe(settings[other], keys)})")
    for i, k in enumerate(keys):
        values = Counter(settings[r][i] for r in df["run_id"])
        if len(values) > 1:
            parts = []
            for value, n in values.most_common():
                ids = [r for r in df["run_id"] if settings[r][i] == value]
                if value == reference[i]:
                    parts.append(f"{value} in {n} run(s) (the block's most common setting)")
                else:
                    parts.append(f"{value} in run(s) {', '.join(ids)}")
            block.notes.append(f"Mixed settings in {dataset_name(block.dataset)}: {SETTING_NAMES.get(k, k)} differs: "
                               + "; ".join(parts) + f". Table cells from runs that differ are marked {DAGGER}.")
    if hidden:
        block.notes.append(f"Other runs of {dataset_name(block.dataset)} for a cell already shown (a different cell_key; "
                           "the table shows the newest run with the block's most common settings), not in the table: "
                           f"{'; '.join(hidden)}.")


def _describe(settings: tuple, keys: list[str]) -> str:
    return ", ".join(f"{SETTING_NAMES.get(k, k)}={v}" for k, v in zip(keys, settings))


def _order(datasets, table: int) -> list[str]:
    paper = PAPER_DATASETS[table]
    return [d for d in paper if d in datasets] + sorted(d for d in datasets if d not in paper)


def _reference_block(table: int, rows: list[str], measured_dataset: str, extractor: str | None) -> Block:
    ref = ORDERING_REFERENCE
    cells = paper_cells(table, ref)
    if not extractor:
        what = "FID features of the run, not the paper's"
    elif "inception" in extractor.lower():
        what = f"FID in {extractor} features"
    else:
        what = f"FID in {extractor} features, not Inception"
    return Block(
        dataset=ref,
        label=f"{dataset_name(ref)} (paper) - for comparing orderings only, NOT comparable to {dataset_name(measured_dataset)}",
        rows=rows,
        cols=sorted({s for _, s in cells}),
        paper=cells,
        paper_only=True,
        notes=[
            f"{dataset_name(measured_dataset)}: the paper has no values for this dataset; the paper's "
            f"{dataset_name(ref)} block is shown beside it to compare orderings only. The values are not comparable "
            f"(different data, model{', and feature extractor: ' + what if table != 2 else ''})."
        ],
    )


def _measured_blocks(table: int, runs: RunSet, job: str, metric_col: str, datasets: list[str], base_rows,
                     row_of, title_metric: str) -> list[Block]:
    df = runs.job(job)
    blocks = []
    for ds in datasets:
        sub = df[(df["dataset"] == ds) & df[metric_col].notna()]
        cells = paper_cells(table, ds)
        rows = base_rows(sub)
        cols = sorted(set(PAPER_S[table]) | {int(s) for s in sub["S"]})
        extractors = sorted({str(x) for x in sub.get("feature_extractor", pd.Series(dtype=object)).dropna()})
        extractor = ", ".join(extractors) or None
        block = Block(ds, "", rows, cols, paper=cells, comparable=bool(cells), reference=cells,
                      reference_dataset=ds if cells else None)
        _fill(block, sub, job, metric_col, row_of)
        how = [f"{title_metric} in {extractor} features"] if extractor and job == "sample" else []
        how += [f"N={block.settings['N']}", f"trajectory {block.settings['trajectory']}"] if block.settings else []
        block.label = f"{dataset_name(ds)}: measured{' (paper)' if cells else ''}" + (f"; {', '.join(how)}" if how else "") \
            + ("" if cells else "; no paper values")
        blocks.append(block)
        if not cells:
            ref = _reference_block(table, rows if table != 2 else [RECON_ROW], ds, extractor)
            block.reference, block.reference_dataset = ref.paper, ref.dataset
            block.notes.extend(ref.notes)
            ref.notes = []
            blocks.append(ref)
    return blocks


def _across_blocks(blocks: list[Block]) -> list[str]:
    """A note when the dataset blocks of one table were run with different N, seed, trajectory or extractor."""
    measured = [b for b in blocks if b.settings]
    notes = []
    for key in ("N", "seed", "trajectory", "feature_extractor", "precision"):
        values = {b.dataset: b.settings.get(key) for b in measured if key in b.settings}
        if len(set(values.values())) > 1:
            notes.append(f"{SETTING_NAMES.get(key, key)} differs between dataset blocks: "
                         + ", ".join(f"{dataset_name(d)} {v}" for d, v in values.items()) + ".")
    return ["The dataset blocks were run with different settings (by design where the paper's differ, e.g. "
            "CIFAR-10's quadratic trajectory; compare across blocks with care): " + " ".join(notes)] if notes else []


def _eta_rows(base: list[str]):
    return lambda sub: ordered_etas(list(base) + [e for e in sub["eta"] if e is not None])


def _paper_placeholder_blocks(table: int, runs: RunSet, rows_for) -> list[Block]:
    """No runs for this table: the paper's blocks with '-' measured cells (none if filtered out)."""
    wanted = [d for d in PAPER_DATASETS[table] if not runs.datasets_filter or d in runs.datasets_filter]
    blocks = []
    for ds in wanted:
        cells = paper_cells(table, ds)
        blocks.append(Block(ds, f"{dataset_name(ds)}: measured (paper)", rows_for(ds), sorted({s for _, s in cells}),
                            paper=cells, reference=cells, reference_dataset=ds))
    return blocks


def table1(runs: RunSet) -> ReportTable:
    t = ReportTable(1, "Table 1: FID by eta and number of sampling steps S", "fid", "eta")
    df = runs.job("sample")
    datasets = _order({d for d in df["dataset"] if d not in PAPER_DATASETS[3]}, 1)
    eta_rows = _eta_rows(["0", "0.2", "0.5", "1", "hat"])
    t.blocks = _measured_blocks(1, runs, "sample", "fid", datasets, eta_rows, lambda r: r["eta"], "FID")
    if not t.blocks:
        t.blocks = _paper_placeholder_blocks(1, runs, lambda ds: ["0", "0.2", "0.5", "1", "hat"])
        t.notes.append("No sample runs for these datasets: paper values only.")
    t.notes.insert(0, "Cells: measured (paper); '-' = not run. FID is lower-is-better.")
    t.notes.extend(_across_blocks(t.blocks))
    return t


def table2(runs: RunSet) -> ReportTable:
    t = ReportTable(2, "Table 2: reconstruction error (per-dimension MSE, pixels on [0,1]) by S", "mse", "")
    df = runs.job("recon")
    datasets = _order(set(df["dataset"]), 2)
    t.blocks = _measured_blocks(2, runs, "recon", "recon_mse", datasets, lambda sub: [RECON_ROW],
                                lambda r: RECON_ROW, "MSE")
    if not t.blocks:
        t.blocks = _paper_placeholder_blocks(2, runs, lambda ds: [RECON_ROW])
        t.notes.append("No recon runs for these datasets: paper values only.")
    t.notes.insert(0, "Encode a held-out image to x_T with eta=0 over S steps, decode over S steps. "
                      "Cells: measured (paper); '-' = not run.")
    t.notes.extend(_across_blocks(t.blocks))
    return t


def table3(runs: RunSet) -> ReportTable:
    t = ReportTable(3, "Table 3: LSUN FID, DDIM (eta=0) vs DDPM (eta=1)", "fid", "eta")
    df = runs.job("sample")
    datasets = _order({d for d in df["dataset"] if d in PAPER_DATASETS[3]}, 3)
    t.blocks = _measured_blocks(3, runs, "sample", "fid", datasets, _eta_rows(["0", "1"]), lambda r: r["eta"], "FID")
    if not t.blocks:
        t.blocks = _paper_placeholder_blocks(3, runs, lambda ds: ["0", "1"])
        if t.blocks:
            t.notes.append("No LSUN sample runs: paper values only.")
    t.notes.insert(0, "Cells: measured (paper); '-' = not run. eta=0 is DDIM, eta=1 is DDPM; S=1000 is the caption's "
                      "1000-step DDPM value.")
    t.notes.extend(_across_blocks(t.blocks))
    return t


def build_tables(runs: RunSet) -> list[ReportTable]:
    return [table1(runs), table2(runs), table3(runs)]
