"""The copy task: target-language instructions to repeat corpus sentences and paragraphs verbatim."""

from __future__ import annotations

import logging

import pytest

from langadapt.errors import LangadaptError
from langadapt.train.copy_task import (
    CONTINUATION_INSTRUCTIONS,
    COPY_TASK_INSTRUCTIONS,
    copy_task_conversations,
    split_sentences,
)


def test_split_sentences() -> None:
    assert split_sentences("Kaixo. Zer moduz? Ondo!  Bai…ez") == ["Kaixo.", "Zer moduz?", "Ondo!", "Bai…ez"]


def test_the_copy_task_asks_to_repeat_corpus_texts_verbatim(basque_texts) -> None:
    conversations, stats = copy_task_conversations(
        basque_texts, count=40, sentence_share=0.25, language="eu", seed=3, max_sentence_chars=200,
        max_paragraph_chars=600,
    )
    assert len(conversations) == 40
    assert stats == {"sentences": 10, "paragraphs": 30, "continuations": 0, "requested": 40}
    corpus = "\n".join(basque_texts)
    answers = [c[1]["content"] for c in conversations]
    assert len(set(answers)) == 40
    for question, answer in conversations:
        assert question["role"] == "user" and answer["role"] == "assistant"
        assert answer["content"] in corpus and 20 <= len(answer["content"]) <= 600
        assert any(question["content"] == t.format(text=answer["content"]) for t in COPY_TASK_INSTRUCTIONS["eu"])
    sentences = [a for a in answers if len(split_sentences(a)) == 1]
    assert len(sentences) >= 10 and all(len(s) <= 200 for s in sentences)
    again, _ = copy_task_conversations(basque_texts, count=40, sentence_share=0.25, language="eu", seed=3,
                                       max_sentence_chars=200, max_paragraph_chars=600)
    other, _ = copy_task_conversations(basque_texts, count=40, sentence_share=0.25, language="eu", seed=4,
                                       max_sentence_chars=200, max_paragraph_chars=600)
    assert again == conversations and other != conversations


def test_the_copy_task_says_when_the_corpus_is_short_or_the_language_unknown(caplog) -> None:
    texts = ["Lehen esaldia da hau. Bigarren esaldia da hau.", "Hirugarren esaldi luze samarra."]
    with caplog.at_level(logging.WARNING, logger="langadapt"):
        conversations, stats = copy_task_conversations(texts, count=10, sentence_share=0.5, language="eu", seed=0)
    assert stats == {"sentences": 3, "paragraphs": 1, "continuations": 0, "requested": 10} and len(conversations) == 4
    assert "yielded 4 of the 10 examples" in caplog.text
    with pytest.raises(LangadaptError, match="no built-in copy-task instructions for language 'xh'"):
        copy_task_conversations(texts, count=1, sentence_share=1.0, language="xh", seed=0)
    custom, _ = copy_task_conversations(texts, count=1, sentence_share=1.0, language="xh", seed=0,
                                        instructions=["Phinda: {text}"])
    assert custom[0][0]["content"] == "Phinda: " + custom[0][1]["content"]


def test_continuation_examples_give_a_first_half_and_answer_the_second(basque_texts) -> None:
    kwargs = {"count": 40, "sentence_share": 0.5, "language": "eu", "seed": 3, "max_paragraph_chars": 600}
    conversations, stats = copy_task_conversations(basque_texts, continuation_share=0.25, **kwargs)
    assert stats == {"sentences": 15, "paragraphs": 15, "continuations": 10, "requested": 40}
    corpus = {" ".join(t.split()) for t in basque_texts}
    continued = []
    for question, answer in conversations:
        template = next((t for t in CONTINUATION_INSTRUCTIONS["eu"] if question["content"].startswith(t[:-6])), None)
        if template is None:  # a copy example
            assert any(question["content"] == t.format(text=answer["content"]) for t in COPY_TASK_INSTRUCTIONS["eu"])
            continue
        start = question["content"][len(template) - len("{text}"):]
        whole = f"{start} {answer['content']}"
        words = whole.split(" ")
        assert whole in corpus and start == " ".join(words[: len(words) // 2])  # split between words, at half
        continued.append(whole)
    assert len(continued) == 10 and len(set(continued)) == 10
    # Without continuations the copy examples are exactly those of a copy-only task.
    plain, _ = copy_task_conversations(basque_texts, **kwargs)
    zero, _ = copy_task_conversations(basque_texts, continuation_share=0.0, **kwargs)
    assert zero == plain
    with pytest.raises(LangadaptError, match="no built-in continuation instructions for language 'xh'"):
        copy_task_conversations(basque_texts, count=4, sentence_share=1.0, language="xh", seed=0,
                                instructions=["Phinda: {text}"], continuation_share=0.5)
