"""Rendering the document model: Markdown (figures linked by relative path), one self-contained HTML page (figures
embedded as base64 data URIs), and CSV files."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

import pandas as pd

from .document import Bullets, Document, Figure, Para, Section, Table

VERDICT_CLASSES = {"PASS": "pass", "FAIL": "fail", "not enough runs": "na"}


def _md_cell(value) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(_md_cell(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_md_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def markdown_blocks(blocks: list, base: Path) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            out.append((f"**{b.caption}**\n\n" if b.caption else "") + markdown_table(b.frame))
        elif isinstance(b, Figure):
            link = f" ([PDF]({_rel(b.pdf, base)}))" if b.pdf else ""
            out.append(f"![{b.caption}]({_rel(b.png, base)})\n\n*{b.caption}*{link}")
        elif isinstance(b, Section):
            out.append(markdown_section(b, base))
    return "\n\n".join(out)


def markdown_section(section: Section, base: Path) -> str:
    return f"{'#' * section.level} {section.title}\n\n{markdown_blocks(section.blocks, base)}"


def markdown_document(doc: Document, base: Path) -> str:
    return f"# {doc.title}\n\n" + "\n\n".join(markdown_section(s, base) for s in doc.sections) + "\n"


def write_markdown(sections: list[Section] | Document, path: Path, title: str | None = None) -> Path:
    base = path.parent
    if isinstance(sections, Document):
        text = markdown_document(sections, base)
    else:
        text = (f"# {title}\n\n" if title else "") + "\n\n".join(markdown_section(s, base) for s in sections) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right;vertical-align:top}
th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
td.text{text-align:left}
td.pass{background:#dff3df;font-weight:bold}td.fail{background:#f8dcdc;font-weight:bold}td.na{background:#eee}
figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}
figcaption{font-style:italic;color:#444}
.caption{font-weight:bold;margin-top:1em}
code{background:#f4f4f4}
"""


def _html_cell(value) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    cls = VERDICT_CLASSES.get(text)
    if cls is None and len(text) > 40:
        cls = "text"
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{html.escape(text)}</td>"


def html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(_html_cell(v) for v in row) + "</tr>" for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def html_blocks(blocks: list) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Para):
            out.append(f"<p>{html.escape(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            cap = f'<div class="caption">{html.escape(b.caption)}</div>' if b.caption else ""
            out.append(cap + html_table(b.frame))
        elif isinstance(b, Figure):
            out.append(f'<figure><img alt="{html.escape(b.caption)}" src="{data_uri(b.png)}">'
                       f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")
        elif isinstance(b, Section):
            out.append(html_section(b))
    return "\n".join(out)


def _anchor(title: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")


def html_section(section: Section) -> str:
    level = min(section.level, 6)
    return f'<section id="{_anchor(section.title)}"><h{level}>{html.escape(section.title)}</h{level}>\n' \
           f"{html_blocks(section.blocks)}</section>"


def write_html(doc: Document, path: Path) -> Path:
    toc = "".join(f'<li><a href="#{_anchor(s.title)}">{html.escape(s.title)}</a></li>' for s in doc.sections)
    body = "\n".join(html_section(s) for s in doc.sections)
    text = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(doc.title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{html.escape(doc.title)}</h1><ul>{toc}</ul>\n{body}\n</body></html>\n")
    path.write_text(text, encoding="utf-8")
    return path


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path
