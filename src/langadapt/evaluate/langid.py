"""Offline language identification of generated answers (lingua, all 75 languages, low-accuracy mode)."""

from __future__ import annotations

import logging
from collections import Counter

from langadapt.data.langid import all_languages_detector

log = logging.getLogger("langadapt.eval")


def detect_languages(texts: list[str]) -> list[str | None]:
    """ISO 639-1 code of each text ('eu', 'en', ...), None when undecided (empty or too ambiguous)."""
    if not texts:
        return []
    found = all_languages_detector().detect_languages_in_parallel_of(texts)
    return [lang.iso_code_639_1.name.lower() if lang is not None else None for lang in found]


def dominant_other_language(texts: list[str], language: str, sample: int = 200) -> tuple[str, int, int] | None:
    """(code, texts read as it, texts judged) when more than half of the first `sample` texts read as one
    language other than `language` (ISO 639-1 or -3); None otherwise."""
    from langadapt.data.langid import lingua_language

    declared = lingua_language(language).iso_code_639_1.name.lower()
    codes = [code for code in detect_languages(texts[:sample]) if code]
    if not codes:
        return None
    top, count = Counter(codes).most_common(1)[0]
    return (top, count, len(codes)) if top != declared and count > len(codes) / 2 else None


def warn_if_not(texts: list[str], language: str, what: str, sample: int = 200) -> str | None:
    """Warn (and return the detected code) when most of `texts` are not in the declared language."""
    found = dominant_other_language(texts, language, sample)
    if found is None:
        return None
    log.warning("%s is declared '%s' but reads as '%s' (%d of %d texts sampled) — check its language",
                what, language, *found)
    return found[0]
