"""HTML assembly of the report: one self-contained page (inline CSS, figures as base64 PNG, no
network), built from sections of escaped HTML fragments.

Each figure is a `<figure class="plot" data-plot=NAME>`; the `<body>` declares how many there
are (`data-figures-declared`). A small inline script, on the page's `load` event, marks each
figure `data-rendered="true"` when its image decoded to a non-zero size (else "false") and sets
`data-figures-rendered` on the body, so a headless browser can check that every plot rendered.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

from matplotlib.figure import Figure

from lingcoder.report.plots import png

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1160px;
       padding: 0 24px 48px; color: #222; line-height: 1.45; }
h1 { margin-top: 28px; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 40px; }
nav ul { columns: 2; } .status { font-size: 0.85em; color: #666; }
figure.plot { margin: 18px 0; } figure.plot img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #555; }
table { border-collapse: collapse; margin: 12px 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; } th { background: #f4f4f4; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { background: #f7f7f7; border-left: 4px solid #bbb; padding: 8px 12px; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 0.85em; }
"""

RENDER_CHECK = """
window.addEventListener("load", function () {
  var rendered = 0;
  document.querySelectorAll("figure.plot").forEach(function (figure) {
    var img = figure.querySelector("img");
    var ok = !!img && img.complete && img.naturalWidth > 0 && img.naturalHeight > 0;
    figure.setAttribute("data-rendered", ok ? "true" : "false");
    if (ok) { rendered += 1; }
  });
  document.body.setAttribute("data-figures-rendered", String(rendered));
});
"""


@dataclass
class Section:
    anchor: str
    title: str
    parts: list[str] = field(default_factory=list)  # HTML fragments, in order
    ran: bool = True  # False: the stage's files are absent and the section is a "not run" note

    def figure(self, name: str, fig: Figure, caption: str) -> None:
        self.parts.append(figure_html(name, png(fig), caption))

    def text(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def table(self, header: list[str], rows: list[list], caption: str = "") -> None:
        self.parts.append(table_html(header, rows, caption))

    def details(self, summary: str, inner: str) -> None:
        self.parts.append(f"<details><summary>{html.escape(summary)}</summary>{inner}</details>")


def not_run(anchor: str, title: str, reason: str) -> Section:
    section = Section(anchor, title, ran=False)
    section.note(f"Not run: {reason}")
    return section


def figure_html(name: str, png_bytes: bytes, caption: str) -> str:
    data = base64.b64encode(png_bytes).decode("ascii")
    return (f'<figure class="plot" data-plot="{html.escape(name)}"><img alt="{html.escape(caption)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def table_html(header: list[str], rows: list[list], caption: str = "") -> str:
    """A table; numbers are right-aligned, everything is escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for value in row:
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            text = f"{value:,}" if isinstance(value, int) and numeric else str(value)
            cells.append(f'<td class="num">{html.escape(text)}</td>' if numeric else f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def preformatted(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def render_page(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole page: title, a table of contents (with each section's status), the sections."""
    figures = sum(part.startswith('<figure class="plot"') for s in sections for part in s.parts)
    toc = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a>'
                  f'{"" if s.ran else " <span class=status>(not run)</span>"}</li>' for s in sections)
    body = "".join(f'<section id="{s.anchor}" data-ran="{str(s.ran).lower()}"><h2>{html.escape(s.title)}</h2>'
                   f'{"".join(s.parts)}</section>' for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f'<body data-figures-declared="{figures}"><h1>{html.escape(title)}</h1>'
            f'<p class="status">{html.escape(subtitle)}</p><nav><ul>{toc}</ul></nav>{body}'
            f"<script>{RENDER_CHECK}</script></body></html>\n")
