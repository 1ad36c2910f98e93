"""The data stage's corpus as the init methods read it: target-language and English documents.

`method: auto` holds the first `auto.documents` documents of each side out of what the methods train on
and scores on them (held-out TRAINING documents: the eval sets stay unseen by every choice).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain, islice
from pathlib import Path

from langadapt.data.corpus import corpus_file, read_texts
from langadapt.embeddings.registry import Corpus, ProbeTexts, Texts


def _reader(files: list[Path], skip: int) -> Texts | None:
    if not files:
        return None

    def texts() -> Iterator[str]:
        return islice(chain.from_iterable(read_texts(f) for f in files), skip, None)

    return texts


def corpus_from_files(target: list[Path], english: list[Path], *, probe_documents: int = 0) -> Corpus:
    """Texts of `target` and `english` corpus files; the first `probe_documents` of each side become the probe."""
    probe = None
    if probe_documents:
        read = _reader(target, 0)
        read_en = _reader(english, 0)
        probe = ProbeTexts(list(islice(read(), probe_documents)) if read else [],
                           list(islice(read_en(), probe_documents)) if read_en else [])
    return Corpus(_reader(target, probe_documents), _reader(english, probe_documents), probe)


def run_corpus(
    data_dir: Path, sources: dict[str, str | None], target_language: str, *, probe_documents: int = 0
) -> Corpus:
    """The corpus of a run: `sources` maps each data source to its language."""
    target = [corpus_file(data_dir, n) for n, lang in sources.items() if lang == target_language]
    english = [corpus_file(data_dir, n) for n, lang in sources.items() if lang == "en" and target_language != "en"]
    return corpus_from_files([f for f in target if f.exists()], [f for f in english if f.exists()],
                             probe_documents=probe_documents)
