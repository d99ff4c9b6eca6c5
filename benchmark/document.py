"""The document model shared by README.md and index.html: a page is a list of `Block`s (headings,
paragraphs, lists, `Table`s, images, audio players, links), `fmt` writes a value into a cell, and `markdown`
and `page` render the same blocks as Markdown and as a self-contained HTML page (`with_contents` adds a table
of contents before the first section)."""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Block:
    """One piece of the page: kind is h1/h2/h3, p, list, table, img, audio or links."""

    kind: str
    text: str = ""
    items: list[Any] | None = None
    table: Table | None = None
    src: str = ""


def fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{digits}g}"
    return str(v)


def markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append("#" * int(b.kind[1]) + " " + b.text)
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "list":
            out.append("\n".join(f"- {item}" for item in b.items))
        elif b.kind == "table":
            t = b.table
            cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731
            lines = ["| " + " | ".join(map(cell, t.header)) + " |", "|" + "---|" * len(t.header)]
            lines += ["| " + " | ".join(map(cell, r)) + " |" for r in t.rows]
            out.append("\n".join(lines))
        elif b.kind == "img":
            out.append(f"![{b.text}]({b.src})")
        elif b.kind == "toc":
            out.append("**Contents:** " + " · ".join(f"[{text}](#{a})" for text, a in b.items))
        elif b.kind == "audio":
            out.append(b.text + ": " + ", ".join(f"[{tag}]({src})" for tag, src in b.items))
        elif b.kind == "links":
            out.append(" · ".join(f"[{text}]({href})" for text, href in b.items))
    return "\n\n".join(out) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1200px;
padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
h3{font-size:1.05em;margin-top:1.2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}tr:nth-child(even) td{background:#fafafa}
img{border:1px solid #eee;margin:.4em 0}
.scroll{overflow-x:auto;max-width:100%}
.scroll td:first-child,.scroll th:first-child{position:sticky;left:0;z-index:1;background:#fff;
box-shadow:1px 0 0 #ccc}
.scroll th:first-child{background:#f4f4f4}
.fig{overflow-x:auto;max-width:100%}.fig img{max-width:none;height:auto}
nav#toc{background:#f8f8f8;border:1px solid #ddd;padding:.4em 1em;margin:1em 0;font-size:.9em}
nav#toc ul{columns:3;margin:.3em 0}
.audio{margin:.4em 0}.audio audio{height:2em;vertical-align:middle;margin-right:1em}
code{background:#f4f4f4;padding:0 .2em}
"""


def anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def contents(blocks: list[Block]) -> list[tuple[str, str]]:
    """(heading, anchor) of every h2, anchors made unique in order."""
    seen: dict[str, int] = {}
    out = []
    for b in blocks:
        if b.kind == "h2":
            a = anchor(b.text)
            seen[a] = seen.get(a, 0) + 1
            out.append((b.text, a if seen[a] == 1 else f"{a}-{seen[a]}"))
    return out


def with_contents(blocks: list[Block]) -> list[Block]:
    """A table of contents before the first h2 (README.md: a list of links to the sections)."""
    toc = contents(blocks)
    first = next((i for i, b in enumerate(blocks) if b.kind == "h2"), len(blocks))
    return [*blocks[:first], Block("toc", items=toc), *blocks[first:]]


def page(blocks: list[Block], title: str) -> str:
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{esc(title)}</title>",
           f"<style>{CSS}</style></head><body>"]
    anchors = iter(a for _, a in contents(blocks))
    for b in blocks:
        if b.kind == "h2":
            out.append(f'<h2 id="{esc(next(anchors))}">{esc(b.text)}</h2>')
        elif b.kind == "toc":
            out.append('<nav id="toc"><b>Contents</b><ul>' + "".join(f'<li><a href="#{esc(a)}">{esc(t)}</a></li>'
                                                                    for t, a in b.items) + "</ul></nav>")
        elif b.kind in ("h1", "h3"):
            out.append(f"<{b.kind}>{esc(b.text)}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{esc(b.text)}</p>")
        elif b.kind == "list":
            out.append("<ul>" + "".join(f"<li>{esc(str(i))}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table":
            t = b.table
            head = "".join(f"<th>{esc(h)}</th>" for h in t.header)
            body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in t.rows)
            out.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')
        elif b.kind == "img":
            out.append(f'<div class="fig"><a href="{esc(b.src)}" title="full size"><img src="{esc(b.src)}" '
                       f'alt="{esc(b.text)}" loading="lazy"></a></div>')
        elif b.kind == "audio":
            players = "".join(f'{esc(tag)} <audio controls preload="none" src="{esc(src)}"></audio>'
                              for tag, src in b.items)
            out.append(f'<div class="audio"><b>{esc(b.text)}</b><br>{players}</div>')
        elif b.kind == "links":
            out.append("<p>" + " · ".join(f'<a href="{esc(href)}">{esc(text)}</a>' for text, href in b.items)
                       + "</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"

