"""Building the whole report: load the runs, fill the tables, check the claims, draw the figures, write every file."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.core import faults
from harness.core.errors import HarnessError
from harness.core.files import atomic_path
from harness.report import claims as C
from harness.report import documents as sections
from harness.report import tables as samplers
from harness.report.claims import attach_plans, plan_note
from harness.report.documents import provenance_section, standalone_tex, table_tex
from harness.report.figures import consistency_and_interpolation, eta_figures, figure4, sample_grids, sampler_figure
from harness.report.render import LatexCheck, Section, check_latex, write_document
from harness.report.runs import REHEARSAL_BANNER, RunSet, figures_images, load_runs
from harness.report.tables import ReportTable, build_tables, timing_lines

MANIFEST = ".report-files.json"
REPORT_FILE = re.compile(  # the names the report writes
    r"table\d+(_long)?\.(md|csv|tex)|tables\.tex|(metrics|samplers)_long\.csv|sampler_orders\.csv|"
    r"figure[A-Za-z0-9_-]*\.(png|pdf)|claims\.(md|csv)|provenance(_runs)?\.(md|csv)|report\.md|index\.html")
TITLE = "DDIM reproduction report"


@dataclass
class Options:
    tracking_uri: str
    out: Path
    experiment: str = "ddim-harness"
    datasets: list[str] | None = None
    latex_check: bool = False
    rehearsal: bool = False  # a report of a rehearsal's runs (stand-in files), under a banner on every page
    rate: float | None = None  # seconds per image and NFE to price the planner at (e.g. a GPU's), instead of the store's


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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _remove_stale(out: Path, written: list[Path]) -> None:
    """Delete the files this command wrote last time into ``out`` but not this time, and nothing else: the manifest
    records each file's sha256, and a file is deleted only if its name is one the report writes (REPORT_FILE) and
    its content is still what the report wrote. A manifest planted in ``out`` would have to name a report file by
    the hash of its content; any other file it names is left alone."""
    manifest = out / MANIFEST
    names = {p.name for p in written}
    try:
        previous = json.loads(manifest.read_text()) if manifest.is_file() and not manifest.is_symlink() else {}
    except (OSError, ValueError):
        previous = {}
    recorded = previous.get("sha256") if isinstance(previous, dict) else None
    for name, digest in (recorded.items() if isinstance(recorded, dict) else ()):
        path = out / str(name)
        if (name not in names and isinstance(name, str) and REPORT_FILE.fullmatch(name) and path.is_file()
                and not path.is_symlink() and _sha256(path) == digest):
            path.unlink()
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".report-files.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:  # a new file replacing the old one (never written through a planted link)
        json.dump({"sha256": {p.name: _sha256(p) for p in sorted(written)}}, f, indent=1)
    os.replace(tmp, manifest)


def build_report(opts: Options) -> Result:
    start = time.perf_counter()
    runs = load_runs(opts.tracking_uri, opts.experiment, opts.datasets, opts.rehearsal)
    out = Path(opts.out)
    if out.exists() and not out.is_dir():
        raise HarnessError(f"The report folder {out} is a file; choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    tables, lines, views = build_tables(runs), timing_lines(runs), samplers.sampler_views(runs)
    result = Result(out, [], tables, C.check_claims(tables, lines), C.rank_agreement(tables), runs=runs)

    def write(name: str, content: pd.DataFrame | str | list[Section], title: str | None = None) -> None:
        """One file of the report: a frame as CSV, text as it is, sections through the document templates."""
        path = out / name
        with atomic_path(path) as tmp:  # a report stopped mid-write leaves the previous file, never half of one
            if isinstance(content, pd.DataFrame):
                content.to_csv(tmp, index=False)
            elif isinstance(content, str):
                tmp.write_text(content, encoding="utf-8")
            else:
                write_document(content, tmp, title)
            faults.point("report_file", file=name)  # written, not yet renamed: where a stopped report is tested
        result.files.append(path)

    title = f"{REHEARSAL_BANNER}: {TITLE}" if runs.rehearsal else TITLE
    table_sections = []
    for t in tables:
        names = [f"{t.key}.md", f"{t.key}.csv", f"{t.key}_long.csv", f"{t.key}.tex"]
        table_sections.append(sections.table_section(t, names))
        if runs.rehearsal:  # the paper's values beside a rehearsal's: said in the title of every table
            table_sections[-1].title = f"{REHEARSAL_BANNER}: {table_sections[-1].title}"
        for name, content in zip(names, [table_sections[-1:], t.display_frame(), t.long_frame(), table_tex(t)]):
            write(name, content)
    write("tables.tex", standalone_tex([t.key for t in tables]))
    if opts.latex_check:
        result.latex = check_latex(out / "tables.tex")
    write("metrics_long.csv", runs.values.merge(runs.runs[["run_id", "nfe", "N", "repeats", "seed", "trajectory"]],
                                                on="run_id"))
    write("samplers_long.csv", samplers.long_frame(views))
    orders = [v.orders.assign(dataset=v.dataset) for v in views if v.orders is not None]
    if orders:
        write("sampler_orders.csv", pd.concat(orders, ignore_index=True))

    fig4, metric_figures = figure4(lines, out), eta_figures(tables, out)
    sampler_figures = {v.dataset: sampler_figure(v, out) for v in views}
    with tempfile.TemporaryDirectory() as tmp:
        grids = sample_grids(tables, runs.uri, out, Path(tmp))
        figures_run = figures_images(runs.uri, runs.runs, Path(tmp))
    figures_56 = consistency_and_interpolation(*figures_run, out) if figures_run else None
    figures = [fig4, *metric_figures, *sampler_figures.values(), *(g for g, _ in grids), *(figures_56 or [])]
    result.files += [p for f in figures for p in (f.png, f.pdf)]

    measured = attach_plans(result.claims, runs, opts.rate)  # the planner's line on every within-noise check
    planned = any(k.plan for c in result.claims for k in c.checks)
    claim_secs = sections.claims_sections(result.claims, result.ranks, plan_note(measured) if planned else None)
    prov, prov_frame = provenance_section(tables, lines, runs, figures_run)
    write("claims.md", claim_secs, f"{REHEARSAL_BANNER}: Claims of the DDIM paper, checked" if runs.rehearsal else
          "Claims of the DDIM paper, checked")
    write("claims.csv", C.claims_frame(result.claims, result.ranks))
    write("provenance.md", [prov])
    write("provenance_runs.csv", prov_frame)
    banner = [Section(REHEARSAL_BANNER, [sections.rehearsal_note()])] if runs.rehearsal else []
    document = [*banner, sections.summary_section(runs, result.claims, result.latex.summary if result.latex else None),
                *table_sections, sections.sampler_section(views, sampler_figures), *claim_secs,
                sections.figures_section(sections.timing_blocks(lines, fig4), metric_figures, grids, figures_56), prov]
    write("report.md", document, title)
    write("index.html", document, title)
    _remove_stale(out, result.files)
    result.seconds = time.perf_counter() - start
    return result
