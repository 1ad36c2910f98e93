"""Packing: block boundaries, EOS, position_ids, padding, no token lost or duplicated, the token cache."""

from __future__ import annotations

import os
from collections import Counter
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from datasets import load_from_disk
from transformers import AutoTokenizer

from langadapt.data.config import PackConfig
from langadapt.data.corpus import write_texts
from langadapt.data.mix import Pieces
from langadapt.data.pack import best_fit_bins, iter_blocks, layout, pack_corpus
from langadapt.data.tokens import default_add_bos, tokenize_corpus


class FakeGatherer:
    """Token of piece i at offset k: source*1000 + doc*100 + start + k, so every token says where it came from."""

    def gather(self, pieces: Pieces) -> np.ndarray:
        return np.concatenate(
            [
                s * 1000 + d * 100 + b + np.arange(n)
                for s, d, b, n in zip(pieces.source, pieces.doc, pieces.start, pieces.length, strict=True)
            ]
        )


def pieces(*rows: tuple[int, int, int, int]) -> Pieces:
    columns = list(zip(*rows, strict=True))
    return Pieces(*(np.array(c, dtype=np.int64) for c in columns))


def as_rows(batches) -> dict[str, np.ndarray]:
    batches = list(batches)
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def test_concat_cuts_the_stream_and_restarts_positions() -> None:
    plan = pieces((0, 0, 0, 5), (1, 0, 0, 3), (0, 1, 0, 4))
    out = as_rows(iter_blocks(plan, None, FakeGatherer(), context_length=4, pad_id=-7))
    assert out["input_ids"].tolist() == [[0, 1, 2, 3], [4, 1000, 1001, 1002], [100, 101, 102, 103]]
    assert out["position_ids"].tolist() == [[0, 1, 2, 3], [0, 0, 1, 2], [0, 1, 2, 3]]  # block start + doc start
    assert out["source_ids"].tolist() == [[0, 0, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0]]
    assert "labels" not in out


def test_best_fit_blocks_start_at_documents_and_pad() -> None:
    plan = pieces((0, 0, 0, 5), (0, 1, 0, 3), (1, 0, 0, 1), (1, 1, 0, 2))
    ordered, blocks = layout(plan, 4, "best_fit", np.random.default_rng(0))
    out = as_rows(iter_blocks(ordered, blocks, FakeGatherer(), context_length=4, pad_id=-7))
    rows = {tuple(r) for r in out["input_ids"].tolist()}
    # doc 0 (5 tokens) is cut into 4 + 1; best-fit decreasing puts the 1-token rest beside the 3-token doc
    assert rows == {(0, 1, 2, 3), (4, 100, 101, 102), (1000, 1100, 1101, -7)}
    by_row = {tuple(r): i for i, r in enumerate(out["input_ids"].tolist())}
    padded = by_row[(1000, 1100, 1101, -7)]
    assert out["position_ids"][padded].tolist() == [0, 0, 1, 0]
    assert out["labels"][padded].tolist() == [1000, 1100, 1101, -100]
    assert out["source_ids"][padded].tolist() == [1, 1, 1, -1]
    assert out["position_ids"][by_row[(4, 100, 101, 102)]].tolist() == [0, 0, 1, 2]


def test_best_fit_bins_never_overflow() -> None:
    assert best_fit_bins(np.array([6, 5, 4, 3, 2, 1]), 7).tolist() == [0, 1, 2, 2, 1, 0]
    lengths = np.random.default_rng(0).integers(1, 65, size=3000)
    bins = best_fit_bins(lengths, 64)
    fill = np.bincount(bins, weights=lengths)
    assert fill.max() <= 64 and fill.sum() / (64 * len(fill)) > 0.98


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory, basque_texts: list[str], english_texts: list[str]
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("corpus")
    eu, en = folder / "eu.jsonl.gz", folder / "en.jsonl.gz"
    write_texts(eu, list(dict.fromkeys(basque_texts))[:400])
    write_texts(en, list(dict.fromkeys(t for t in english_texts if len(t) > 200))[:60])  # few, long documents
    return {"eu": eu, "en": en}


