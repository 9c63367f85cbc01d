"""A minimal document model (sections of paragraphs, lists, tables and figures) that the writers render to
Markdown and to one self-contained HTML page, so both show the same content."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    frame: pd.DataFrame
    caption: str = ""


@dataclass
class Figure:
    png: Path
    caption: str
    pdf: Path | None = None


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    level: int = 2

    def add(self, *blocks) -> "Section":
        self.blocks.extend(blocks)
        return self


@dataclass
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)
