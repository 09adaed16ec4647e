"""HTML pages that stand alone: one stylesheet, figures embedded as data URIs, tables a click sorts (the only
script, a few lines), nothing fetched from the network, so a page opens from file:// anywhere and reads on a
laptop and a phone. The building blocks the report pages share (escaping, tables, figures, the page itself).
"""

from __future__ import annotations

import base64
import html
import math

STYLE = """
:root { color-scheme: light; --ink: #1f2328; --soft: #59636e; --line: #d1d9e0; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); }
main { max-width: 1180px; margin: 0 auto; padding: 12px 16px 48px; }
h1 { font-size: 1.6em; margin: 0.4em 0 0.2em; overflow-wrap: anywhere; }
h2 { font-size: 1.25em; margin: 1.6em 0 0.5em; padding-bottom: 0.2em; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05em; margin: 1.2em 0 0.3em; }
p, li { max-width: 60em; }
nav { font-size: 0.92em; margin: 0.4em 0 0.8em; }
nav a { margin-right: 0.9em; white-space: nowrap; }
.banner { padding: 10px 14px; border-radius: 6px; margin: 10px 0; border: 1px solid; }
.banner.complete { background: #dafbe1; border-color: #4ac26b; }
.banner.bad { background: #ffebe9; border-color: #ff8182; }
.banner.warn { background: #fff8c5; border-color: #d4a72c; }
.note { color: var(--soft); font-size: 0.92em; }
.big { font-size: 1.5em; font-weight: 600; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.9em; margin: 6px 0; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: var(--soft); font-size: 0.8em; }
table.facts th { width: 11em; }
table.facts td { overflow-wrap: anywhere; }
figure { margin: 10px 0 18px; }
.figs { display: flex; flex-wrap: wrap; gap: 0 20px; align-items: flex-start; }
.figs figure { flex: 1 1 100%; min-width: 0; }
.figs figure.narrow { flex: 0 1 360px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--soft); font-size: 0.9em; margin-top: 2px; }
pre { background: var(--bg); padding: 8px 10px; border-radius: 6px; overflow-x: auto; font-size: 0.85em;
      max-height: 32em; }
details > summary { cursor: pointer; color: var(--soft); }
.hint { display: none; }
@media (max-width: 700px) {
  body { font-size: 14px; } main { padding: 8px 8px 40px; } th, td { padding: 2px 5px; }
  .figs figure.wide { overflow-x: auto; }
  .figs figure.wide img { max-width: none; width: 820px; }
  .hint { display: inline; }
}
"""

# Click a header to sort by that column (numbers, from data-v, by value before text); click again to reverse.
SORT_SCRIPT = """
for (const th of document.querySelectorAll("table.sortable th")) th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], i = th.cellIndex, up = th.dataset.dir !== "up";
  const key = r => { const c = r.cells[i]; return c.dataset.v !== undefined ? [0, +c.dataset.v] : [1, c.textContent]; };
  const rows = [...body.rows].sort((a, b) => { const [p, x] = key(a), [q, y] = key(b);
    return (p - q || (x < y ? -1 : x > y ? 1 : 0)) * (up ? 1 : -1); });
  th.dataset.dir = up ? "up" : "down"; rows.forEach(r => body.appendChild(r)); });
"""


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, sortable: bool = False) -> str:
    script = f"<script>{SORT_SCRIPT}</script>" if sortable else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
            f"{script}\n</body>\n</html>\n")


def data_uri(content: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64,{base64.b64encode(content).decode('ascii')}"


def figure(content: bytes, alt: str, caption: str = "", link: str | None = None, kind: str = "png",
           narrow: bool = False) -> str:
    """An embedded image with its caption; `link` (a file beside the page) opens it at full size. Inside a
    <div class="figs">, narrow figures sit side by side where the screen is wide enough."""
    img = f'<img src="{data_uri(content, kind)}" alt="{esc(alt)}">'
    if link:
        img = f'<a href="{esc(link)}">{img}</a>'
    tap = ", or tap to open the image" if link else ""
    hint = "" if narrow else f' <span class="hint">(scroll sideways{tap})</span>'
    cap = f"<figcaption>{caption}{hint}</figcaption>" if caption else ""
    return f'<figure class="{"narrow" if narrow else "wide"}">{img}{cap}</figure>'


def cell(value, numeric: bool | None = None, shown: str | None = None, style: str = "") -> str:
    """A <td>: numbers right-aligned and sorted by value (data-v), None as '-'."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool) if numeric is None else numeric
    text = shown if shown is not None else ("-" if value is None else str(value))
    attrs = ' class="num"' if is_number else ""
    if is_number and value is not None and not (isinstance(value, float) and math.isnan(value)):
        attrs += f' data-v="{value!r}"'
    if style:
        attrs += f' style="{esc(style)}"'
    return f"<td{attrs}>{esc(text)}</td>"


def table(headers: list[str], rows: list[list[str]], sortable: bool = False, cls: str = "") -> str:
    """Headers as text; each row's cells already rendered by `cell` (or raw <td> HTML)."""
    classes = " ".join(c for c in (cls, "sortable" if sortable else "") if c)
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    attr = f' class="{classes}"' if classes else ""
    return f'<div class="scroll"><table{attr}><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>'


def facts(pairs: list[tuple[str, object]]) -> str:
    """A two-column table of labelled values (empty values left out)."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs if v not in (None, ""))
    return f'<div class="scroll"><table class="facts"><tbody>{rows}</tbody></table></div>'


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"