def tokenized(path: Path, tokenizer) -> list[tuple[int, ...]]:
    from langadapt.data.corpus import read_texts

    return [
        tuple([*tokenizer(t, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]) for t in read_texts(path)
    ]


def test_best_fit_keeps_every_document_exactly_once(
    tmp_path: Path, corpus: dict[str, Path], byte_level_tokenizer: Path
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(byte_level_tokenizer)
    docs = {name: tokenized(path, tokenizer) for name, path in corpus.items()}
    context = max(len(d) for ds in docs.values() for d in ds)  # every document fits in a block
    cfg = PackConfig(context_length=context, strategy="best_fit")
    metrics = pack_corpus(corpus, tokenizer, cfg, tmp_path / "dataset", seed=0, cache_dir=tmp_path / "cache")
    data = load_from_disk(str(tmp_path / "dataset"))
    ids, positions, sources = (np.array(data[c]) for c in ("input_ids", "position_ids", "source_ids"))
    found: Counter = Counter()
    for row_ids, row_pos, row_src in zip(ids, positions, sources, strict=True):
        starts = [*np.flatnonzero((row_pos == 0) & (row_src >= 0)), int((row_src >= 0).sum())]
        for begin, end in pairwise(starts):
            found[(int(row_src[begin]), tuple(int(t) for t in row_ids[begin:end]))] += 1
    expected = Counter((i, d) for i, name in enumerate(["eu", "en"]) for d in docs[name])
    assert found == expected  # no token lost, none duplicated, EOS ends every document
    real = sum(len(d) for ds in docs.values() for d in ds)
    assert metrics["tokens"] == real and metrics["padding_tokens"] == ids.size - real
    assert metrics["packing_efficiency"] == round(real / ids.size, 6)
    assert metrics["mix"]["repeats"] == {"eu": 1.0, "en": 1.0}


def test_concat_mix_is_token_exact_and_documents_are_separated(
    tmp_path: Path, corpus: dict[str, Path], byte_level_tokenizer: Path
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(byte_level_tokenizer)
    eos = tokenizer.eos_token_id
    cfg = PackConfig(context_length=128, mix={"eu": 0.3, "en": 0.7}, total_tokens=20_000)
    metrics = pack_corpus(corpus, tokenizer, cfg, tmp_path / "dataset", seed=3, cache_dir=tmp_path / "cache")
    data = load_from_disk(str(tmp_path / "dataset"))
    assert data.column_names == ["input_ids", "position_ids", "source_ids"]
    ids, positions, sources = (np.array(data[c]) for c in ("input_ids", "position_ids", "source_ids"))
    total = 20_000 - 20_000 % 128
    assert ids.shape == (total // 128, 128) and metrics["packing_efficiency"] == 1.0
    counts = np.bincount(sources.reshape(-1), minlength=2)
    assert counts.tolist() == [round(0.3 * total), total - round(0.3 * total)]
    assert metrics["mix"]["achieved_token_share"] == {
        "eu": round(counts[0] / total, 6),
        "en": round(counts[1] / total, 6),
    }
    assert metrics["mix"]["repeats"]["en"] > 1 > metrics["mix"]["repeats"]["eu"]  # up- and down-sampled
    flat_ids, flat_pos = ids.reshape(-1), positions.reshape(-1)
    after_eos = np.flatnonzero(flat_ids[:-1] == eos) + 1
    assert (flat_pos[after_eos] == 0).all()  # a document always starts at position 0 after EOS
    assert (positions[:, 0] == 0).all()  # and every block restarts
    inner_starts = np.flatnonzero((flat_pos == 0) & (np.arange(flat_pos.size) % 128 != 0))
    not_after_eos = [i for i in inner_starts if flat_ids[i - 1] != eos]
    assert len(not_after_eos) <= 2  # only after the one cut-short document of each source
    steps = np.diff(positions, axis=1)
    assert ((steps == 1) | (positions[:, 1:] == 0)).all()


def test_tokenised_corpus_is_cached_and_invalidated(tmp_path: Path, corpus: dict[str, Path], byte_level_tokenizer: Path,
                                                    sentencepiece_tokenizer: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(byte_level_tokenizer)
    first = tokenize_corpus(corpus["en"], tokenizer, add_bos=False, cache_dir=tmp_path)
    stamp = os.stat(first.folder / "tokens.arrow").st_mtime_ns
    again = tokenize_corpus(
        corpus["en"], AutoTokenizer.from_pretrained(byte_level_tokenizer), add_bos=False, cache_dir=tmp_path
    )
    assert not first.cached and again.cached and again.folder == first.folder
    assert os.stat(again.folder / "tokens.arrow").st_mtime_ns == stamp  # read, not rewritten
    assert np.array_equal(first.lengths, again.lengths)
    expected = tokenized(corpus["en"], tokenizer)
    assert [tuple(r) for r in again.dataset["input_ids"]] == expected

    with_bos = tokenize_corpus(corpus["en"], tokenizer, add_bos=True, cache_dir=tmp_path)
    assert with_bos.folder != first.folder and (with_bos.lengths == first.lengths + 1).all()
    other = tokenize_corpus(corpus["en"], AutoTokenizer.from_pretrained(sentencepiece_tokenizer), add_bos=False,
                            cache_dir=tmp_path)
    assert other.folder != first.folder and not other.cached
    edited = tmp_path / "edited.jsonl.gz"
    write_texts(edited, ["Bat.", "Bi."])
    assert tokenize_corpus(edited, tokenizer, add_bos=False, cache_dir=tmp_path).folder != first.folder
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")) == []


def test_bos_follows_the_tokenizer(byte_level_tokenizer: Path, sentencepiece_tokenizer: Path) -> None:
    assert default_add_bos(AutoTokenizer.from_pretrained(byte_level_tokenizer)) is False
    llama2_style = AutoTokenizer.from_pretrained(sentencepiece_tokenizer, add_bos_token=True)
    assert default_add_bos(llama2_style) is True


def test_tokenising_with_more_workers_gives_the_same_tokens(tmp_path: Path, corpus: dict[str, Path],
                                                            byte_level_tokenizer: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(byte_level_tokenizer)
    one = tokenize_corpus(corpus["eu"], tokenizer, add_bos=False, cache_dir=tmp_path / "one", batch_size=37, workers=1)
    two = tokenize_corpus(corpus["eu"], tokenizer, add_bos=False, cache_dir=tmp_path / "two", batch_size=37, workers=2)
    assert one.folder.name == two.folder.name  # one cache key: workers are not part of it
    assert [tuple(r) for r in one.dataset["input_ids"]] == [tuple(r) for r in two.dataset["input_ids"]]
    assert [tuple(r) for r in two.dataset["input_ids"]] == tokenized(corpus["eu"], tokenizer)
    assert one.seconds > 0 and two.seconds > 0
