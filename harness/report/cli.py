"""python -m harness.report: the command line."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.core.cli import reports_errors

DEFAULT_OUT = Path("outputs") / "report"  # outputs/ is git-ignored: the quick start leaves the repository clean


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.report",
        description="Build the DDIM reproduction report (Tables 1-3, claims, figures, provenance) from the harness's "
                    "MLflow runs. It reads the store and writes the report; it samples nothing.",
    )
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: as the runner: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db "
                        "in the current directory)")
    p.add_argument("--experiment", default="ddim-harness", help="MLflow experiment name (default: ddim-harness)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"output folder (default: {DEFAULT_OUT}; --out reports/default rebuilds the checked-in report)")
    p.add_argument("--dataset", nargs="+", action="extend", default=None, metavar="NAME",
                   help="only these datasets (repeatable), e.g. --dataset digits cifar10")
    p.add_argument("--rehearsal", action="store_true",
                   help="a report of the rehearsal's runs (python -m harness.rehearsal: stand-in files) only, under a "
                        "REHEARSAL banner; without it, rehearsal runs are left out")
    p.add_argument("--rate", type=float, default=None, metavar="SECONDS",
                   help="price the planner's images at this many seconds per image and network evaluation (e.g. the "
                        "GPU rate a dry run prints) instead of the rate measured on the store's runs")
    p.add_argument("--latex-check", action="store_true",
                   help="compile tables.tex with pdflatex/latexmk if one is on PATH, else check its syntax; "
                        "exit status 1 if it fails")
    return p


@reports_errors
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from harness.report.build import (  # lazy: brings torch, mlflow, pandas, matplotlib, scipy: python -m harness.report --help stays fast
        Options,
        build_report,
    )
    from harness.report.labels import label  # lazy: brings pandas: python -m harness.report --help stays fast
    from harness.tracking.store import (
        tracking_uri,  # lazy: brings torch, mlflow: python -m harness.report --help stays fast
    )

    result = build_report(Options(tracking_uri(args.tracking_uri), args.out, args.experiment, args.dataset,
                                  args.latex_check, args.rehearsal, args.rate))  # the store as the runner resolves it
    print(f"report written to {args.out}/ in {result.seconds:.1f} s: {args.out / 'index.html'} ({len(result.files)} files)")
    for c in result.claims:
        print(f"  {c.verdict:<19} [{label(c.metric)}] {c.statement}")
    for r in result.ranks:
        print(f"  Kendall tau {'n/a' if r.tau != r.tau else f'{r.tau:.3f}':>6} over {r.n} cells: {r.description}")
    if result.latex is not None:
        print(f"  {result.latex.summary}")
    return 1 if result.latex is not None and not result.latex.ok else 0
