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


def warn_if_not(texts: list[str], language: str, what: str, sample: int = 200) -> str | None:
    """Warn (and return the detected code) when most of `texts` are not in the declared language."""
    codes = [code for code in detect_languages(texts[:sample]) if code]
    if not codes:
        return None
    top, count = Counter(codes).most_common(1)[0]
    if top != language and count > len(codes) / 2:
        log.warning("%s is declared '%s' but reads as '%s' (%d of %d texts sampled) — check its language",
                    what, language, top, count, len(codes))
        return top
    return None
