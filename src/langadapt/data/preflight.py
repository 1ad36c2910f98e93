"""Checks `langadapt validate` runs before the data stage: a sample of each source through the filters.

Reading the first documents of every training source and running them through normalisation, the quality
filters and language ID catches the commonest misconfiguration — `text_field` pointing at the English
side, or a wrong `language` — in seconds, with the same one-line error the stage would stop with.
"""

from __future__ import annotations

from collections import Counter

from langadapt.data.clean import Cleaner
from langadapt.data.config import DataConfig
from langadapt.data.ingest import language_removal_message, languages_in_play
from langadapt.data.langid import LanguageIdentifier
from langadapt.data.sources import is_hub_source, iter_documents
from langadapt.errors import LangadaptError

SAMPLE = 400
MIN_JUDGED = 50  # fewer judged documents say too little to stop a run


def check_language_sample(cfg: DataConfig, target_language: str | None, sample: int = SAMPLE) -> None:
    """Raise the stage's language-removal error when the first `sample` documents of a source show it."""
    if cfg.langid is None or cfg.langid.max_removed_share is None:
        return
    identifier: LanguageIdentifier | None = None
    cleaner = Cleaner(cfg.clean)
    for name, source in cfg.sources.items():
        if not source.language or is_hub_source(source):
            continue
        texts = [cleaner.normalize(t) for t in iter_documents(source, name, limit=sample)]
        texts = [t for t in texts if cleaner.rejection(t) is None]
        if len(texts) < MIN_JUDGED:
            continue
        identifier = identifier or LanguageIdentifier.from_config(cfg.langid, languages_in_play(cfg, target_language))
        expected = identifier.canonical(source.language)
        found = identifier.identify(texts)
        counters: Counter[str] = Counter(f"language_{code}" for code, _ in found)
        removed = sum(code != expected or confidence < cfg.langid.min_confidence for code, confidence in found)
        if removed / len(found) > cfg.langid.max_removed_share:
            message = language_removal_message(name, source.text_field, source.language, removed, len(found),
                                               counters, cfg.langid.max_removed_share)
            raise LangadaptError(message.replace("of its", "of the first", 1))
