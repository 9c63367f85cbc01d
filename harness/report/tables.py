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

from ..eta import eta_row_name, eta_sort_key
from .labels import DASH, dataset_name, fmt_value
from .paper import ORDERING_REFERENCE, PAPER_DATASETS, PAPER_S, paper_cells
from .runs import RunSet

DAGGER = "\u2020"
SETTINGS = {
    "sample": ["N", "seed", "trajectory", "checkpoint_id", "feature_extractor", "precision"],
    "recon": ["N", "seed", "trajectory", "checkpoint_id", "precision"],
}
SETTING_NAMES = {"checkpoint_id": "checkpoint", "feature_extractor": "feature extractor"}
LONG_SETTINGS = ["nfe", "N", "seed", "trajectory", "checkpoint_id", "feature_extractor", "precision", "device_name"]
RECON_ROW = "0"  # reconstruction encodes and decodes with eta = 0 (the paper's Table 2 row)


@dataclass(frozen=True)
class Spec:
    """What one paper table shows."""

    number: int
    title: str
    job: str
    metric: str  # the run metric shown
    fmt: str  # "fid" or "mse" (number format)
    base_rows: tuple[str, ...]
    lsun: bool | None  # True: LSUN datasets only, False: all but LSUN, None: any
    note: str
    empty_note: str


SPECS = [
    Spec(1, "Table 1: FID by eta and number of sampling steps S", "sample", "fid", "fid", ("0", "0.2", "0.5", "1", "hat"),
         False, "Cells: measured (paper); '-' = not run. FID is lower-is-better.",
         "No sample runs for these datasets: paper values only."),
    Spec(2, "Table 2: reconstruction error (per-dimension MSE, pixels on [0,1]) by S", "recon", "recon_mse", "mse",
         (RECON_ROW,), None, "Encode a held-out image to x_T with eta=0 over S steps, decode over S steps. "
         "Cells: measured (paper); '-' = not run.", "No recon runs for these datasets: paper values only."),
    Spec(3, "Table 3: LSUN FID, DDIM (eta=0) vs DDPM (eta=1)", "sample", "fid", "fid", ("0", "1"), True,
         "Cells: measured (paper); '-' = not run. eta=0 is DDIM, eta=1 is DDPM; S=1000 is the caption's 1000-step "
         "DDPM value.", "No LSUN sample runs: paper values only."),
]


@dataclass
class Block:
    """One dataset block of a table: its rows (eta labels) by its columns (S)."""

    dataset: str
    label: str
    rows: list[str]
    cols: list[int]
    measured: pd.DataFrame = field(default_factory=pd.DataFrame)  # index (eta, S): the chosen run's columns, value
    paper: dict[tuple[str, int], tuple[float, str]] = field(default_factory=dict)
    paper_only: bool = False  # the paper's values shown for reference (cells hold the paper value)
    comparable: bool = True  # the measured values estimate the paper's numbers (same dataset)
    reference: dict[tuple[str, int], tuple[float, str]] = field(default_factory=dict)  # for rank agreement
    reference_dataset: str | None = None
    notes: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # the block's most common run settings

    def grid(self, fmt: str) -> pd.DataFrame:
        """Display strings, rows by S: measured (with a dagger where flagged) and the paper's value in parentheses."""
        index = pd.MultiIndex.from_product([self.rows, self.cols], names=["eta", "S"])
        paper = pd.Series({k: t for k, (_, t) in self.paper.items()}, dtype=object).reindex(index)
        if self.paper_only:
            text = paper.fillna(DASH)
        else:
            m = self.measured
            shown = m["value"].map(lambda v: fmt_value(v, fmt)) + m["flagged"].map({True: DAGGER, False: ""}) \
                if len(m) else pd.Series(dtype=object)
            text = shown.reindex(index).fillna(DASH)
            text = text.where(paper.isna(), text + " (" + paper.astype(str) + ")")
        return text.unstack("S").reindex(index=self.rows, columns=self.cols)


