"""The paper tables as LaTeX: a booktabs tabular per dataset block through pandas' ``Styler.to_latex``, a table float
per paper table and the standalone document that inputs them (templates/table.tex.j2, tables.tex.j2)."""

from __future__ import annotations

import pandas as pd

from harness.diffusion.eta import SIGMA_HAT
from harness.report.labels import DAGGER, DASH, ONE_REPEAT
from harness.report.render import ENV
from harness.report.tables import Block, ReportTable

ESCAPES = str.maketrans({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"})
ENV.filters["latex"] = lambda text: str(text).translate(ESCAPES)  # the templates' |latex


def _cell(text: str) -> str:
    """An already escaped cell: '--' for not run, the dagger and plus-minus as math."""
    if text == DASH or text.startswith(DASH + " ("):
        text = "-" + text
    return text.replace(DAGGER, r"$^{\dagger}$").replace(ONE_REPEAT, r"$^{\ddagger}$").replace("\u00b1", r"$\pm$")


def _row(row: str, table: ReportTable) -> str:
    if table.spec.job == "recon":
        return "MSE"
    if row == SIGMA_HAT:
        return r"$\hat{\sigma}$"
    value = float(row)
    return rf"$\eta = {f'{value:.1f}' if abs(value * 10 - round(value * 10)) < 1e-9 else row}$"


def _tabular(table: ReportTable, block: Block) -> str:
    grid = block.grid().reindex(columns=table.cols, fill_value=DASH).rename_axis(index=None)
    grid.columns = pd.MultiIndex.from_product([["$S$ (steps)"], grid.columns],
                                              names=[None, "" if table.spec.job == "recon" else r"$\eta$"])
    styler = grid.style.format(_cell, escape="latex").format_index(lambda r: _row(r, table), axis=0)
    return styler.to_latex(hrules=True, column_format="l" + "r" * len(table.cols), multicol_align="c").rstrip()


def table_tex(table: ReportTable) -> str:
    blocks = [(block.label, _tabular(table, block)) for block in table.blocks]
    return ENV.get_template("table.tex.j2").render(title=table.spec.title, key=table.key, blocks=blocks)


def standalone_tex(inputs: list[str]) -> str:
    return ENV.get_template("tables.tex.j2").render(inputs=inputs)
