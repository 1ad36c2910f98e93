"""Evaluate one model on every task the `eval:` section asks for and return one JSON-ready report.

The report's `headline` is a flat label → number mapping (`<source> bpc`, `mc:<task> <scoring>`, ...) that
`langadapt eval compare` tabulates across models.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from langadapt.evaluate.config import EvalConfig
from langadapt.evaluate.tasks import EvalModel, EvalTask, ModelSpec

log = logging.getLogger("langadapt.eval")

PreparedTask = tuple[EvalTask[Any, Any], Any, Any]  # (task, its setting, its inputs read once per run)


def read_text_file(path: str | Path, field: str = "text", limit: int | None = None) -> list[str]:
    """Texts of a .jsonl[.gz] / .txt[.gz] / .parquet file (the data layer's readers), the first `limit`."""
    from itertools import islice

    from langadapt.data.config import SourceConfig
    from langadapt.data.sources import iter_documents

    source = SourceConfig(path=str(Path(path).resolve()), text_field=field)
    return list(islice(iter_documents(source, Path(path).name), limit))


def evaluate_model(spec: ModelSpec, section: EvalConfig, tasks: list[PreparedTask], *, target_language: str,
                   trust_remote_code: bool = False) -> dict[str, Any]:
    """Load `spec`'s model once and run every prepared task on it; returns the report."""
    from langadapt.models import load_model, load_tokenizer, model_summary, resolve

    folder = resolve(spec.ref, trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(spec.tokenizer or folder, trust_remote_code=trust_remote_code)
    model = load_model(folder, dtype=section.dtype, trust_remote_code=trust_remote_code).eval()
    loaded = EvalModel(spec, model, tokenizer, section, target_language)
    report: dict[str, Any] = {"model": spec.label, "ref": str(spec.ref), "chat": spec.chat, **model_summary(model)}
    headline: dict[str, float] = {}
    for task, setting, inputs in tasks:
        output = task.run(setting, inputs, loaded)
        report[task.key] = output.report
        headline.update(output.headline)
    report["headline"] = headline
    del loaded, model
    return report


def comparison_rows(reports: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """One row per model, one column per headline metric (in first-seen order)."""
    columns: list[str] = []
    for report in reports:
        columns += [key for key in report.get("headline", {}) if key not in columns]
    rows = [[report.get("model", "?"), *[report.get("headline", {}).get(c, "") for c in columns]] for report in reports]
    return ["model", *columns], rows


def comparison_markdown(reports: list[dict[str, Any]]) -> str:
    header, rows = comparison_rows(reports)

    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]) + "\n"


def comparison_csv(reports: list[dict[str, Any]]) -> str:
    import csv
    import io

    header, rows = comparison_rows(reports)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def read_reports(paths: list[Path]) -> list[dict[str, Any]]:
    import json

    from langadapt.errors import LangadaptError

    reports = []
    for path in paths:
        try:
            report = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LangadaptError(f"'{path}' does not exist — pass the per-model JSON files of an eval run") from None
        except json.JSONDecodeError:
            raise LangadaptError(f"'{path}' is not JSON — pass the per-model JSON files of an eval run") from None
        if not isinstance(report, dict) or "headline" not in report:
            raise LangadaptError(f"'{path}' is not an eval report (no 'headline') — pass <run>/eval/<model>.json")
        reports.append(report)
    return reports
