"""Ingest: read every source, normalise, filter, identify the language and deduplicate, streaming.

One pass per source, in batches (language ID runs on a whole batch in parallel). Each document is
removed by the first check it fails, and that check's counter goes up, so the counts of a source add up:
`read == kept + sum(removed)`. Eval texts are normalised the same way but never filtered; they are read
first, so training documents that duplicate one of them can be dropped (no test-set leakage).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langadapt.data.clean import Cleaner
from langadapt.data.config import DataConfig, DedupConfig, SourceConfig
from langadapt.data.corpus import TextWriter, corpus_file, eval_file
from langadapt.data.dedup import NearDuplicateIndex, exact_hash
from langadapt.data.langid import LanguageIdentifier
from langadapt.data.sources import ReadStats, iter_documents
from langadapt.data.stats import TextStats, batches
from langadapt.errors import LangadaptError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

BATCH = 2048

# Where to loosen each check when it removed a whole source.
_KNOB = {
    "empty": "the documents are empty after normalisation — check text_field",
    "min_chars": "lower data.clean.min_chars",
    "min_words": "lower data.clean.min_words",
    "non_letter_share": "raise data.clean.max_non_letter_share",
    "duplicate_lines": "raise data.clean.max_duplicate_line_share / max_duplicate_line_char_share",
    "top_ngram": "raise data.clean.max_top_ngram_share",
    "duplicate_ngrams": "raise data.clean.max_duplicate_ngram_share",
    "language": "check data.sources.{name}.language, or lower data.langid.min_confidence",
    "eval_overlap": "the source repeats the eval texts — set data.dedup.eval_overlap: false if that is intended",
    "exact_duplicate": "the source only repeats earlier documents (set data.dedup.exact: false to keep them)",
    "near_duplicate": "raise data.dedup.near.threshold",
}

Sink = Callable[[str], None]


@dataclass
class SourceReport:
    """What happened to one source's documents."""

    read: ReadStats = field(default_factory=ReadStats)
    removed: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    normalized: int = 0
    kept: TextStats = field(default_factory=TextStats)

    def as_dict(self, language: str | None) -> dict[str, Any]:
        return {
            **self.kept.as_dict(),
            "language": language,
            "read": self.read.documents,
            "invalid_utf8": self.read.invalid_utf8,
            "invalid_json": self.read.invalid_json,
            "missing_field": self.read.missing_field,
            "normalized": self.normalized,
            "removed": dict(sorted(self.removed.items())),
            "duplicates": sum(self.removed[k] for k in ("exact_duplicate", "near_duplicate", "eval_overlap")),
            "languages": dict(self.languages.most_common()),
        }


class Deduplicator:
    """Exact and near-duplicate state shared by all training sources (first occurrence wins)."""

    def __init__(self, cfg: DedupConfig | None, seed: int):
        self.cfg = cfg
        self._exact: set[int] = set()
        self._eval_exact: set[int] = set()
        near = cfg.near if cfg is not None else None
        self._near = NearDuplicateIndex(near, seed) if near is not None else None
        self._eval_near = NearDuplicateIndex(near, seed) if near is not None and cfg.eval_overlap else None

    def add_eval(self, text: str) -> None:
        if self.cfg is None or not self.cfg.eval_overlap:
            return
        self._eval_exact.add(exact_hash(text))
        if self._eval_near is not None:
            self._eval_near.add(self._eval_near.signature(text))

    def verdict(self, text: str) -> str | None:
        """Why `text` is a duplicate, or None (then it is remembered as seen)."""
        if self.cfg is None:
            return None
        key = exact_hash(text)
        if key in self._eval_exact:
            return "eval_overlap"
        if self.cfg.exact and key in self._exact:
            return "exact_duplicate"
        signature = self._near.signature(text) if self._near is not None else None
        if signature is not None:
            if self._eval_near is not None and self._eval_near.seen(signature):
                return "eval_overlap"
            if self._near.seen(signature):
                return "near_duplicate"
            self._near.add(signature)
        if self.cfg.exact:
            self._exact.add(key)
        return None


