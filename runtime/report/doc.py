"""The report as a small document model, so HTML and Markdown say the same thing.

``build`` fills a :class:`Doc` from records and measurements; ``render`` turns it into one
self-contained HTML page or a Markdown file. Blocks are plain data: a paragraph, a key-value list,
a table, a figure (SVG text) or a list of warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Para:
    text: str


@dataclass
class KeyValues:
    pairs: list[tuple[str, str]]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    numeric: tuple[int, ...] = ()  # column indices right-aligned


@dataclass
class Figure:
    svg: str
    alt: str
    caption: str = ""


@dataclass
class Bullets:
    items: list[str]
    kind: str = "plain"  # "warning": shown as warnings


Block = Para | KeyValues | Table | Figure | Bullets


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self


@dataclass
class Doc:
    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)

    def section(self, sid: str, title: str) -> Section:
        s = Section(sid, title)
        self.sections.append(s)
        return s
