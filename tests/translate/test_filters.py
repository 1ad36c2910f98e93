"""The quality filters on constructed failures, and real translations that pass them."""

from __future__ import annotations

import pytest

from langadapt.translate.config import FilterSettings
from langadapt.translate.filters import (
    FieldTranslation,
    chrf,
    field_problem,
    language_problem,
    longest_repeat,
)
from langadapt.translate.masking import mask, unmask
from langadapt.translate.segment import split_text

SETTINGS = FilterSettings()
SOURCE = "Select the cells that you want to copy to the clipboard."
BASQUE = "Hautatu arbelera kopiatu nahi dituzun gelaxkak."


def translated(source: str, output_for: dict[str, str] | str) -> FieldTranslation:
    """What the translator builds: mask, split, translate each segment (from a table or one string), unmask."""
    masked = mask(source)
    pieces = split_text(masked.text, 400)
    outputs = {i: output_for if isinstance(output_for, str) else output_for[p.text]
               for i, p in enumerate(pieces) if p.translate}
    text = "".join(outputs.get(i, p.text) for i, p in enumerate(pieces))
    restored, problem = unmask(text, masked.spans)
    return FieldTranslation(source, restored, problem, tuple((pieces[i].text, outputs[i]) for i in sorted(outputs)))


def test_a_real_translation_passes() -> None:
    field = translated(SOURCE, BASQUE)
    assert field_problem(field, SETTINGS) is None
    assert language_problem(field.text, "eu", SETTINGS) is None


@pytest.mark.parametrize(("output", "reason"), [
    ("", "empty_output"),
    ("   ", "empty_output"),
    (SOURCE, "untranslated"),
    ("Hautatu " + "gelaxkak kopiatu " * 6, "repetition"),
    ("Hautatu.", "length_ratio"),
    (BASQUE + " Gero itsatsi beste orri batean, formatua eta formulak mantenduz, edo sakatu Ktrl+V teklatuan "
     "dokumentuaren edozein lekutan, eta gorde fitxategia.", "length_ratio"),
])
def test_constructed_failures_are_caught(output: str, reason: str) -> None:
    assert field_problem(translated(SOURCE, output), SETTINGS) == reason


def test_a_lost_or_duplicated_placeholder_is_caught() -> None:
    source = "Replace {name} with your name."
    assert field_problem(translated(source, "Ordeztu zure izenarekin."), SETTINGS) == "placeholder_lost"
    assert field_problem(translated(source, "Ordeztu <m0> <m0> zure izenarekin."), SETTINGS) == "placeholder_altered"
    assert translated(source, "Ordeztu <m0> zure izenarekin.").text == "Ordeztu {name} zure izenarekin."


def test_short_texts_skip_the_statistical_checks() -> None:
    assert field_problem(translated("OK", "OK"), SETTINGS) is None  # a copy, but too short to judge
    assert field_problem(translated("Save all", "Gorde denak eta gero itxi dokumentua"), SETTINGS) is None
    assert language_problem("OK", "eu", SETTINGS) is None


def test_wrong_language() -> None:
    assert language_problem("Select the cells that you want to copy.", "eu", SETTINGS) == "wrong_language"
    assert language_problem("Select the cells that you want to copy.", "eu", FilterSettings(language=False)) is None


def test_a_repetition_already_in_the_source_is_not_a_loop() -> None:
    source = "Say ha ha ha ha ha to the audience, please."
    assert field_problem(translated(source, "Esan ha ha ha ha ha entzuleei, mesedez."), SETTINGS) is None
    assert longest_repeat("a b a b a b a b c") == 4 and longest_repeat("one two three") == 1


def test_chrf_orders_back_translations() -> None:
    assert chrf(SOURCE, SOURCE) == 100
    assert chrf("Select the cells you want to copy.", SOURCE) > chrf("Click the button twice.", SOURCE) > 0
