"""Building the whole report: load runs, fill the tables, check the claims, draw the figures, write every file."""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import HarnessError
from . import claims as C
from . import samplers
from .artifacts import figures_images
from .document import Bullets, Figure, Para, Section, Table
from .labels import dataset_name, file_stem, store_name
from .latex import standalone_tex, table_tex
from .metrics import label
from .provenance import provenance_section
from .render import write_csv, write_html, write_markdown
from .runs import RunSet, load_runs
from .samplers import SamplerView
from .tables import ReportTable, build_tables
from .texcheck import LatexCheck, check_latex
from .timing import TimingLine, timing_lines

MANIFEST = ".report-files.json"
TITLE = "DDIM reproduction report"
SAYS = {C.PASS: "holds on", C.FAIL: "fails on", C.NOISE: "within noise on", C.NO_REPEATS: "not enough repeats on",
        C.NO_DATA: "not enough data on"}


@dataclass
class Options:
    tracking_uri: str
    out: Path
    experiment: str = "ddim-harness"
    datasets: list[str] | None = None
    latex_check: bool = False


@dataclass
class Result:
    out: Path
    files: list[Path] = field(default_factory=list)
    tables: list[ReportTable] = field(default_factory=list)
    claims: list[C.Claim] = field(default_factory=list)
    ranks: list[C.RankAgreement] = field(default_factory=list)
    latex: LatexCheck | None = None
    runs: RunSet | None = None
    seconds: float = 0.0


def _table_section(table: ReportTable, files: list[str]) -> Section:
    sec = Section(table.title).add(*[Para(n) for n in table.notes])
    if not table.blocks:
        sec.add(Para("No runs for this table among the datasets of this report."))
    others = []  # a dataset's other metrics follow its headline block and the paper's block beside it
    for block in table.blocks:
        if not block.paper_only:
            sec.add(*others)
            others = [Table(table.block_frame(b), b.label) for b in table.metric_blocks.get(block.dataset, [])]
        sec.add(Table(table.block_frame(block), block.label), *[Para(n) for n in block.notes])
    return sec.add(*others, Para("Files: " + ", ".join(files)))


def verdict_table(claims: list[C.Claim]) -> pd.DataFrame:
    """One row per claim, one column per metric: the verdicts."""
    frame = pd.DataFrame([{"claim": c.statement, "metric": label(c.metric), "verdict": c.verdict} for c in claims])
    return frame.pivot(index="claim", columns="metric", values="verdict").reindex(
        index=list(dict.fromkeys(frame["claim"])), columns=list(dict.fromkeys(frame["metric"]))).fillna("").reset_index()


def plain_verdicts(claims: list[C.Claim]) -> list[str]:
    """Which of the paper's orderings hold on which metric, in words."""
    lines = []
    for statement in dict.fromkeys(c.statement for c in claims):
        group = [c for c in claims if c.statement == statement]
        said = [f"{SAYS[v]} " + " and ".join(label(c.metric) for c in group if c.verdict == v)
                for v in SAYS if any(c.verdict == v for c in group)]
        lines.append(f"{statement.rstrip('.')}: " + "; ".join(said) + ".")
    return lines


def _claims_sections(claims: list[C.Claim], ranks: list[C.RankAgreement]) -> list[Section]:
    sec = Section("Claims").add(Para(
        "Verdicts: PASS (the 95% interval of the compared difference lies wholly on the claimed side), FAIL (wholly "
        "on the other side), within noise (the interval contains 0), not enough repeats (a cell measured once), not "
        "enough data (a NaN or infinite value, cells not paired, a cell not run)."),
        Table(verdict_table(claims), "Verdict per claim and metric"))
    for statement in dict.fromkeys(c.statement for c in claims):
        sub = Section(statement, level=3)
        for c in [c for c in claims if c.statement == statement]:
            frame = pd.DataFrame([{"scope": k.scope, "verdict": k.verdict, "numbers": k.evidence} for k in c.checks],
                                 columns=["scope", "verdict", "numbers"])
            sub.add(Section(f"{label(c.metric)}: {c.verdict}", level=4).add(
                Para("Definition: " + c.definition), *([Bullets(c.where)] if c.checks else []),
                Table(frame) if not frame.empty else Para("No cells to check: not enough runs.")))
        sec.add(sub)
    rank = Section("Rank agreement with the paper (Kendall tau-b)").add(Para(
        "Kendall's tau-b between the measured values and the paper's over the cells both have (1 = same ordering, -1 = "
        "reversed). For a dataset the paper did not use (digits) the comparison is against the paper's CIFAR-10 block "
        "and is an ordering comparison only: the values are not comparable."))
    frame = pd.DataFrame([{"comparison": r.description, "cells": r.n,
                           "tau": "n/a (< 2 cells)" if math.isnan(r.tau) else f"{r.tau:.3f}"} for r in ranks],
                         columns=["comparison", "cells", "tau"])
    return [sec, rank.add(Table(frame) if not frame.empty else Para("No measured cells."))]


