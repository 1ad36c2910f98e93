"""Extended / Optimized / BPE / Unigram vocabularies on both tokenizer families: ids, round trip, merges, maps."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from langadapt.errors import LangadaptError
from langadapt.vocab.base import BYTE_TOKENS, BaseTokenizer, BpeParts
from langadapt.vocab.build import build_vocabulary, save_vocabulary
from langadapt.vocab.token_map import TokenMap
from langadapt.vocab.tokenizer_training import continue_merges
from tests import tiny
from tests.vocab.conftest import FAMILIES

ENGLISH_SAMPLE = tuple(tiny.texts("en", limit=300))
MIXED = [
    "Kaixo mundua! 🙂👍🏽 emoji eta ZWJ: 👩‍💻",
    "def mean(xs: list[float]) -> float:\n\treturn sum(xs) / len(xs)  # ñ ü ß\r\n",
    "Привет, мир — Ελληνικά — 日本語のテキスト — العربية — हिन्दी",
    "URL https://eu.wikipedia.org/wiki/Euskara?x=1&y=2 and 3.14159e-10",
    "Combining: e\u0301 vs é, tabs\tand  double  spaces\n\n\nend",
]


def _round_trip_texts(family: str) -> list[str]:
    texts = tiny.texts("eu") + tiny.texts("en") + MIXED
    if family == "sentencepiece":  # its decoder strips one leading space, as the base's does
        texts = [t for t in texts if t[:1] != " "]
    return texts


@pytest.mark.parametrize("family", FAMILIES)
def test_extended_keeps_every_original_id_special_and_the_chat_template(build, family: str) -> None:
    built = build(family)
    old_vocab, new_vocab = built.old.get_vocab(), built.new.get_vocab()
    assert all(new_vocab[token] == index for token, index in old_vocab.items())
    assert sorted(new_vocab.values()) == list(range(len(built.new)))  # appended after the last id, no gaps
    assert len(built.new) == len(built.old) + built.vocabulary.info["new_tokens"] > len(built.old)
    assert built.new.all_special_ids == built.old.all_special_ids
    assert (built.new.bos_token_id, built.new.eos_token_id) == (built.old.bos_token_id, built.old.eos_token_id)
    chat = [{"role": "user", "content": "Kaixo!"}, {"role": "assistant", "content": "Zer moduz?"}]
    assert built.new.apply_chat_template(chat, tokenize=False) == built.old.apply_chat_template(chat, tokenize=False)
    token_map = TokenMap.load(built.folder)
    assert token_map.old_ids[: len(built.old)] == list(range(len(built.old)))
    token_map.check_base(built.old)
    assert json.loads((built.folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "TokenizersBackend"


@pytest.mark.parametrize("method", ["extended", "optimized", "bpe", "unigram"])
@pytest.mark.parametrize("family", FAMILIES)
def test_decode_encode_round_trips_exactly(build, family: str, method: str) -> None:
    options = {"keep": 450, "english": ENGLISH_SAMPLE} if method == "optimized" else {}
    built = build(family, method, **options)
    for text in _round_trip_texts(family):
        ids = built.new(text, add_special_tokens=False)["input_ids"]
        assert built.new.decode(ids) == text, (method, text[:60])


@pytest.mark.parametrize("merges", ["continue", "append", "prepend"])
@pytest.mark.parametrize("family", FAMILIES)
def test_a_new_whole_word_token_is_emitted_as_one_token(build, family: str, merges: str) -> None:
    built = build(family, merges=merges)
    marker = "Ġ" if family == "byte_level" else "▁"
    words = {token: index for token, index in built.new.get_vocab().items()
             if index >= len(built.old) and token[:1] == marker and token[1:].isalpha() and len(token) >= 5}
    assert len(words) > 50
    for token, index in words.items():
        text = " " + token[1:] if family == "byte_level" else token[1:]
        assert built.new(text, add_special_tokens=False)["input_ids"] == [index], token


@pytest.mark.parametrize("merges", ["continue", "append"])
@pytest.mark.parametrize("family", FAMILIES)
def test_new_merges_after_the_originals_never_split_a_word_more(build, family: str, merges: str) -> None:
    built = build(family, merges=merges)
    splitter = built.base.word_splitter()
    old_model, new_model = built.old.backend_tokenizer.model, built.new.backend_tokenizer.model
    words = {w for text in tiny.texts("en") + tiny.texts("eu", path=tiny.EU_DEV, limit=None)
             for w, _ in splitter.pre_tokenizer.pre_tokenize_str(text)}
    fewer = 0
    for word in words:
        before, after = len(old_model.tokenize(word)), len(new_model.tokenize(word))
        assert after <= before, word
        fewer += after < before
    assert fewer > 100


def test_continue_merges_resume_bpe_from_the_base_segmentation_exactly() -> None:
    parts = BpeParts({"a": 0, "b": 1, "c": 2, "ab": 3}, [("a", "b")])
    words = Counter({"abcabc": 3, "cab": 2})
    # base pieces: ab c ab c (x3), c ab (x2) -> pairs (ab,c)=6, (c,ab)=5; then (abc,abc)=3, (c,ab)=2
    tokens, merges = continue_merges(parts, words, 3, min_frequency=2, byte_level=False)
    assert tokens == ["abc", "abcabc", "cab"]
    assert merges == [("ab", "c"), ("abc", "abc"), ("c", "ab")]
    assert continue_merges(parts, words, 3, min_frequency=3, byte_level=False)[0] == ["abc", "abcabc"]
    # a character the vocabulary lacks becomes an alphabet token first, then merges build on it
    tokens, merges = continue_merges(parts, Counter({"xab": 4, "yab": 1}), 2, min_frequency=2, byte_level=False)
    assert tokens == ["x", "xab"] and merges == [("x", "ab")]


def _surface_bytes(piece: str, byte_level: bool) -> bytes:
    if byte_level:
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        decoder = {char: byte for byte, char in bytes_to_unicode().items()}
        return bytes(decoder[char] for char in piece)
    if piece in BYTE_TOKENS:
        return bytes([int(piece[3:5], 16)])
    return piece.encode("utf-8")


@pytest.mark.parametrize("method", ["extended", "unigram"])
@pytest.mark.parametrize("family", FAMILIES)
def test_decompositions_spell_each_new_token_with_old_tokens(build, family: str, method: str) -> None:
    built = build(family, method)
    token_map = built.vocabulary.token_map
    byte_level = family == "byte_level"
    assert token_map.new_ids() and not token_map.undecomposable_ids()  # both fixtures have full alphabets
    for new_id in token_map.new_ids():
        surface = built.new.convert_ids_to_tokens(new_id)
        pieces = built.old.convert_ids_to_tokens(token_map.decompositions[new_id])
        assert b"".join(_surface_bytes(p, byte_level) for p in pieces) == _surface_bytes(surface, byte_level)
        assert len(pieces) >= 2 or surface in BYTE_TOKENS
    for new_id, old_id in token_map.kept_ids():
        assert built.new.convert_ids_to_tokens(new_id) == built.old.convert_ids_to_tokens(old_id)


@pytest.mark.parametrize("family", FAMILIES)
def test_optimized_keeps_k_tokens_and_no_merge_refers_to_a_pruned_one(build, family: str) -> None:
    built = build(family, "optimized", keep=450, english=ENGLISH_SAMPLE)
    token_map = built.vocabulary.token_map
    kept = [(new, old) for new, old in token_map.kept_ids() if new < 450]
    assert len(kept) == 450 and [new for new, _ in kept] == list(range(450))
    assert [old for _, old in kept] == sorted(old for _, old in kept)  # original order kept
    assert built.new.all_special_ids == built.old.all_special_ids  # specials sat first: same ids
    spec = json.loads((built.folder / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    produced = set()
    for left, right in spec["model"]["merges"]:
        assert left in vocab and right in vocab and left + right in vocab
        produced.add(left + right)
    alphabet = set(built.base.alphabet()) | set(BYTE_TOKENS) | {t["content"] for t in spec["added_tokens"]}
    unreachable = [t for t, i in vocab.items() if i < 450 and t not in alphabet and len(t) > 1 and t not in produced]
    assert unreachable == []
    assert built.vocabulary.info["vocab_size"] == len(built.new) > 450


@pytest.mark.parametrize("method", ["bpe", "unigram"])
@pytest.mark.parametrize("family", FAMILIES)
def test_replace_has_the_size_asked_specials_first_and_maps_shared_tokens(build, family: str, method: str) -> None:
    built = build(family, method)
    assert len(built.new) == 1200
    assert built.new.all_special_ids == built.old.all_special_ids and sorted(built.new.all_special_ids) == [0, 1, 2]
    vocab = built.new.get_vocab()
    if family == "sentencepiece":  # Llama-2 layout: specials, then the 256 byte-fallback tokens
        assert [vocab[b] for b in BYTE_TOKENS] == list(range(3, 259))
        assert json.loads(built.new.backend_tokenizer.to_str())["model"]["byte_fallback"]
        assert (built.new.convert_ids_to_tokens(built.new("Ω", add_special_tokens=False)["input_ids"])[-2:]
                == ["<0xCE>", "<0xA9>"])
    old_vocab = built.old.get_vocab()
    token_map = built.vocabulary.token_map
    assert all(token_map.old_ids[i] == old_vocab.get(t, -1) for t, i in vocab.items())
    assert len(token_map.kept_ids()) > 100  # shared tokens carry their old rows


def test_new_tokens_go_after_added_tokens_that_sit_above_the_model_vocabulary(
    tmp_path: Path, byte_level_tokenizer: Path
) -> None:
    old = AutoTokenizer.from_pretrained(byte_level_tokenizer)
    old.add_special_tokens({"additional_special_tokens": ["<|eot_id|>"]})  # id 600, outside the BPE vocab
    old.save_pretrained(tmp_path / "base")
    old = AutoTokenizer.from_pretrained(tmp_path / "base")
    base = BaseTokenizer.from_hf(old)
    vocabulary = build_vocabulary(base, iter(tiny.texts("eu", limit=500)), method="extended", vocab_size=800)
    new = save_vocabulary(vocabulary, base, tmp_path / "new")
    assert new.convert_tokens_to_ids("<|eot_id|>") == 600 and min(vocabulary.token_map.new_ids()) == 601
    replaced = build_vocabulary(base, iter(tiny.texts("eu", limit=500)), method="bpe", vocab_size=800)
    new = save_vocabulary(replaced, base, tmp_path / "bpe")
    moved = new.convert_tokens_to_ids("<|eot_id|>")
    assert moved == 3 and replaced.token_map.old_ids[moved] == 600  # carried first, its old row mapped


def test_bad_inputs_are_one_clear_error(byte_level_tokenizer: Path, tmp_path: Path) -> None:
    base = BaseTokenizer.from_hf(AutoTokenizer.from_pretrained(byte_level_tokenizer))
    with pytest.raises(LangadaptError, match="holds no text"):
        build_vocabulary(base, iter(["", "  \n\t", " "]), method="extended", vocab_size=1000)
    with pytest.raises(LangadaptError, match=r"smaller than the base's alphabet and specials .* = 259"):
        build_vocabulary(base, iter(["kaixo"]), method="bpe", vocab_size=200)
    with pytest.raises(LangadaptError, match=r"keep=601 is larger than the original vocabulary \(600 tokens\)"):
        build_vocabulary(base, iter(["kaixo"]), method="optimized", vocab_size=1000, keep=601)
    with pytest.raises(LangadaptError, match="smaller than the tokens every vocabulary needs"):
        build_vocabulary(base, iter(["kaixo mundua"] * 5), method="optimized", vocab_size=1000, keep=100)
    with pytest.raises(LangadaptError, match="only applies to method 'optimized'"):
        build_vocabulary(base, iter(["kaixo"]), method="extended", vocab_size=1000, keep=10)
    with pytest.raises(LangadaptError, match="choose one of: bpe, unigram, extended, optimized"):
        build_vocabulary(base, iter(["kaixo"]), method="wordpiece", vocab_size=1000)

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    wordpiece = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    wordpiece.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(LangadaptError, match="is a WordPiece model — supported: byte-level BPE"):
        BaseTokenizer.from_hf(PreTrainedTokenizerFast(tokenizer_object=wordpiece), name="bert")


def test_a_corpus_too_small_for_the_vocab_size_warns_with_the_numbers(byte_level_tokenizer: Path, caplog) -> None:
    base = BaseTokenizer.from_hf(AutoTokenizer.from_pretrained(byte_level_tokenizer))
    with caplog.at_level(logging.WARNING, logger="langadapt.vocab"):
        vocabulary = build_vocabulary(base, iter(tiny.texts("eu", limit=20)), method="bpe", vocab_size=5000)
    assert vocabulary.info["target_vocab_size"] < 5000
    message = caplog.records[-1].getMessage()
    assert "too small for a 5000-token vocabulary: 20 documents" in message
    assert f"gave only {vocabulary.info['target_vocab_size']} tokens" in message
