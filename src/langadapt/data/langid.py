"""Language identification with lingua (its language models ship inside the wheel: works offline).

The detector is restricted to the languages in play (the sources' languages, the target, English and any
listed in `data.langid.languages`): lingua is both faster and more accurate when it only has to choose
among a few. A document is kept when its source's language is the most likely one with at least
`min_confidence`; lingua's confidences over the restricted set sum to 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from langadapt.errors import LangadaptError

if TYPE_CHECKING:
    from lingua import Language, LanguageDetector

UNKNOWN = "unknown"


def lingua_language(code: str) -> Language:
    """The lingua language of an ISO 639-1 (`eu`) or 639-3 (`eus`) code; an error naming the fix if none."""
    from lingua import IsoCode639_1, IsoCode639_3, Language

    table = IsoCode639_1 if len(code) == 2 else IsoCode639_3
    iso = getattr(table, code.upper(), None)
    if iso is None:
        raise LangadaptError(
            f"language '{code}' has no lingua model — use an ISO 639-1 code lingua knows (e.g. eu, lt, ru) or "
            "leave 'language' unset on that source to skip language filtering"
        )
    return Language.from_iso_code_639_1(iso) if len(code) == 2 else Language.from_iso_code_639_3(iso)


@lru_cache(maxsize=1)
def all_languages_detector() -> LanguageDetector:
    """One lingua detector over every language it knows, in low-accuracy mode (~70 MB and instant to build,
    versus ~1 GB and seconds): reliable on sentence-long texts, for checks where any language may turn up."""
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()


class LanguageIdentifier:
    """Top language and its confidence for batches of texts, over a fixed set of candidate languages."""

    def __init__(self, codes: Iterable[str]):
        from lingua import LanguageDetectorBuilder

        self.codes = sorted(set(codes))
        if len(self.codes) < 2:
            raise LangadaptError(
                f"language ID needs at least two candidate languages, got {self.codes} — add one to "
                "data.langid.languages (e.g. the main contaminant of your corpus)"
            )
        self._by_language = {lingua_language(code): code for code in self.codes}
        self._detector = (
            LanguageDetectorBuilder.from_languages(*self._by_language).with_preloaded_language_models().build()
        )

    def identify(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """(code, confidence) of the most likely language of each text; `unknown` when lingua has no idea."""
        results = []
        for values in self._detector.compute_language_confidence_values_in_parallel(list(texts)):
            top = values[0] if values else None
            if top is None or top.value <= 0:
                results.append((UNKNOWN, 0.0))
            else:
                results.append((self._by_language[top.language], top.value))
        return results

    def canonical(self, code: str) -> str:
        """The code `identify` reports for the language `code` names (`rus` and `ru` are one language)."""
        return self._by_language[lingua_language(code)]
