"""Language ID with lingua restricted to the languages in play."""

from __future__ import annotations

import pytest

from langadapt.data.langid import UNKNOWN, LanguageIdentifier, lingua_language
from langadapt.errors import LangadaptError


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier(["eu", "en", "ru"])


def test_identifies_real_paragraphs(identifier: LanguageIdentifier, basque_texts: list[str], english_texts: list[str]) -> None:
    long_eu = [t for t in basque_texts if len(t.split()) >= 8][:200]
    long_en = [t for t in english_texts if len(t.split()) >= 8][:200]
    eu = [code for code, _ in identifier.identify(long_eu)]
    en = [code for code, _ in identifier.identify(long_en)]
    assert eu.count("eu") / len(eu) > 0.97 and en.count("en") / len(en) > 0.97


def test_confidence_and_unknown(identifier: LanguageIdentifier) -> None:
    (code, confidence), (ru, _), (none, zero) = identifier.identify(
        ["Hautatu testua eta egin klik botoian aldaketak gordetzeko.", "Выберите текст и нажмите кнопку.", "12 345"]
    )
    assert code == "eu" and 0.5 < confidence <= 1.0 and ru == "ru"
    assert (none, zero) == (UNKNOWN, 0.0)


def test_iso_639_3_codes_are_the_same_language() -> None:
    identifier = LanguageIdentifier(["eus", "en"])
    assert identifier.canonical("eu") == "eus"
    assert lingua_language("lt") == lingua_language("lit")


def test_bad_codes_say_what_to_do() -> None:
    with pytest.raises(LangadaptError, match="'xx' has no lingua model"):
        lingua_language("xx")
    with pytest.raises(LangadaptError, match="at least two candidate languages"):
        LanguageIdentifier(["eu"])