def _claims_frame(claims: list[C.Claim], ranks: list[C.RankAgreement]) -> pd.DataFrame:
    data = [{"kind": "claim", "claim": c.key, "metric": c.metric, "scope": k.scope, "verdict": k.verdict, "value": "",
             "evidence": k.evidence, "estimate": k.interval.estimate if k.interval else None,
             "ci95_low": k.interval.low if k.interval else None, "ci95_high": k.interval.high if k.interval else None,
             "df": k.interval.df if k.interval else None, "K": k.K} for c in claims for k in c.checks]
    data += [{"kind": "claim_overall", "claim": c.key, "metric": c.metric, "scope": "all", "verdict": c.verdict,
              "value": "", "evidence": c.definition} for c in claims]
    data += [{"kind": "kendall_tau", "claim": f"table{r.table}", "metric": r.metric, "scope": r.description,
              "verdict": "", "value": r.tau, "evidence": f"{r.n} cells"} for r in ranks]
    return pd.DataFrame(data, columns=["kind", "claim", "metric", "scope", "verdict", "value", "evidence", "estimate",
                                       "ci95_low", "ci95_high", "df", "K"])


def _timing_blocks(lines: list[TimingLine], png: Path, pdf: Path) -> list:
    source = ("Timing jobs (hours_50k)" if lines and not any(l.fallback for l in lines) else
              "Timing jobs where present; lines marked [from sample jobs] have no timing jobs and use the sample "
              "jobs' seconds_per_image * 50000 / 3600 instead" if lines else "No timing or sample runs")
    blocks = [Figure(png, "Figure 4: hours to sample 50,000 images vs number of network evaluations (log-log), one "
                          "line per dataset/device with its fitted log-log slope; grey: the paper's reading (about 20 h "
                          "for 1000 steps on CIFAR-10 and nearly 1000 h at 256x256 on one 2080 Ti, linear in S).", pdf),
              Para(f"Source: {source}.")]
    if lines:
        blocks.append(Table(pd.DataFrame([{
            "dataset": dataset_name(l.dataset), "device": l.device,
            "source": "sample jobs (fallback)" if l.fallback else "timing jobs",
            "NFE": " ".join(map(str, l.points["nfe"])), "hours for 50k": " ".join(f"{h:.3g}" for h in l.points["hours"]),
            "log-log slope": f"{l.loglog.slope:.3f}" if not math.isnan(l.loglog.slope) else "n/a",
            "R^2 (linear)": f"{l.linear.r2:.4f}" if not math.isnan(l.linear.r2) else "n/a"} for l in lines]),
            "Figure 4 data"))
    return blocks


