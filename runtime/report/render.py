"""The report's document as one self-contained HTML page, or as Markdown.

HTML: styles inline, plots as inline SVG, a Content-Security-Policy that forbids every fetch (so a
page that tried one would show it broken, not silently reach out), print-friendly. Markdown: the
same blocks, figures written as SVG files beside the .md and linked relatively (a repository shows
them; data URIs in Markdown are not rendered by GitHub).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from .doc import Bullets, Doc, Figure, KeyValues, Para, Table

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;color:#1b1f24;
background:#fff;line-height:1.4;font-size:14px}
header{background:#0f3d5e;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px 0;font-size:22px} header p{margin:0;opacity:.85;font-size:12px;word-break:break-all}
nav{padding:8px 28px;background:#eef3f7;border-bottom:1px solid #d0dae3;font-size:13px}
nav a{margin-right:14px;color:#0f3d5e;text-decoration:none}
main{padding:4px 28px 40px 28px;max-width:1400px}
section{margin-top:22px} h2{font-size:18px;border-bottom:2px solid #0f3d5e;padding-bottom:3px;color:#0f3d5e}
table{border-collapse:collapse;margin:8px 0 12px 0;font-size:12.5px}
th,td{border:1px solid #cfd8e0;padding:3px 7px;vertical-align:top;text-align:left}
th{background:#eef3f7} td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
caption{caption-side:bottom;font-size:11.5px;color:#555;text-align:left;padding-top:3px}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:3px 16px;margin:8px 0}
dl.kv dt{font-weight:600;color:#33414e} dl.kv dd{margin:0;word-break:break-word}
figure{margin:10px 0 16px 0} figure svg{max-width:100%;height:auto} figcaption{font-size:12px;color:#555}
ul.warning li{color:#8a4b00} ul.warning{background:#fff6e5;border:1px solid #f0c36d;padding:8px 8px 8px 28px}
@media print{nav{display:none} section{break-inside:avoid-page}}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:"


def _cells(t: Table, row: list[str], tag: str) -> str:
    out = []
    for i, v in enumerate(row):
        cls = ' class="n"' if tag == "td" and i in t.numeric else ""
        out.append(f"<{tag}{cls}>{html.escape(v)}</{tag}>")
    return "".join(out)


def to_html(doc: Doc) -> str:
    """One HTML page, no external reference of any kind."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(doc.title)}</title><style>{CSS}</style></head><body>",
             f"<header><h1>{html.escape(doc.title)}</h1><p>{html.escape(doc.subtitle)}</p></header>",
             "<nav>" + "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in doc.sections) + "</nav>",
             "<main>"]
    for s in doc.sections:
        parts.append(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>')
        for b in s.blocks:
            if isinstance(b, Para):
                parts.append(f"<p>{html.escape(b.text)}</p>")
            elif isinstance(b, KeyValues):
                parts.append('<dl class="kv">' + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                                                          for k, v in b.pairs) + "</dl>")
            elif isinstance(b, Table):
                cap = f"<caption>{html.escape(b.caption)}</caption>" if b.caption else ""
                parts.append(f"<table>{cap}<thead><tr>{_cells(b, b.headers, 'th')}</tr></thead><tbody>"
                             + "".join(f"<tr>{_cells(b, r, 'td')}</tr>" for r in b.rows) + "</tbody></table>")
            elif isinstance(b, Figure):
                cap = f"<figcaption>{html.escape(b.caption)}</figcaption>" if b.caption else ""
                parts.append(f'<figure role="img" aria-label="{html.escape(b.alt)}">{b.svg}{cap}</figure>')
            elif isinstance(b, Bullets):
                cls = ' class="warning"' if b.kind == "warning" else ""
                parts.append(f"<ul{cls}>" + "".join(f"<li>{html.escape(i)}</li>" for i in b.items) + "</ul>")
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Doc, out: str | os.PathLike[str]) -> tuple[str, dict[Path, str]]:
    """(Markdown text, {figure path: SVG text}) - the figures go to ``<out stem>_figures/``."""
    out = Path(out)
    fig_dir = out.parent / f"{out.stem}_figures"
    figures: dict[Path, str] = {}
    lines = [f"# {doc.title}", "", f"_{doc.subtitle}_", ""]
    lines += [f"- [{s.title}](#{s.id})" for s in doc.sections] + [""]
    for s in doc.sections:
        lines += [f'<a id="{s.id}"></a>', f"## {s.title}", ""]
        for b in s.blocks:
            if isinstance(b, Para):
                lines += [b.text, ""]
            elif isinstance(b, KeyValues):
                lines += ["| | |", "|---|---|"]
                lines += [f"| **{_md_escape(k)}** | {_md_escape(v)} |" for k, v in b.pairs] + [""]
            elif isinstance(b, Table):
                lines += ["| " + " | ".join(_md_escape(h) or " " for h in b.headers) + " |",
                          "|" + "|".join("---:" if i in b.numeric else "---" for i in range(len(b.headers))) + "|"]
                lines += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in b.rows]
                lines += ([f"_{b.caption}_"] if b.caption else []) + [""]
            elif isinstance(b, Figure):
                path = fig_dir / f"{s.id}-{len(figures) + 1}.svg"
                figures[path] = b.svg
                lines += [f"![{b.alt}]({fig_dir.name}/{path.name})", ""] + ([f"_{b.caption}_", ""] if b.caption else [])
            elif isinstance(b, Bullets):
                prefix = "**warning:** " if b.kind == "warning" else ""
                lines += [f"- {prefix}{i}" for i in b.items] + [""]
    return "\n".join(lines) + "\n", figures
