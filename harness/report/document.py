"""A minimal document model (sections of paragraphs, lists, tables and figures) that the templates render to
Markdown and to one self-contained HTML page, so both show the same content."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Para:
    text: str
    kind: str = "para"


@dataclass
class Bullets:
    items: list[str]
    kind: str = "bullets"


@dataclass
class Table:
    frame: pd.DataFrame
    caption: str = ""
    kind: str = "table"


@dataclass
class Figure:
    png: Path
    caption: str
    pdf: Path | None = None
    kind: str = "figure"


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    level: int = 2
    kind: str = "section"

    def add(self, *blocks) -> "Section":
        self.blocks.extend(blocks)
        return self