def _metric_figures(tables: list[ReportTable], out: Path) -> tuple[list, list[Path]]:
    """Per dataset of Tables 1/3: each metric against NFE, one line per eta, 95% intervals as error bars."""
    from .figures import metric_panels

    blocks, files = [], []
    for table in [t for t in tables if t.number in (1, 3)]:
        for block in [b for b in table.blocks if not b.paper_only and len(b.measured)]:
            data = pd.concat([b.measured.reset_index().assign(metric=b.metric)
                              for b in [block, *table.metric_blocks.get(block.dataset, [])]])
            data = data.assign(nfe=data["nfe"].fillna(data["S"]).astype(int), eta=data["eta"].map(table.row_label))
            data = data[data["value"].map(math.isfinite)]
            title = f"{dataset_name(block.dataset)}: each metric against NFE per eta (DDIM family; error bars: 95% interval)"
            png, pdf = metric_panels(data, "eta", [table.row_label(r) for r in block.rows], title, out,
                                     f"figure_metrics_{file_stem(block.dataset)}")
            files += [png, pdf]
            blocks.append(Figure(png, f"{dataset_name(block.dataset)}: each metric against the network evaluations per "
                                      "image (log x), one line per eta; error bars: the 95% interval over the cell's "
                                      "repeats (none where K=1).", pdf))
    return blocks, files


def _sampler_section(views: list[SamplerView], out: Path) -> tuple[Section, list[Path]]:
    """Samplers at equal NFE: per dataset a table of the headline metric, the measured orders, a figure."""
    from .figures import metric_panels

    sec, files = Section("Samplers at equal NFE"), [write_csv(samplers.long_frame(views), out / "samplers_long.csv")]
    sec.add(Para("Samplers compared at the same number of network evaluations per image (NFE, as the runs counted it). "
                 "Tables 1-3 hold DDIM-family runs only (sampler ddim). Every cell: samplers_long.csv."
                 if views else "No dataset was run with more than one sampler: nothing to compare here."))
    orders = [v.orders.assign(dataset=v.dataset) for v in views if v.orders is not None]
    if orders:
        files.append(write_csv(pd.concat(orders, ignore_index=True), out / "sampler_orders.csv"))
    for view in views:
        data = view.cells[view.cells["value"].map(math.isfinite)]
        png, pdf = metric_panels(data, "row", view.rows, f"{dataset_name(view.dataset)}: each metric against NFE per sampler "
                                 "(error bars: 95% interval over repeats)", out, f"figure_samplers_{file_stem(view.dataset)}")
        files += [png, pdf]
        sec.add(Table(view.grid(), samplers.caption(view)), *[Para(n) for n in view.notes])
        if view.orders is not None:
            sec.add(Table(samplers.orders_display(view.orders), f"{dataset_name(view.dataset)}: measured order of each deterministic sampler "
                                       "(minus the log-log slope of flow_rmse against NFE, with its 95% interval) "
                                       "beside its theoretical order"))
        sec.add(Figure(png, f"{dataset_name(view.dataset)}: each metric against NFE (log x), one line per sampler; "
                            "error bars: the 95% interval over the cell's repeats (none where K=1).", pdf))
    return sec, files


def _sample_figures(tables: list[ReportTable], runs: RunSet, out: Path, tmp: Path) -> tuple[list, list[Path], list[str]]:
    """Figure 3-style grids and Figures 5/6: (document blocks, files, provenance lines)."""
    from .galleries import consistency_and_interpolation, sample_grids

    blocks, files = [], []
    for ds, png, pdf, missing in sample_grids(tables, runs.uri, out, tmp):
        files += [png, pdf]
        blocks.append(Figure(png, f"{dataset_name(ds)}: the first samples of each (eta, S) run (samples.png "
                                  "artifacts), as the paper's Figure 3. Within a row the images share x_T (same seed).", pdf))
        if missing:
            blocks.append(Para("Runs without a samples.png artifact: " + "; ".join(missing) + "."))
    found = figures_images(runs.uri, runs.runs, tmp)
    if found is None:
        blocks.append(Para("Figures 5 and 6 (consistency, interpolation): no finished figures run in the store; run "
                           "python -m harness job=figures"))
        return blocks, files, []
    run, images, settings = found
    for caption, png, pdf in consistency_and_interpolation(images, settings, run["dataset"], out):
        files += [png, pdf]
        blocks.append(Figure(png, caption, pdf))
    line = (f"Figures 5 and 6 come from the figures run {run['run_id']} ({pd.Timestamp(run['start_time']):%Y-%m-%d %H:%M}"
            f" UTC): {dataset_name(run['dataset'])}, checkpoint {Path(str(run['checkpoint'])).name} (sha256 "
            f"{run['checkpoint_sha256']}), trajectory {settings['trajectory']}, seed {settings['seed']}, eta=0, S "
            f"{settings['consistency_S']} (consistency) and {settings['interpolation_S']} (interpolation).")
    return blocks, files, [line]


