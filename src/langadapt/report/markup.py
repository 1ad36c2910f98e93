"""Small HTML helpers for the report: escaped tables, number formats, sections."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import Any


def escape(text: Any) -> str:
    return html.escape(str(text), quote=True)


def table(columns: list[str], rows: list[list[Any]], *, show_header: bool = True, raw: bool = False,
          row_classes: list[str] | None = None) -> str:
    """An HTML table; cells are escaped unless `raw` (for cells this package built itself)."""
    head = "<thead><tr>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr></thead>" if show_header else ""
    cell = (lambda v: str(v)) if raw else escape
    classes = row_classes or [""] * len(rows)
    body = "".join(f"<tr{_class(css)}>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                   for row, css in zip(rows, classes, strict=True))
    return f"<table>{head}<tbody>{body}</tbody></table>"


def section(heading: str, body: str, css: str = "") -> str:
    return f"<section{_class(css)}><h2>{escape(heading)}</h2>{body}</section>"


def _class(css: str) -> str:
    return f' class="{escape(css)}"' if css else ""


def columns_of(dicts: Iterable[dict[str, Any]]) -> list[str]:
    """The keys of all `dicts`, in first-seen order."""
    columns: list[str] = []
    for values in dicts:
        columns += [key for key in values if key not in columns]
    return columns


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def signed(value: Any, digits: int = 4) -> str:
    """A change: '+0.25', '−1.5' (a real minus sign), '0'."""
    if not is_number(value):
        return "—"
    return f"{value:+.{digits}g}".replace("-", "−") if value != 0 else "0"


def span(low: Any, high: Any, *, sign: bool = False) -> str:
    """'[low, high]' to 3 significant digits (signed for changes), or '' when there is no interval."""
    if not (is_number(low) and is_number(high)):
        return ""
    if sign:
        return f"[{signed(low, 3)}, {signed(high, 3)}]"
    return f"[{low:.3g}, {high:.3g}]"


def timestamp(value: Any) -> str:
    """'2026-12-01T13:16:24+00:00' → '2026-12-01 13:16:24' (manifests are written in UTC)."""
    return str(value or "").replace("T", " ").split("+")[0]


def pct(value: Any) -> str:
    return f"{100 * value:.2f} %" if is_number(value) else "—"


def seconds(value: Any) -> str:
    return f"{value:.1f} s" if is_number(value) else ""


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }}
td:not(:last-child) {{ white-space: nowrap; }}
th {{ background: #f4f4f4; }}
section {{ margin-bottom: 2rem; overflow-x: auto; }}
figure.plot svg {{ max-width: 100%; height: auto; }}
small {{ color: #666; }}
tr.regression td {{ background: #fde2e2; color: #a00; font-weight: 600; }}
tr.better td {{ background: #e6f4ea; }}
span.regression {{ color: #b00; font-weight: 600; }}
span.better {{ color: #176c2f; }}
section.warnings {{ border: 2px solid #c00; background: #fff2f2; padding: 0.2rem 1rem; }}
section.warnings h2, p.warning {{ color: #a00; }}
p.warning {{ font-weight: 600; border-left: 4px solid #c00; padding-left: 0.6rem; }}
div.gen {{ white-space: pre-wrap; overflow-wrap: anywhere; max-width: 24rem; font-size: 0.85rem; }}
</style></head>
<body><h1>{title}</h1>
{body}
<p><small>generated {generated} by langadapt from {source}</small></p>
</body></html>
"""


def page(title: str, body: str, source: str) -> str:
    """A self-contained HTML page (inline CSS, no outside request): the run report and the sweep page."""
    from langadapt.runstore import now_iso

    return _PAGE.format(title=escape(title), body=body, source=escape(source), generated=escape(now_iso()))
