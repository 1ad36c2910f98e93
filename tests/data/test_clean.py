"""Normalisation and each quality filter, with exact shares computed by hand."""

from __future__ import annotations

import unicodedata

import pytest

from langadapt.data.clean import (
    Cleaner,
    duplicate_line_shares,
    duplicate_ngram_share,
    non_letter_share,
    normalize_whitespace,
    top_ngram_share,
)
from langadapt.data.config import CleanConfig

NO_FILTERS = dict(min_chars=0, min_words=0, max_non_letter_share=None, max_duplicate_line_share=None,
                  max_duplicate_line_char_share=None, max_top_ngram_share={}, max_duplicate_ngram_share={})


def only(**kwargs) -> Cleaner:
    return Cleaner(CleanConfig(**{**NO_FILTERS, **kwargs}))


def test_nfc_composes_decomposed_letters() -> None:
    decomposed = "Donostia\u0301 e\u0301a"  # combining acute accents
    cleaned = only().normalize(decomposed)
    assert cleaned == unicodedata.normalize("NFC", decomposed) and len(cleaned) == len(decomposed) - 2
    assert Cleaner(CleanConfig(normalize=None, whitespace=False)).normalize(decomposed) == decomposed


def test_whitespace_and_control_characters() -> None:
    messy = "\ufeff  Kaixo\t\t mundua \u00a0 !\r\nbigarren\x00 lerroa\u200b\n\n\n\n\nhirugarren  "
    assert normalize_whitespace(messy) == "Kaixo mundua !\nbigarren lerroa\n\nhirugarren"


def test_whitespace_fast_path_changes_nothing_the_full_rules_would_not() -> None:
    """Texts that skip the regexes (one printable line, single spaces) come out as the full rules give them."""
    import itertools
    import re

    def full_rules(text: str) -> str:
        text = re.sub(r"\r\n?|\u2028|\u2029", "\n", text)
        text = re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2060\ufeff]", "", text)
        lines = [re.sub(r"[^\S\n]+", " ", line).strip() for line in text.split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()

    pieces = ["a", "ü", " ", "\t", "\n", "\r", "\u00a0", "\u2028", "\u200b", "\ufeff", "\x00", "\x85", "\u3000"]
    for size in range(5):
        for combo in itertools.product(pieces, repeat=size):
            text = "".join(combo)
            assert normalize_whitespace(text) == full_rules(text), repr(text)


def test_repeated_texts_are_judged_once() -> None:
    cleaner = only(min_chars=5)
    assert [cleaner.rejection(t) for t in ["ab", "abcdef", "ab"]] == ["min_chars", None, "min_chars"]
    assert cleaner.normalize("a  b") == cleaner.normalize("a  b") == "a b"
    assert len(cleaner.rejection._answers) == 2 and len(cleaner.normalize._answers) == 1


def test_length_filters() -> None:
    cleaner = only(min_chars=10, min_words=3)
    assert cleaner.rejection("Laguntza") == "min_chars"
    assert cleaner.rejection("Erregistro-zenbakia") == "min_words"
    assert cleaner.rejection("Egin klik hemen") is None
    assert cleaner.rejection("   ") == "empty"


def test_non_letter_share() -> None:
    assert non_letter_share("ab 12") == pytest.approx(2 / 4)
    assert non_letter_share("  ") == 1.0
    text = "Kaixo, mundua! 2024-an\u00a0\u00e9\u0301 <b>x</b>\n\tez"  # NBSP, a combining mark, markup, tab
    per_char = 1.0 - sum(map(str.isalpha, text)) / (len(text) - sum(map(str.isspace, text)))
    assert non_letter_share(text) == non_letter_share(text, text.split()) == per_char
    cleaner = only(max_non_letter_share=0.4)
    assert cleaner.rejection("1 in = 2,54 cm") == "non_letter_share"  # 6 of 10 visible characters
    assert cleaner.rejection("Hautatu testua") is None


def test_duplicate_lines_gopher() -> None:
    text = "alpha\nbeta\nalpha\nalpha"
    assert duplicate_line_shares(text) == (pytest.approx(2 / 4), pytest.approx(10 / len(text)))
    assert only(max_duplicate_line_share=0.3).rejection(text) == "duplicate_lines"
    assert only(max_duplicate_line_share=0.6, max_duplicate_line_char_share=0.6).rejection(text) is None
    assert only(max_duplicate_line_char_share=0.2).rejection(text) == "duplicate_lines"


def test_top_ngram_share_is_gophers() -> None:
    words = ["aa", "bb", "aa", "bb", "cc"]
    assert top_ngram_share(words, 2, 14) == pytest.approx(5 * 2 / 14)  # "aa bb" (5 characters) twice
    assert top_ngram_share(["aa", "bb", "cc", "dd"], 2, 11) == pytest.approx(5 / 11)  # the first, once
    assert top_ngram_share(["aa"], 2, 2) == 0.0


def test_duplicate_ngrams_non_overlapping() -> None:
    words = ["a", "b", "c", "d", "e", "a", "b", "c", "d", "e", "f"]
    # the second "a b c d e" repeats the first: 5 characters
    assert duplicate_ngram_share(words, 5, 21) == pytest.approx(5 / 21)
    assert duplicate_ngram_share(["a", "b", "c", "d", "e", "f", "g"], 5, 13) == 0.0


def test_repetition_filters_only_judge_long_documents() -> None:
    spam = " ".join(["erosi orain"] * 30)  # 60 words, one 2-gram is the whole text
    short = "erosi orain erosi orain beste bat"
    cleaner = only(max_top_ngram_share={2: 0.2}, repetition_min_words=50)
    assert cleaner.rejection(spam) == "top_ngram"
    assert cleaner.rejection(short) is None
    assert only(max_duplicate_ngram_share={5: 0.15}, repetition_min_words=50).rejection(spam) == "duplicate_ngrams"


def test_first_failing_filter_is_blamed() -> None:
    cleaner = Cleaner(CleanConfig())
    assert cleaner.rejection("12") == "min_chars"
    assert cleaner.rejection("1234567890 12") == "non_letter_share"


def test_real_basque_text_mostly_survives_the_defaults(basque_texts: list[str]) -> None:
    cleaner = Cleaner(CleanConfig())
    reasons = [cleaner.rejection(cleaner.normalize(t)) for t in basque_texts]
    kept = reasons.count(None) / len(reasons)
    assert 0.7 < kept < 0.95  # the help corpus has many one-word UI labels
    assert {r for r in reasons if r} <= {"min_chars", "min_words", "non_letter_share", "top_ngram", "duplicate_ngrams"}


def test_bad_ngram_config_is_refused() -> None:
    with pytest.raises(ValueError, match="n-gram sizes"):
        CleanConfig(max_top_ngram_share={0: 0.2})