def _remove_stale(out: Path, written: list[Path]) -> None:
    """Delete files this command wrote last time into ``out`` but not this time (never anything else)."""
    manifest = out / MANIFEST
    names = {p.name for p in written}
    try:
        previous = json.loads(manifest.read_text()) if manifest.is_file() else []
    except ValueError:
        previous = []
    for name in previous:
        if name not in names and "/" not in name and (out / name).is_file():
            (out / name).unlink()
    manifest.write_text(json.dumps(sorted(names), indent=1))


def build_report(opts: Options) -> Result:
    start = time.perf_counter()
    runs = load_runs(opts.tracking_uri, opts.experiment, opts.datasets)
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise HarnessError(f"The report folder {out} is a file; choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    tables, lines = build_tables(runs), timing_lines(runs)
    result = Result(out, [], tables, C.check_claims(tables, lines), C.rank_agreement(tables), runs=runs)
    files = result.files

    table_sections = []
    for t in tables:
        names = [f"{t.key}.md", f"{t.key}.csv", f"{t.key}_long.csv", f"{t.key}.tex"]
        table_sections.append(_table_section(t, names))
        files += [write_markdown(table_sections[-1:], out / names[0]), write_csv(t.display_frame(), out / names[1]),
                  write_csv(t.long_frame(), out / names[2])]
        (out / names[3]).write_text(table_tex(t), encoding="utf-8")
        files.append(out / names[3])
    (out / "tables.tex").write_text(standalone_tex([t.key for t in tables]), encoding="utf-8")
    tidy = runs.values.merge(runs.runs[["run_id", "nfe", "N", "repeats", "seed", "trajectory"]], on="run_id")
    files += [out / "tables.tex", write_csv(tidy, out / "metrics_long.csv")]
    if opts.latex_check:
        result.latex = check_latex(out / "tables.tex")

    from .figures import figure4

    png, pdf = figure4(lines, out)
    metric_blocks, metric_files = _metric_figures(tables, out)
    with tempfile.TemporaryDirectory() as tmp:
        sample_blocks, sample_files, figure_lines = _sample_figures(tables, runs, out, Path(tmp))
    files += [png, pdf, *metric_files, *sample_files]
    fig_sec = Section("Figures").add(*_timing_blocks(lines, png, pdf), *metric_blocks, *sample_blocks)

    sampler_sec, sampler_files = _sampler_section(samplers.sampler_views(runs), out)
    files += sampler_files
    claim_secs = _claims_sections(result.claims, result.ranks)
    prov, prov_frame = provenance_section(tables, lines, runs, figure_lines)
    files += [write_markdown(claim_secs, out / "claims.md", "Claims of the DDIM paper, checked"),
              write_csv(_claims_frame(result.claims, result.ranks), out / "claims.csv"),
              write_markdown([prov], out / "provenance.md"), write_csv(prov_frame, out / "provenance_runs.csv")]

    jobs = runs.runs["job"].value_counts().sort_index()
    summary = Section("Summary").add(Para(
        f"Generated {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M UTC} from {store_name(runs.uri)} (experiment "
        f"{runs.experiment!r}): {len(runs.runs)} runs ({', '.join(f'{n} {j}' for j, n in jobs.items())}), datasets "
        f"{', '.join(sorted(set(runs.runs['dataset'])))}."))
    if runs.datasets_without_runs:
        summary.add(Para(f"No finished runs for --dataset {', '.join(runs.datasets_without_runs)}."))
    summary.add(Table(verdict_table(result.claims), "The paper's claims: verdict per metric"),
                Bullets(plain_verdicts(result.claims)))
    if result.latex is not None:
        summary.add(Para(result.latex.summary))
    sections = [summary, *table_sections, sampler_sec, *claim_secs, fig_sec, prov]
    files += [write_markdown(sections, out / "report.md", TITLE), write_html(sections, out / "index.html", TITLE)]
    _remove_stale(out, files)
    result.seconds = time.perf_counter() - start
    return result
