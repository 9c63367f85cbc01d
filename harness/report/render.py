"""Rendering the document model through the package's jinja2 templates: Markdown (figures linked by relative path),
one self-contained HTML page (figures embedded as data URIs; tables by pandas' Styler), and CSV files."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import jinja2
from markupsafe import Markup
import pandas as pd
from pandas.io.formats.style import Styler

from .document import Section

VERDICT_CLASSES = {"PASS": "pass", "FAIL": "fail", "within noise": "noise", "not enough repeats": "na",
                   "not enough data": "na"}


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


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def anchor(title: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")


@jinja2.pass_context
def relative(context, path: Path) -> str:
    return Path(os.path.relpath(path, context["base"])).as_posix()


ENV = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"),
                         autoescape=jinja2.select_autoescape(["html.j2"]), keep_trailing_newline=True,
                         undefined=jinja2.StrictUndefined)
ENV.filters.update(markdown_table=markdown_table, html_table=html_table, data_uri=data_uri, anchor=anchor,
                   relative=relative)


def write_markdown(sections: list[Section], path: Path, title: str | None = None) -> Path:
    text = ENV.get_template("document.md.j2").render(title=title, sections=sections, base=path.parent)
    path.write_text(text, encoding="utf-8")
    return path


def write_html(sections: list[Section], path: Path, title: str) -> Path:
    path.write_text(ENV.get_template("document.html.j2").render(title=title, sections=sections), encoding="utf-8")
    return path


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path
