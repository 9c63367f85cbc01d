"""The report's documents: sections of paragraphs (str), bullet lists (list of str), tables and figures, rendered
through the jinja2 templates to Markdown (figures linked by relative path) and to one self-contained HTML page
(figures embedded as data URIs, tables by pandas' Styler), so both say the same.

Checking the LaTeX tables: compiled with pdflatex/latexmk when a TeX engine is on PATH, else a syntactic check
(balanced braces, matched environments, booktabs rules, the same number of cells in every row of a tabular).
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import tempfile
from collections import namedtuple
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup
from pandas.io.formats.style import Styler

VERDICT_CLASSES = {"PASS": "pass", "FAIL": "fail", "within noise": "noise", "not enough repeats": "na",
                   "not enough data": "na", "biased: see its -inf": "na",
                   "no verdict: uncalibrated": "na"}


Table = namedtuple("Table", "frame caption", defaults=[""])
Figure = namedtuple("Figure", "png caption pdf")  # written in the report's folder, as the documents


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    level: int = 2

    def add(self, *blocks) -> "Section":
        self.blocks.extend(blocks)
        return self


def _text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as display text ('' for a missing value)."""
    return frame.astype(object).map(lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))


def markdown_table(frame: pd.DataFrame) -> str:
    text = _text(frame).map(lambda v: v.replace("|", "\\|").replace("\n", " "))
    return text.to_markdown(index=False, disable_numparse=True)


def html_table(frame: pd.DataFrame) -> Markup:
    text = _text(frame)
    classes = text.map(lambda v: VERDICT_CLASSES.get(v, "text" if len(v) > 40 else ""))
    uuid = hashlib.sha1(text.to_csv().encode()).hexdigest()[:8]
    styler = Styler(text, uuid=uuid, cell_ids=False).hide(axis="index").format(escape="html")
    return Markup(styler.set_td_classes(classes).to_html())


ENV = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"),
                         autoescape=jinja2.select_autoescape(["html.j2"]), keep_trailing_newline=True,
                         undefined=jinja2.StrictUndefined)
ENV.filters.update(
    markdown_table=markdown_table, html_table=html_table,
    data_uri=lambda path: "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii"),
    anchor=lambda title: "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-"))
ENV.tests.update(table=lambda b: isinstance(b, Table), figure=lambda b: isinstance(b, Figure),
                 section=lambda b: isinstance(b, Section))


_TEXT = ENV.get_template("text.j2").module


def text(name: str, **values) -> str:
    """A piece of the report's fixed wording: the macro ``name`` of templates/text.j2, its lines joined into one."""
    return " ".join(filter(None, (line.strip() for line in getattr(_TEXT, name)(**values).splitlines())))


def write_document(sections: list[Section], path: Path, title: str | None = None) -> Path:
    """``path`` (.md or .html) from the template of its kind."""
    template = ENV.get_template(f"document{path.suffix}.j2")
    path.write_text(template.render(title=title, sections=sections), encoding="utf-8")
    return path


@dataclass
class LatexCheck:
    engine: str | None  # the TeX engine used, None when only the syntax was checked
    ok: bool
    problems: list[str] = field(default_factory=list)
    log: str = ""

    @property
    def summary(self) -> str:
        how = f"compiled with {self.engine}" if self.engine else "no TeX engine found (pdflatex/latexmk): syntax check only"
        return f"LaTeX {'OK' if self.ok else 'FAILED'} ({how})" + ("" if self.ok else ": " + "; ".join(self.problems))


def find_engine() -> str | None:
    return next((name for name in ("pdflatex", "latexmk") if shutil.which(name)), None)


def syntax_problems(text: str) -> list[str]:
    """Problems a LaTeX engine would report that can be found without one."""
    text = re.sub(r"(?<!\\)%.*", "", text)  # comments
    problems, depth = [], 0
    for match in re.finditer(r"(?<!\\)[{}]", text):
        depth += 1 if match.group() == "{" else -1
        if depth < 0:
            problems.append(f"unbalanced '}}' at character {match.start()}")
            break
    if depth > 0:
        problems.append(f"{depth} unclosed '{{'")
    stack = []
    for kind, name in re.findall(r"\\(begin|end)\{([^}]*)\}", text):
        if kind == "begin":
            stack.append(name)
        elif not stack or stack.pop() != name:
            problems.append(f"\\end{{{name}}} without a matching \\begin")
    if stack:
        problems.append("unclosed environments: " + ", ".join(stack))
    for spec, body in re.findall(r"\\begin\{tabular\}\{([^}]*)\}(.*?)\\end\{tabular\}", text, flags=re.S):
        ncols = len(re.findall(r"[lrc]", spec))
        problems += [f"tabular without \\{rule}" for rule in ("toprule", "midrule", "bottomrule")
                     if f"\\{rule}" not in body]
        for row in re.split(r"\\\\", body):
            row = re.sub(r"\\(toprule|midrule|bottomrule|cmidrule(\([^)]*\))?\{[^}]*\})", "", row).strip()
            spans = sum(int(k) - 1 for k in re.findall(r"\\multicolumn\{(\d+)\}", row))
            cells = len(re.findall(r"(?<!\\)&", row)) + 1 + spans
            if row and cells != ncols:
                problems.append(f"a row has {cells} cells, the tabular {ncols}: {row[:60]!r}")
    return problems


def check_latex(main: Path) -> LatexCheck:
    """Compile ``main`` (with the files it inputs, from its folder) in a temporary folder, or check its syntax."""
    engine = find_engine()
    files = [main] + [main.parent / (name if name.endswith(".tex") else f"{name}.tex")
                      for name in re.findall(r"\\input\{([^}]*)\}", main.read_text())]
    if engine is None:
        problems = []
        for f in files:
            problems += ([f"{f.name}: {p}" for p in syntax_problems(f.read_text())] if f.is_file()
                         else [f"{f.name} is missing"])
        return LatexCheck(None, not problems, problems)
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            shutil.copy(f, tmp)
        flags = ["-pdf"] if engine == "latexmk" else []
        try:
            proc = subprocess.run([engine, *flags, "-interaction=nonstopmode", "-halt-on-error", main.name], cwd=tmp,
                                  capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            return LatexCheck(engine, False, [f"{engine} timed out"])
        ok = proc.returncode == 0 and (Path(tmp) / (main.stem + ".pdf")).is_file()
        errors = [line for line in proc.stdout.splitlines() if line.startswith("!")]
        return LatexCheck(engine, ok, errors or ([] if ok else [f"{engine} exited {proc.returncode}"]), proc.stdout[-4000:])