class Ingestor:
    """Runs the configured cleaning, language ID and dedup over sources; holds the shared dedup state."""

    def __init__(
        self, cfg: DataConfig, *, seed: int, target_language: str | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None, log: logging.Logger | None = None,
    ):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.log = log or logging.getLogger("langadapt.data")
        self.dedup = Deduplicator(cfg.dedup, seed)
        self.langid = LanguageIdentifier(self.languages_in_play(target_language)) if cfg.langid else None

    def languages_in_play(self, target_language: str | None) -> list[str]:
        """The detector's candidates: every source's language, the target, English and the listed extras."""
        assert self.cfg.langid is not None
        codes = {s.language for s in (*self.cfg.sources.values(), *self.cfg.eval_sources.values()) if s.language}
        codes |= {target_language or "en", "en", *self.cfg.langid.languages}
        return sorted(codes)

    def eval_source(self, name: str, source: SourceConfig, sink: Sink | None = None) -> SourceReport:
        """Normalise the held-out texts (no filters: they are what later stages measure on)."""
        report = SourceReport(kept=TextStats(self.tokenizer))
        cleaner = Cleaner(self.cfg.clean)
        for batch in batches(iter_documents(source, name, report.read, source.max_documents), BATCH):
            texts = []
            for raw in batch:
                text = cleaner.normalize(raw)
                report.normalized += text != raw
                if not text.strip():
                    report.removed["empty"] += 1
                    continue
                texts.append(text)
                self.dedup.add_eval(text)
                if sink is not None:
                    sink(text)
            if self.langid is not None and texts:
                report.languages.update(code for code, _ in self.langid.identify(texts))
            report.kept.add(texts)
        if report.kept.documents == 0:
            raise LangadaptError(f"data.eval_sources.{name}: '{source.path}' holds no text — check the file and text_field")
        return report

    def source(self, name: str, source: SourceConfig, sink: Sink | None = None) -> SourceReport:
        """Clean one training source into `sink`; an error naming the culprit if nothing survives."""
        report = SourceReport(kept=TextStats(self.tokenizer))
        cleaner = Cleaner(self.cfg.clean)
        expected = self.langid.canonical(source.language) if self.langid and source.language else None
        min_confidence = self.cfg.langid.min_confidence if self.cfg.langid else 0.0
        limit = source.max_documents
        documents = _cleaned(cleaner, iter_documents(source, name, report.read))
        for batch in batches(documents, BATCH):
            candidates = [text for text, _, why in batch if why is None]
            languages = iter(self.langid.identify(candidates)) if self.langid is not None else None
            kept: list[str] = []
            processed = 0
            for text, changed, why in batch:
                if limit is not None and report.kept.documents + len(kept) >= limit:
                    break
                processed += 1
                report.normalized += changed
                if why is None and languages is not None:
                    code, confidence = next(languages)
                    report.languages[code] += 1
                    if expected is not None and (code != expected or confidence < min_confidence):
                        why = "language"
                why = why or self.dedup.verdict(text)
                if why is not None:
                    report.removed[why] += 1
                    continue
                kept.append(text)
                if sink is not None:
                    sink(text)
            report.kept.add(kept)
            report.read.documents -= len(batch) - processed  # past max_documents: read ahead, never looked at
            if limit is not None and report.kept.documents >= limit:
                break
        if report.kept.documents == 0:
            raise LangadaptError(_nothing_left(name, source, report))
        self.log.info("%s: kept %d of %d documents (removed: %s)", name, report.kept.documents,
                      report.read.documents, dict(report.removed.most_common()) or "none")
        return report


def ingest_corpus(
    cfg: DataConfig, *, seed: int, target_language: str | None, tokenizer: PreTrainedTokenizerBase | None,
    out: Path | None = None, log: logging.Logger | None = None,
) -> dict[str, Any]:
    """Ingest every eval and training source; with `out`, write the corpus files the later stages read."""
    ingest = Ingestor(cfg, seed=seed, target_language=target_language, tokenizer=tokenizer, log=log)
    report: dict[str, Any] = {"langid_languages": ingest.langid.codes if ingest.langid else None, "eval": {}, "sources": {}}
    # Eval texts first: training documents that duplicate one of them are then dropped.
    for group, sources, where, run in (("eval", cfg.eval_sources, eval_file, ingest.eval_source),
                                       ("sources", cfg.sources, corpus_file, ingest.source)):
        for name, source in sources.items():
            if out is None:
                result = run(name, source)
            else:
                with TextWriter(where(out, name)) as writer:
                    result = run(name, source, writer.write)
            report[group][name] = result.as_dict(source.language)
    return report


def _cleaned(cleaner: Cleaner, texts: Iterator[str]) -> Iterator[tuple[str, bool, str | None]]:
    """(normalised text, whether normalising changed it, the filter that rejects it or None)."""
    for text in texts:
        cleaned = cleaner.normalize(text)
        yield cleaned, cleaned != text, cleaner.rejection(cleaned)


def _nothing_left(name: str, source: SourceConfig, report: SourceReport) -> str:
    if report.read.documents == 0:
        return f"data source '{name}': '{source.path}' holds no documents — check the file and text_field"
    culprit, count = report.removed.most_common(1)[0]
    others = ", ".join(f"{k} {v}" for k, v in report.removed.most_common()[1:])
    hint = _KNOB[culprit].format(name=name)
    return (
        f"data source '{name}': all {report.read.documents} documents were removed — '{culprit}' removed {count}"
        f"{f' (then {others})' if others else ''} — {hint}"
    )