@dataclass
class ReportTable:
    spec: Spec
    blocks: list[Block] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def number(self) -> int:
        return self.spec.number

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def key(self) -> str:
        return f"table{self.spec.number}"

    @property
    def row_header(self) -> str:
        return "" if self.spec.fmt == "mse" else "eta"

    @property
    def cols(self) -> list[int]:
        return sorted({s for b in self.blocks for s in b.cols})

    def row_label(self, row: str) -> str:
        return "reconstruction MSE" if self.spec.fmt == "mse" else eta_row_name(row)

    def block_frame(self, block: Block) -> pd.DataFrame:
        """One block as displayed: the row label, then one column per S."""
        grid = block.grid(self.spec.fmt).rename(index=self.row_label, columns=lambda s: f"S={s}")
        return grid.rename_axis(index=self.row_header, columns=None).reset_index()

    def display_frame(self) -> pd.DataFrame:
        """Every block in one frame (the wide CSV): block, row, S columns (union over blocks)."""
        cols = [f"S={s}" for s in self.cols]
        frames = [self.block_frame(b).reindex(columns=[self.row_header, *cols], fill_value=DASH).assign(block=b.label)
                  for b in self.blocks]
        return pd.concat(frames, ignore_index=True)[["block", self.row_header, *cols]] if frames else \
            pd.DataFrame(columns=["block", self.row_header, *cols])

    def long_frame(self) -> pd.DataFrame:
        """One line per measured or paper cell, numbers unformatted (the long CSV)."""
        frames = []
        for b in self.blocks:
            if b.paper_only:
                continue
            index = pd.MultiIndex.from_product([b.rows, b.cols], names=["eta", "S"])
            cells = pd.DataFrame(index=index).join(b.measured) if len(b.measured) else pd.DataFrame(
                index=index, columns=["value", "run_id", "flagged", "stderr", *LONG_SETTINGS])
            cells["paper"] = [b.paper.get(k, (None,))[0] for k in index]
            cells["reference_paper_value"] = [None if b.comparable else b.reference.get(k, (None,))[0] for k in index]
            cells = cells[cells["value"].notna() | cells["paper"].notna()].reset_index()
            frames.append(pd.DataFrame({
                "table": self.number, "dataset": b.dataset, "row": cells["eta"].map(self.row_label), "eta": cells["eta"],
                "S": cells["S"], "measured": cells["value"], "paper": cells["paper"],
                "reference_paper_value": cells["reference_paper_value"],
                "reference_dataset": None if b.comparable else b.reference_dataset,
                "flagged": cells["flagged"].astype(object),
                **({"stderr": cells["stderr"]} if self.spec.fmt == "mse" else {}),
                "run_id": cells["run_id"],
                **{SETTING_NAMES.get(k, k): cells[k] for k in LONG_SETTINGS},
            }))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _choose(block: Block, runs: pd.DataFrame, keys: list[str]) -> None:
    """Place one dataset's runs into its block: per (eta, S) the newest run with the block's most common settings
    (else the newest); flag the cells whose run differs and note every difference and every run left out."""
    runs = runs.sort_values("start_time", ascending=False, kind="stable")
    settings = pd.Series([tuple("None" if pd.isna(v) else str(v) for v in row) for row in runs[keys].itertuples(False)],
                         index=runs.index)
    counts = Counter(settings)
    reference = next(s for s in settings if counts[s] == max(counts.values()))  # ties: the newest run's
    block.settings = dict(zip(keys, reference))
    runs = runs.assign(flagged=settings != reference, settings=settings)
    chosen = runs.sort_values("flagged", kind="stable").drop_duplicates(["eta", "S"])
    block.measured = chosen.assign(S=chosen["S"].astype(int)).set_index(["eta", "S"])
    for i, k in enumerate(keys):
        values = Counter(s[i] for s in settings)
        if len(values) > 1:
            parts = [f"{v} in {n} run(s) (the block's most common setting)" if v == reference[i] else
                     f"{v} in run(s) {', '.join(r for r, s in zip(runs['run_id'], settings) if s[i] == v)}"
                     for v, n in values.most_common()]
            block.notes.append(f"Mixed settings in {dataset_name(block.dataset)}: {SETTING_NAMES.get(k, k)} differs: "
                               + "; ".join(parts) + f". Table cells from runs that differ are marked {DAGGER}.")
    shown = set(chosen["run_id"])
    hidden = [f"{r.run_id} ({eta_row_name(r.eta)}, S={r.S}, "
              + ", ".join(f"{SETTING_NAMES.get(k, k)}={v}" for k, v in zip(keys, r.settings)) + ")"
              for _, g in runs.groupby(["eta", "S"], sort=False) for r in g.itertuples() if r.run_id not in shown]
    if hidden:
        block.notes.append(f"Other runs of {dataset_name(block.dataset)} for a cell already shown (a different cell_key; "
                           "the table shows the newest run with the block's most common settings), not in the table: "
                           f"{'; '.join(hidden)}.")


