"""Building the whole report: load runs, fill the tables, check the claims, draw the figures, write every file."""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import HarnessError
from . import claims as claims_mod
from .document import Bullets, Document, Figure, Para, Section, Table
from .labels import dataset_name
from .latex import LatexCheck, check_latex, standalone_tex, table_tex
from .provenance import provenance_section
from .runs import RunSet, load_runs
from .tables import ReportTable, build_tables
from .timing import SAMPLE_SOURCE, timing_lines
from .writers import write_csv, write_html, write_markdown

log = logging.getLogger(__name__)
MANIFEST = ".report-files.json"


@dataclass
class Options:
    tracking_uri: str
    out: Path
    experiment: str = "ddim-harness"
    datasets: list[str] | None = None
    samples: bool = True
    latex_check: bool = False
    seed: int = 0


@dataclass
class Result:
    out: Path
    files: list[Path] = field(default_factory=list)
    tables: list[ReportTable] = field(default_factory=list)
    claims: list[claims_mod.Claim] = field(default_factory=list)
    ranks: list[claims_mod.RankAgreement] = field(default_factory=list)
    latex: LatexCheck | None = None
    runs: RunSet | None = None
    seconds: float = 0.0


def _table_section(table: ReportTable, files: list[str]) -> Section:
    sec = Section(table.title)
    sec.add(*[Para(n) for n in table.notes])
    if not table.blocks:
        sec.add(Para("No runs for this table among the datasets of this report."))
    for block in table.blocks:
        sec.add(Table(table.block_frame(block), block.label), *[Para(n) for n in block.notes])
    sec.add(Para("Files: " + ", ".join(files)))
    return sec


def _claims_sections(claims: list[claims_mod.Claim], ranks: list[claims_mod.RankAgreement]) -> list[Section]:
    overview = pd.DataFrame(
        [{"claim": c.statement, "verdict": c.verdict, "checks": len(c.checks), "definition": c.definition} for c in claims]
    )
    sec = Section("Claims").add(Table(overview, "The paper's qualitative claims"))
    for c in claims:
        frame = pd.DataFrame([{"scope": k.scope, "verdict": k.verdict, "numbers": k.evidence} for k in c.checks],
                             columns=["scope", "verdict", "numbers"])
        sub = Section(f"{c.verdict}: {c.statement}", level=3).add(Para("Definition: " + c.definition))
        sub.add(Table(frame) if not frame.empty else Para("No cells to check: not enough runs."))
        sec.add(sub)
    rank = Section("Rank agreement with the paper (Kendall tau-b)")
    rank.add(Para("Kendall's tau-b between the measured values and the paper's over the cells both have (1 = same "
                  "ordering, -1 = reversed). For a dataset the paper did not use (digits) the comparison is against the "
                  "paper's CIFAR-10 block and is an ordering comparison only: the values are not comparable."))
    frame = pd.DataFrame([{"comparison": r.description, "cells": r.n,
                           "tau": "n/a (< 2 cells)" if math.isnan(r.tau) else f"{r.tau:.3f}"} for r in ranks],
                         columns=["comparison", "cells", "tau"])
    rank.add(Table(frame) if not frame.empty else Para("No measured cells."))
    return [sec, rank]


def _claims_frame(claims: list[claims_mod.Claim], ranks: list[claims_mod.RankAgreement]) -> pd.DataFrame:
    data = [{"kind": "claim", "claim": c.key, "scope": k.scope, "verdict": k.verdict, "value": "", "evidence": k.evidence}
            for c in claims for k in c.checks]
    data += [{"kind": "claim_overall", "claim": c.key, "scope": "all", "verdict": c.verdict, "value": "",
              "evidence": c.definition} for c in claims]
    data += [{"kind": "kendall_tau", "claim": f"table{r.table}", "scope": r.description, "verdict": "",
              "value": r.tau, "evidence": f"{r.n} cells"} for r in ranks]
    return pd.DataFrame(data, columns=["kind", "claim", "scope", "verdict", "value", "evidence"])


