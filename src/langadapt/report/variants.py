"""The comparison table of a sweep, in the shape of the LEP paper's Tables 2–3: one row per variant.

Columns: the swept keys' values; the vocab stage's chars/token ratio (new ÷ original) per eval source; the
final evaluated model's bits/char per eval source (with its interval when the eval report carries one),
multiple-choice and copy scores; wall time. A stage shared by several variants (same config, same inputs:
one folder in `.shared/`) is counted once: a variant's `wall` is the time of the stages only it needed,
`shared` names the others. Everything is read from `sweep.json` and the variants' manifests, so the table
can be rebuilt at any time: `variants.md` / `variants.csv` / `report.html` in the sweep folder, and a section
of each variant's HTML report.
"""

from __future__ import annotations

import csv
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langadapt.pipeline import pipeline_order
from langadapt.report.markup import page
from langadapt.runstore import read_json, read_manifest, write_text_atomic

SWEEP_FILE = "sweep.json"  # = langadapt.sweep.store.SWEEP_FILE (the report does not import the runner)
VARIANTS_DIR = "variants"
SCORE_PREFIXES = ("mc:", "copy:", "gen:")
REFERENCE_LABELS = {"base": "original", "instruct": "instruct sibling"}


@dataclass
class Row:
    name: str
    values: dict[str, str]  # swept key -> its value as shown
    model: str = ""  # the evaluated model the numbers are of (the run's last)
    status: str = "not run"
    ratios: dict[str, float] = field(default_factory=dict)  # "<source> ×chars/tok" -> new ÷ original
    bpc: dict[str, tuple[float, tuple[float, float] | None]] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    own_seconds: float = 0.0
    shared: list[str] = field(default_factory=list)  # stages whose folder other variants use too


@dataclass
class Comparison:
    name: str
    keys: list[str]
    rows: list[Row]
    references: list[Row]  # the original (`base`) and the instruct sibling (`instruct`) when evaluated: shared rows
    seconds: float  # every stage folder once: what the sweep cost
    unshared_seconds: float  # what the variants would have cost one by one

    def columns(self, group: str) -> list[str]:
        rows = [*self.references, *self.rows]
        return list(dict.fromkeys(key for row in rows for key in getattr(row, group)))


def sweep_root_of(run_dir: str | Path) -> Path | None:
    """The sweep folder `run_dir` is a variant of, if any."""
    run_dir = Path(run_dir)
    root = run_dir.parent.parent
    return root if run_dir.parent.name == VARIANTS_DIR and (root / SWEEP_FILE).is_file() else None


def load_comparison(root: str | Path) -> Comparison:
    root = Path(root)
    sweep = read_json(root / SWEEP_FILE)
    order = pipeline_order()
    folders: dict[str, dict[str, Path]] = {}  # variant -> stage -> its folder, resolved
    rows: list[Row] = []
    references: dict[str, Row] = {}
    for entry in sweep["variants"]:
        run = root / VARIANTS_DIR / entry["name"]
        folders[entry["name"]] = {stage: (run / stage).resolve() for stage in order if read_manifest(run / stage)}
    uses: dict[Path, int] = {}
    for stages in folders.values():
        for folder in stages.values():
            uses[folder] = uses.get(folder, 0) + 1
    walls = {folder: float(read_manifest(folder)["wall_seconds"] or 0) for folder in uses}
    for entry in sweep["variants"]:
        row = Row(entry["name"], entry["labels"])
        stages = folders[entry["name"]]
        manifests = {stage: read_manifest(folder) or {} for stage, folder in stages.items()}
        row.status = "complete" if "eval" in manifests else f"{len(manifests)} stage(s)" if manifests else "not run"
        summary = manifests.get("vocab", {}).get("metrics", {}).get("summary", {})
        row.ratios = {k: v for k, v in summary.items() if k.endswith("×chars/tok")}
        evaluated = manifests.get("eval", {}).get("metrics", {})
        models, figures = evaluated.get("models", {}), evaluated.get("figures", {})
        if models:
            row.model = list(models)[-1]
            _fill_scores(row, models[row.model], figures.get(row.model, {}))
            for name in ("base", "instruct"):
                if name not in references and name in models:
                    references[name] = _fill_scores(Row(f"{REFERENCE_LABELS[name]} (models.{name})", {}, name,
                                                        "reference"), models[name], figures.get(name, {}))
        row.own_seconds = sum(walls[f] for f in stages.values() if uses[f] == 1)
        row.shared = [stage for stage, f in stages.items() if uses[f] > 1]
        rows.append(row)
    return Comparison(sweep["name"], list(sweep["keys"]), rows, list(references.values()), sum(walls.values()),
                      sum(walls[f] for stages in folders.values() for f in stages.values()))


def _fill_scores(row: Row, headline: dict[str, Any], figures: dict[str, dict[str, Any]]) -> Row:
    """Headline numbers; bits/char with the 95 % interval the eval manifest's `figures` give (if any)."""
    for key, value in headline.items():
        if key.endswith(" bpc") and _number(value):
            figure = figures.get(key, {})
            interval = (float(figure["low"]), float(figure["high"])) if "low" in figure and "high" in figure else None
            row.bpc[key] = (value, interval)
        elif key.startswith(SCORE_PREFIXES) and _number(value):
            row.scores[key] = value
    return row