def _reference_note(table: int, dataset: str, extractor: str | None) -> str:
    if not extractor:
        what = "FID features of the run, not the paper's"
    elif "inception" in extractor.lower():
        what = f"FID in {extractor} features"
    else:
        what = f"FID in {extractor} features, not Inception"
    return (f"{dataset_name(dataset)}: the paper has no values for this dataset; the paper's "
            f"{dataset_name(ORDERING_REFERENCE)} block is shown beside it to compare orderings only. The values are not "
            f"comparable (different data, model{', and feature extractor: ' + what if table != 2 else ''}).")


def _blocks(spec: Spec, runs: pd.DataFrame, dataset: str) -> list[Block]:
    """The measured block of one dataset, and the paper's reference block when the paper has no values for it."""
    sub = runs[(runs["dataset"] == dataset) & runs[spec.metric].notna()].rename(columns={spec.metric: "value"})
    if spec.job == "recon":
        sub = sub.rename(columns={"recon_mse_stderr": "stderr"}).assign(eta=RECON_ROW)
    cells = paper_cells(spec.number, dataset)
    rows = sorted(set(spec.base_rows) | set(sub["eta"]), key=eta_sort_key)
    block = Block(dataset, "", rows, sorted(set(PAPER_S[spec.number]) | set(sub["S"].astype(int))), paper=cells,
                  comparable=bool(cells), reference=cells, reference_dataset=dataset if cells else None)
    if len(sub):
        _choose(block, sub, SETTINGS[spec.job])
    extractor = ", ".join(sorted({str(x) for x in sub["feature_extractor"].dropna()})) or None
    how = [f"FID in {extractor} features"] if extractor and spec.job == "sample" else []
    how += [f"N={block.settings['N']}", f"trajectory {block.settings['trajectory']}"] if block.settings else []
    block.label = (f"{dataset_name(dataset)}: measured{' (paper)' if cells else ''}"
                   + (f"; {', '.join(how)}" if how else "") + ("" if cells else "; no paper values"))
    if cells:
        return [block]
    ref = paper_cells(spec.number, ORDERING_REFERENCE)
    block.reference, block.reference_dataset = ref, ORDERING_REFERENCE
    block.notes.append(_reference_note(spec.number, dataset, extractor))
    label = (f"{dataset_name(ORDERING_REFERENCE)} (paper) - for comparing orderings only, NOT comparable to "
             f"{dataset_name(dataset)}")
    return [block, Block(ORDERING_REFERENCE, label, rows, sorted({s for _, s in ref}), paper=ref, paper_only=True)]


def _across_blocks(blocks: list[Block]) -> list[str]:
    """A note when the dataset blocks of one table were run with different N, seed, trajectory or extractor."""
    notes = []
    for key in ("N", "seed", "trajectory", "feature_extractor", "precision"):
        values = {b.dataset: b.settings[key] for b in blocks if key in b.settings}
        if len(set(values.values())) > 1:
            notes.append(f"{SETTING_NAMES.get(key, key)} differs between dataset blocks: "
                         + ", ".join(f"{dataset_name(d)} {v}" for d, v in values.items()) + ".")
    return ["The dataset blocks were run with different settings (by design where the paper's differ, e.g. "
            "CIFAR-10's quadratic trajectory; compare across blocks with care): " + " ".join(notes)] if notes else []


def build_table(spec: Spec, runs: RunSet) -> ReportTable:
    frame = runs.job(spec.job, [spec.metric, "recon_mse_stderr"])
    lsun = frame["dataset"].isin(PAPER_DATASETS[3])
    frame = frame if spec.lsun is None else frame[lsun == spec.lsun]
    paper = PAPER_DATASETS[spec.number]
    datasets = [d for d in paper if d in set(frame["dataset"])] + sorted(set(frame["dataset"]) - set(paper))
    table = ReportTable(spec, [b for d in datasets for b in _blocks(spec, frame, d)], [spec.note])
    if not table.blocks:  # no runs for this table: the paper's blocks with '-' measured cells
        for ds in [d for d in paper if not runs.datasets_filter or d in runs.datasets_filter]:
            cells = paper_cells(spec.number, ds)
            table.blocks.append(Block(ds, f"{dataset_name(ds)}: measured (paper)", list(spec.base_rows),
                                      sorted({s for _, s in cells}), paper=cells, reference=cells, reference_dataset=ds))
        table.notes += [spec.empty_note] if table.blocks else []
    table.notes += _across_blocks(table.blocks)
    return table


def build_tables(runs: RunSet) -> list[ReportTable]:
    return [build_table(spec, runs) for spec in SPECS]
