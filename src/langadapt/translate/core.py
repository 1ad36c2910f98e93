"""Translating instruction files: mask, split, look up the cache, translate what is missing, rebuild, filter.

`Translator` turns texts into `FieldTranslation`s through the cache (each segment stored the moment the
backend returns it); `translate_file` runs it over a file in chunks of rows, writes kept rows (with a
`provenance` field) and dropped rows (with their reason) and counts everything the manifest reports.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from langadapt.data.instruct import read_records
from langadapt.translate.backends import Backend
from langadapt.translate.cache import TranslationCache, backend_key, segment_key
from langadapt.translate.config import TranslateConfig
from langadapt.translate.filters import FieldTranslation, chrf, field_problem, language_problem
from langadapt.translate.masking import mask, strip_tags, unmask
from langadapt.translate.progress import segment_progress
from langadapt.translate.rows import FieldPath, RowProblem, row_format, text_fields, with_texts
from langadapt.translate.segment import join_pieces, split_text

log = logging.getLogger("langadapt.translate")

CHUNK_ROWS = 1000  # rows translated (and written) together: bounded memory, segments batched across rows


@dataclass
class SegmentCounts:
    translated: int = 0  # sent to the backend
    cached: int = 0  # found in the cache
    seconds: float = 0.0  # spent in the backend

    def to_dict(self) -> dict[str, Any]:
        rate = self.translated / self.seconds if self.seconds > 0 else None
        return {"translated": self.translated, "cached": self.cached, "backend_seconds": round(self.seconds, 3),
                "segments_per_second": round(rate, 3) if rate is not None else None}


class Translator:
    """Texts in, translations out, through the cache; one direction per call (round trips go back)."""

    def __init__(self, backend: Backend, cache: TranslationCache, *, source: str, target: str, progress: bool = True):
        self.backend, self.cache = backend, cache
        self.source, self.target = source, target
        self.backend_id = backend_key({"kind": backend.kind, **backend.identity()})
        self.counts = SegmentCounts()
        self.progress = progress

    def translate(self, texts: list[str], *, back: bool = False, label: str = "") -> list[FieldTranslation]:
        source, target = (self.target, self.source) if back else (self.source, self.target)
        direction = f"{source}>{target}"
        masked = [mask(text) for text in texts]
        pieces = [split_text(m.text, self.backend.max_segment_chars) for m in masked]
        wanted = list(dict.fromkeys(p.text for ps in pieces for p in ps if p.translate))
        keys = {segment: segment_key(self.backend_id, direction, segment) for segment in wanted}
        hits = self.cache.get_many(keys.values())
        done = {segment: hits[key] for segment, key in keys.items() if key in hits}
        todo = [segment for segment in wanted if segment not in done]
        self.counts.cached += len(done)
        if todo:
            started = time.perf_counter()
            with segment_progress(len(todo), label or direction, enabled=self.progress) as advance:
                for index, translation in self.backend.translate(todo, source, target):
                    self.cache.put(keys[todo[index]], self.backend_id, direction, todo[index], translation)
                    done[todo[index]] = translation
                    self.counts.translated += 1
                    advance()
            self.counts.seconds += time.perf_counter() - started
        results = []
        for text, m, ps in zip(texts, masked, pieces, strict=True):
            translations = {i: done[p.text] for i, p in enumerate(ps) if p.translate}
            restored, problem = unmask(join_pieces(ps, translations), m.spans)
            segments = tuple((ps[i].text, translations[i]) for i in sorted(translations))
            results.append(FieldTranslation(text, restored, problem, segments))
        return results


@dataclass
class FileReport:
    file: str
    format: str | None = None
    rows_in: int = 0
    rows_out: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "format": self.format, "rows_in": self.rows_in, "rows_out": self.rows_out,
                "dropped": dict(sorted(self.dropped.items()))}


@dataclass
class _Row:
    where: str
    record: Any
    fields: list[tuple[FieldPath, str]]
    translated: list[FieldTranslation] = field(default_factory=list)
    reason: str | None = None


def translate_file(
    path: Path, out: Path, dropped: Path, translator: Translator, settings: TranslateConfig, *,
    limit: int | None = None, name: str = "",
) -> FileReport:
    """Translate one instruction file into `out` (kept rows) and `dropped` (rows with their drop reason)."""
    report = FileReport(str(path))
    provenance = {"backend": translator.backend.kind, "model": translator.backend.model_name,
                  "source_language": translator.source, "target_language": translator.target}
    rows = islice(read_records(path), limit)
    with out.open("w", encoding="utf-8") as kept_file, dropped.open("w", encoding="utf-8") as dropped_file:
        for chunk in _chunks(rows, CHUNK_ROWS):
            batch = [_read_row(path, number, record, report, settings) for number, record in chunk]
            label = f"{name or path.name} rows {report.rows_in - len(batch) + 1}-{report.rows_in}"
            _translate_rows(batch, translator, settings, label)
            for row in batch:
                texts = {field_path: t.text for (field_path, _), t in zip(row.fields, row.translated, strict=True)}
                translated = with_texts(row.record, texts) if isinstance(row.record, dict) else row.record
                if row.reason is None:
                    report.rows_out += 1
                    translated["provenance"] = {"source_row": row.where, **provenance}
                    kept_file.write(json.dumps(translated, ensure_ascii=False) + "\n")
                else:
                    report.dropped[row.reason] += 1
                    dropped_file.write(json.dumps({"source_row": row.where, "reason": row.reason, "row": row.record,
                                                   "translation": translated}, ensure_ascii=False) + "\n")
    return report


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while chunk := list(islice(items, size)):
        yield chunk


def _read_row(path: Path, number: int, record: Any, report: FileReport, settings: TranslateConfig) -> _Row:
    where = f"{path.name}:{number}"
    report.rows_in += 1
    try:
        report.format = row_format(record, where, report.format)
        fields = text_fields(record, report.format, where, keep_system=settings.system_prompts == "keep")
    except RowProblem as problem:
        return _Row(where, record, [], reason=problem.reason)
    return _Row(where, record, fields)


def _translate_rows(rows: list[_Row], translator: Translator, settings: TranslateConfig, label: str) -> None:
    """Translate every field of the rows still in play, then mark each row with its first drop reason."""
    live = [row for row in rows if row.reason is None]
    results = iter(translator.translate([text for row in live for _, text in row.fields], label=label))
    for row in live:
        row.translated = [next(results) for _ in row.fields]
        problems = (field_problem(t, settings.filters) for t in row.translated)
        row.reason = next((p for p in problems if p is not None), None)
        if row.reason is None:
            text = "\n".join(strip_tags(target) for t in row.translated for _, target in t.segments)
            row.reason = language_problem(text, translator.target, settings.filters)
    if settings.round_trip is not None:
        kept = [row for row in rows if row.reason is None and row.fields]
        back = iter(translator.translate([t.text for row in kept for t in row.translated], back=True,
                                         label=label + " (round trip)"))
        for row in kept:  # per field: one field that came back as something else is enough
            scores = [chrf(next(back).text, source) for _, source in row.fields]
            if any(score < settings.round_trip.min_chrf for score, (_, source) in zip(scores, row.fields, strict=True)
                   if len(source) >= settings.filters.min_chars):
                row.reason = "round_trip"


def run_translation(
    settings: TranslateConfig, *, target: str, out_dir: Path, cache_path: Path, progress: bool = True,
) -> dict[str, Any]:
    """Translate every dataset of `settings` into `out_dir` (NAME.jsonl, NAME.dropped.jsonl); the metrics."""
    from langadapt.translate.backends import make_backend

    check_filter_language(settings, target)
    started = time.perf_counter()
    backend = make_backend(settings.backend)
    cache = TranslationCache(cache_path)
    try:
        backend.check_languages(settings.source_language, target)
        if settings.round_trip is not None:
            backend.check_languages(target, settings.source_language)
        translator = Translator(backend, cache, source=settings.source_language, target=target, progress=progress)
        reports = {}
        for name, spec in settings.datasets.items():
            reports[name] = translate_file(spec.path, out_dir / f"{name}.jsonl", out_dir / f"{name}.dropped.jsonl",
                                           translator, settings, limit=spec.limit, name=name)
            log.info("translate %s: %d of %d rows kept %s", name, reports[name].rows_out, reports[name].rows_in,
                     dict(reports[name].dropped))
    finally:
        backend.close()
        cache.close()
    segments = translator.counts.to_dict()
    dropped = sum((r.dropped for r in reports.values()), Counter())
    return {
        "direction": f"{settings.source_language}>{target}",
        "datasets": {name: report.to_dict() for name, report in reports.items()},
        "dropped": dict(sorted(dropped.items())),
        "segments": segments,
        "backend": backend.metrics(),
        "cache": str(cache_path),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "summary": {
            "rows in": sum(r.rows_in for r in reports.values()),
            "rows out": sum(r.rows_out for r in reports.values()),
            "dropped": sum(dropped.values()),
            "segments translated": segments["translated"],
            "segments cached": segments["cached"],
            **({"seg/s": segments["segments_per_second"]} if segments["segments_per_second"] else {}),
        },
    }


def check_filter_language(settings: TranslateConfig, target: str) -> None:
    """The language filter needs a target lingua knows."""
    from langadapt.data.langid import lingua_language
    from langadapt.errors import LangadaptError

    if not settings.filters.language:
        return
    try:
        lingua_language(target.split("_")[0])
    except LangadaptError:
        raise LangadaptError(f"the language filter has no model for '{target}' — set translate.filters.language: "
                             "false") from None