def _remove_stale(out: Path, written: list[Path]) -> None:
    """Delete files this command wrote last time into ``out`` but not this time (never anything else)."""
    manifest = out / MANIFEST
    names = {p.name for p in written}
    if manifest.is_file():
        try:
            previous = json.loads(manifest.read_text())
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
        raise HarnessError(f"The report folder {out} is a file; choose another --name or --out.")
    out.mkdir(parents=True, exist_ok=True)
    result = Result(out=out, runs=runs)
    files = result.files

    tables = build_tables(runs)
    lines = timing_lines(runs)
    claims = claims_mod.check_claims(tables, lines)
    ranks = claims_mod.rank_agreement(tables)
    result.tables, result.claims, result.ranks = tables, claims, ranks

    # Tables: Markdown, CSV (as shown and long), LaTeX.
    table_sections = []
    for t in tables:
        names = [f"{t.key}.md", f"{t.key}.csv", f"{t.key}_long.csv", f"{t.key}.tex"]
        sec = _table_section(t, names)
        table_sections.append(sec)
        files.append(write_markdown([sec], out / names[0]))
        files.append(write_csv(t.display_frame(), out / names[1]))
        files.append(write_csv(t.long_frame(), out / names[2]))
        (out / names[3]).write_text(table_tex(t), encoding="utf-8")
        files.append(out / names[3])
    (out / "tables.tex").write_text(standalone_tex([t.key for t in tables]), encoding="utf-8")
    files.append(out / "tables.tex")
    if opts.latex_check:
        result.latex = check_latex(out / "tables.tex")

    # Figures.
    from . import figures

    fig_sec = Section("Figures")
    png, pdf = figures.figure4(lines, out)
    files += [png, pdf]
    source = ("Timing jobs (hours_50k)" if lines and not any(l.fallback for l in lines) else
              "Timing jobs where present; lines marked [from sample jobs] have no timing jobs and use the sample "
              "jobs' seconds_per_image * 50000 / 3600 instead" if lines else "No timing or sample runs")
    fig_sec.add(Figure(png, "Figure 4: hours to sample 50,000 images vs number of network evaluations (log-log), one "
                            "line per dataset/device with its fitted log-log slope; grey: the paper's reading (about 20 h "
                            "for 1000 steps on CIFAR-10 and nearly 1000 h at 256x256 on one 2080 Ti, linear in S).", pdf),
                Para(f"Source: {source}."))
    if lines:
        fig_sec.add(Table(pd.DataFrame([{"dataset": dataset_name(l.dataset), "device": l.device,
                                         "source": "sample jobs (fallback)" if l.source == SAMPLE_SOURCE else "timing jobs",
                                         "NFE": " ".join(map(str, l.nfe)),
                                         "hours for 50k": " ".join(f"{h:.3g}" for h in l.hours),
                                         "log-log slope": f"{l.slope:.3f}" if not math.isnan(l.slope) else "n/a",
                                         "R^2 (linear)": f"{l.r2:.4f}" if not math.isnan(l.r2) else "n/a"}
                                        for l in lines]), "Figure 4 data"))
    with tempfile.TemporaryDirectory() as tmp:
        for ds, png, pdf, missing in figures.sample_grids(tables, runs.uri, out, Path(tmp)):
            files += [png, pdf]
            fig_sec.add(Figure(png, f"{dataset_name(ds)}: the first samples of each (eta, S) run (samples.png "
                                    "artifacts), as the paper's Figure 3. Within a row the images share x_T (same seed).",
                               pdf))
            if missing:
                fig_sec.add(Para("Runs without a samples.png artifact: " + "; ".join(missing) + "."))
    ondemand_lines = []
    datasets = set(runs.runs["dataset"])
    if opts.samples and "digits" in datasets:
        from .ondemand import digits_figures

        try:
            od = digits_figures(out, seed=opts.seed)
        except HarnessError as err:  # e.g. a missing or corrupt packaged model: the rest of the report stands
            od = None
            fig_sec.add(Para(f"Consistency and interpolation figures skipped: {err}"))
    else:
        od = None
    if od is not None:
        for caption, png, pdf in od.figures:
            files += [png, pdf]
            fig_sec.add(Figure(png, caption, pdf))
        ondemand_lines = [f"Figures 5 and 6 were sampled when this report was built ({od.images} images, "
                          f"{od.seconds:.1f} s) with the shipped digits model {od.settings['checkpoint']} "
                          f"(sha256 {od.checkpoint_sha256}), trajectory {od.settings['trajectory']}, seed {od.seed}, "
                          f"eta=0, S {od.settings['consistency_S']} (consistency) and {od.settings['interpolation_S']} "
                          "(interpolation)."]
    if not opts.samples and "digits" in datasets:
        fig_sec.add(Para("Consistency and interpolation figures skipped (--no-samples)."))
    elif "digits" not in datasets:
        fig_sec.add(Para("Consistency and interpolation figures are sampled only for the digits dataset "
                         "(not in this report)."))

    # Claims, provenance, summary.
    claim_secs = _claims_sections(claims, ranks)
    prov, prov_frame = provenance_section(tables, lines, runs, ondemand_lines)
    files.append(write_markdown(claim_secs, out / "claims.md", "Claims of the DDIM paper, checked"))
    files.append(write_csv(_claims_frame(claims, ranks), out / "claims.csv"))
    files.append(write_markdown([prov], out / "provenance.md"))
    files.append(write_csv(prov_frame, out / "provenance_runs.csv"))

    summary = Section("Summary")
    summary.add(Para(f"Generated {pd.Timestamp.now(tz='UTC').strftime('%Y-%m-%d %H:%M UTC')} from {runs.uri} "
                     f"(experiment {runs.experiment!r}): {len(runs.runs)} runs "
                     f"({', '.join(f'{n} {j}' for j, n in runs.runs['job'].value_counts().sort_index().items())}), "
                     f"datasets {', '.join(sorted(datasets))}."))
    if runs.datasets_without_runs:
        summary.add(Para(f"No finished runs for --dataset {', '.join(runs.datasets_without_runs)}."))
    summary.add(Bullets([f"{c.verdict}: {c.statement}" for c in claims]))
    if result.latex is not None:
        summary.add(Para(result.latex.summary))
    doc = Document("DDIM reproduction report", [summary] + table_sections + claim_secs + [fig_sec, prov])
    files.append(write_markdown(doc, out / "report.md"))
    files.append(write_html(doc, out / "index.html"))
    _remove_stale(out, files)
    result.seconds = time.perf_counter() - start
    return result
