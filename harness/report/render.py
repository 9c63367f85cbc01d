"""The report's documents: sections of paragraphs (str), bullet lists (list of str), tables and figures, rendered
through the jinja2 templates to Markdown (figures linked by relative path) and to one self-contained HTML page
(figures embedded as data URIs, tables by pandas' Styler), so both say the same."""

from __future__ import annotations

import base64
import hashlib
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
