"""Quality filters of translated rows: each names the reason a row is dropped, cheapest first.

Per field: `empty_output`, `placeholder_lost` / `placeholder_altered` (a masked span did not come back
exactly once), `untranslated` (half or more of its text came back unchanged), `repetition` (a word n-gram
repeated `max_repeats` times in a row, more than in the source: a decoding loop), `length_ratio`.
Per row: `wrong_language` (lingua, on the translated text without masked spans) and `round_trip` (chrF of
each field's back-translation against its source). Short texts skip the statistical checks (`min_chars`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from langadapt.translate.config import FilterSettings


@dataclass(frozen=True)
class FieldTranslation:
    source: str  # the original text
    text: str  # its translation, tags restored
    problem: str | None  # from unmasking
    segments: tuple[tuple[str, str], ...]  # (source segment, translation) of each translated piece, masked

    @property
    def source_chars(self) -> int:
        return sum(len(source) for source, _ in self.segments)

    @property
    def translated_chars(self) -> int:
        return sum(len(target) for _, target in self.segments)


def _empty(field: FieldTranslation, settings: FilterSettings) -> bool:
    return bool(field.source.strip()) and not field.text.strip()


def _untranslated(field: FieldTranslation, settings: FilterSettings) -> bool:
    if not settings.untranslated or field.source_chars < settings.min_chars:
        return False
    copied = sum(len(source) for source, target in field.segments if source.strip() == target.strip())
    return copied * 2 >= field.source_chars


def _repetition(field: FieldTranslation, settings: FilterSettings) -> bool:
    found = longest_repeat(field.text)
    return found >= settings.max_repeats and found > longest_repeat(field.source)


def _length_ratio(field: FieldTranslation, settings: FilterSettings) -> bool:
    if field.source_chars < settings.min_chars:
        return False
    ratio = field.translated_chars / field.source_chars
    return not settings.min_length_ratio <= ratio <= settings.max_length_ratio


# After the empty and placeholder checks, in this order.
FIELD_FILTERS: tuple[tuple[str, Callable[[FieldTranslation, FilterSettings], bool]], ...] = (
    ("untranslated", _untranslated),
    ("repetition", _repetition),
    ("length_ratio", _length_ratio),
)


def field_problem(field: FieldTranslation, settings: FilterSettings) -> str | None:
    """The first reason this field's translation is unusable, or None."""
    if _empty(field, settings):
        return "empty_output"
    if field.problem is not None:
        return field.problem
    return next((name for name, check in FIELD_FILTERS if check(field, settings)), None)


def longest_repeat(text: str, max_n: int = 8) -> int:
    """The most times a word n-gram (n <= max_n) repeats back to back in `text` (1 when nothing repeats)."""
    words = re.findall(r"\w+|[^\w\s]", text.lower())
    best = 1
    for n in range(1, min(max_n, len(words) // 2) + 1):
        for start in range(n):  # each alignment of the n-grams
            run = 1
            for at in range(start + n, len(words) - n + 1, n):
                run = run + 1 if words[at : at + n] == words[at - n : at] else 1
                best = max(best, run)
    return best


def language_problem(text: str, target: str, settings: FilterSettings) -> str | None:
    """`wrong_language` when lingua's confidence that `text` is in `target` is below the threshold."""
    from langadapt.data.langid import all_languages_detector, lingua_language

    if not settings.language or sum(ch.isalpha() for ch in text) < settings.min_chars:
        return None
    confidence = all_languages_detector().compute_language_confidence(text, lingua_language(target.split("_")[0]))
    return "wrong_language" if confidence < settings.min_language_confidence else None


def chrf(hypothesis: str, reference: str) -> float:
    """sacrebleu's chrF (0-100) of one sentence."""
    from sacrebleu.metrics import CHRF

    return float(CHRF().sentence_score(hypothesis, [reference]).score)