# --------------------------------------------------------------------------------------------------------
# Rendering: cells, Markdown, CSV, HTML.
# --------------------------------------------------------------------------------------------------------


def table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and text cells, the reference row first."""
    ratios, bpc, scores = (comparison.columns(g) for g in ("ratios", "bpc", "scores"))
    header = ["variant", *comparison.keys, "model", *ratios, *bpc, *scores, "wall", "shared"]
    cells = []
    for row in [*comparison.references, *comparison.rows]:
        is_reference = row in comparison.references
        cells.append([
            row.name, *[row.values.get(k, "") for k in comparison.keys],
            row.model if row.model or is_reference else row.status,
            *[_fmt(row.ratios.get(k)) for k in ratios],
            *[_with_interval(row.bpc.get(k)) for k in bpc],
            *[_fmt(row.scores.get(k)) for k in scores],
            "" if is_reference else _seconds(row.own_seconds),
            "" if is_reference else ", ".join(row.shared),
        ])
    return header, cells


def footnote(comparison: Comparison) -> str:
    return (f"{len(comparison.rows)} variants; stage time {_seconds(comparison.seconds)} with shared stages counted "
            f"once ({_seconds(comparison.unshared_seconds)} if each variant had made its own). 'wall': the stages "
            "only that variant needed; 'shared': stage folders it uses with other variants. Lower bits/char is "
            "better; intervals where the eval report gives them.")


def markdown(comparison: Comparison) -> str:
    header, cells = table(comparison)
    lines = [f"# Sweep {comparison.name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join([*lines, "", footnote(comparison), ""])


def csv_text(comparison: Comparison) -> str:
    """One column per number (bits/char with `low` / `high` columns), seconds unrounded."""
    ratios, bpc, scores = (comparison.columns(g) for g in ("ratios", "bpc", "scores"))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["variant", *comparison.keys, "model", *ratios,
                     *[f"{k}{suffix}" for k in bpc for suffix in ("", " low", " high")], *scores,
                     "wall_seconds", "shared_stages"])
    for row in [*comparison.references, *comparison.rows]:
        bpc_cells = []
        for key in bpc:
            value, interval = row.bpc.get(key, (None, None))
            bpc_cells += [value, *(interval or (None, None))]
        writer.writerow([row.name, *[row.values.get(k, "") for k in comparison.keys],
                         row.model, *[row.ratios.get(k) for k in ratios], *bpc_cells,
                         *[row.scores.get(k) for k in scores],
                         "" if row in comparison.references else round(row.own_seconds, 3), " ".join(row.shared)])
    return buffer.getvalue()


def html_table(comparison: Comparison, current: str | None = None) -> str:
    header, cells = table(comparison)
    head = "".join(f"<th>{_e(c)}</th>" for c in header)
    body = "".join(
        "<tr>" + "".join(f"<td><b>{_e(c)}</b></td>" if row[0] == current else f"<td>{_e(c)}</td>" for c in row)
        + "</tr>" for row in cells)
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<p><small>{_e(footnote(comparison))}</small></p>"
    )


def variants_section(run_dir: str | Path) -> str:
    """The report section of a sweep variant: the whole sweep's table, this variant in bold ("" otherwise)."""
    root = sweep_root_of(run_dir)
    if root is None:
        return ""
    comparison = load_comparison(root)
    return ("<section><h2>Sweep variants</h2>"
            f"<p>This run is variant <b>{_e(Path(run_dir).name)}</b> of sweep {_e(comparison.name)} "
            f"(<code>{_e(str(root))}</code>); the table as of this report.</p>"
            + html_table(comparison, current=Path(run_dir).name) + "</section>")


def sweep_page(root: str | Path) -> str:
    root = Path(root)
    comparison = load_comparison(root)
    links = []
    for row in comparison.rows:
        report = root / VARIANTS_DIR / row.name / "report" / "report.html"
        if report.is_file():
            links.append(f'<li><a href="{_e(os.path.relpath(report, root))}">{_e(row.name)}</a></li>')
    listing = f"<h2>Variant reports</h2><ul>{''.join(links)}</ul>" if links else ""
    return page(f"langadapt sweep — {comparison.name}", html_table(comparison) + listing,
                "the variants' stage manifests")


def write_tables(root: str | Path) -> list[Path]:
    """`variants.md`, `variants.csv` and `report.html` in the sweep folder."""
    root = Path(root)
    comparison = load_comparison(root)
    written = []
    for name, text in (("variants.md", markdown(comparison)), ("variants.csv", csv_text(comparison)),
                       ("report.html", sweep_page(root))):
        write_text_atomic(root / name, text)
        written.append(root / name)
    return written


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _with_interval(cell: tuple[float, tuple[float, float] | None] | None) -> str:
    if cell is None:
        return ""
    value, interval = cell
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def _e(text: str) -> str:
    return html.escape(text, quote=True)
