"""bits_per_character against a hand computation: one forward pass per document / per scored token."""

from __future__ import annotations

import math

import pytest
import torch

from langadapt.errors import LangadaptError
from langadapt.evaluate.bpc import bits_per_character, prefix_token_id, sliding_windows
from tests.evaluate.conftest import document_nll


def _token_nll(model, context: list[int], target: int) -> float:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([context])).logits[0, -1]
    return -torch.log_softmax(logits.double(), -1)[target].item()


def test_bpc_equals_hand_computation_per_document(llama, basque_dev_texts) -> None:
    model, tokenizer = llama
    texts = [*basque_dev_texts[:11], "Ñabardura: «€» eta ö — Привет"]
    prefix = prefix_token_id(tokenizer)
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    nll = sum(document_nll(model, [prefix, *ids]) for ids in encoded)
    chars = sum(len(t) for t in texts)
    n_bytes = sum(len(t.encode()) for t in texts)

    result = bits_per_character(model, tokenizer, texts, batch_tokens=300)
    assert result.tokens == sum(len(ids) for ids in encoded)
    assert (result.characters, result.bytes, result.documents) == (chars, n_bytes, 12)
    assert n_bytes > chars  # Basque text has non-ASCII characters: bytes and chars differ
    assert result.nll_nats == pytest.approx(nll, rel=1e-5)
    assert result.bits_per_char == pytest.approx(nll / math.log(2) / chars, rel=1e-5)
    assert result.bits_per_byte == pytest.approx(nll / math.log(2) / n_bytes, rel=1e-5)
    assert result.token_perplexity == pytest.approx(math.exp(nll / result.tokens), rel=1e-5)
    assert result.words == sum(len(t.split()) for t in texts)


def test_batching_does_not_change_the_result(llama, basque_dev_texts) -> None:
    model, tokenizer = llama
    one = bits_per_character(model, tokenizer, basque_dev_texts[:20], batch_tokens=1)
    many = bits_per_character(model, tokenizer, basque_dev_texts[:20], batch_tokens=100_000)
    assert one.nll_nats == pytest.approx(many.nll_nats, rel=1e-5)


def test_sliding_window_gives_each_token_its_window_context(llama, basque_dev_texts) -> None:
    model, tokenizer = llama
    text = max(basque_dev_texts, key=len)
    ids = [prefix_token_id(tokenizer), *tokenizer(text, add_special_tokens=False)["input_ids"]]
    max_length, stride = 16, 5
    assert len(ids) > 3 * max_length
    # By hand: token p is scored in the window ending at e(p) = the first of L, L+s, L+2s, ... (capped at
    # the document length) that exceeds p, and sees the context ids[max(0, e(p) - L) : p].
    expected = 0.0
    for p in range(1, len(ids)):
        end = max_length
        while end <= p:
            end += stride
        end = min(end, len(ids))
        expected += _token_nll(model, ids[max(0, end - max_length) : p], ids[p])

    result = bits_per_character(model, tokenizer, [text], max_length=max_length, stride=stride)
    assert result.tokens == len(ids) - 1
    assert result.nll_nats == pytest.approx(expected, rel=1e-5)


def test_windows_score_every_token_once() -> None:
    ids = list(range(100))
    for max_length, stride in ((10, 3), (10, 9), (100, 50), (200, 1)):
        windows = sliding_windows(ids, max_length, stride)
        scored = [w.ids[k] for w in windows for k in range(w.first_scored, len(w.ids))]
        assert scored == ids[1:]
        assert all(len(w.ids) <= max_length for w in windows)
        assert all(w.first_scored >= min(max_length - stride, len(w.ids)) for w in windows[1:])


def test_bad_input_is_one_line(llama) -> None:
    model, tokenizer = llama
    with pytest.raises(LangadaptError, match="no text to score"):
        bits_per_character(model, tokenizer, ["", ""])
    with pytest.raises(LangadaptError, match="stride must be between"):
        bits_per_character(model, tokenizer, ["kaixo"], max_length=8, stride=8)
