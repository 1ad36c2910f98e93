"""Masking and segmenting: what must survive translation comes back byte for byte; texts rebuild exactly."""

from __future__ import annotations

import random

import pytest

from langadapt.translate.masking import mask, strip_tags, unmask
from langadapt.translate.segment import join_pieces, split_text

TRICKY = (
    "Install it with `pip install langadapt[eval]` and read https://example.com/docs/a_(b)?q=1#x. Write to "
    "help@example.org, fill in {name}, {{ user.email }}, %s, %(count)d, %1$s, ${HOME} and {0:.2f}; solve $x^2 + 1$ "
    "or $$\\int_0^1 f(x)\\,dx$$ or \\(a+b\\). It costs $5 and $10.\n\n```python\ndef f(x):\n    return {x: 1}\n```\n"
    "A literal <m0> stays, 50% of people agree (www.example.net/page)."
)


def test_every_protected_span_is_masked_and_restored_byte_for_byte() -> None:
    masked = mask(TRICKY)
    assert masked.spans == (
        "`pip install langadapt[eval]`", "https://example.com/docs/a_(b)?q=1#x", "help@example.org", "{name}",
        "{{ user.email }}", "%s", "%(count)d", "%1$s", "${HOME}", "{0:.2f}", "$x^2 + 1$", "$$\\int_0^1 f(x)\\,dx$$",
        "\\(a+b\\)", "```python\ndef f(x):\n    return {x: 1}\n```", "<m0>", "www.example.net/page",
    )
    assert "$5 and $10" in masked.text and "50% of people" in masked.text  # money and percentages are text
    assert unmask(masked.text, masked.spans) == (TRICKY, None)


def test_tags_may_move_and_change_spacing_but_must_come_back_once() -> None:
    masked = mask("Open {file} and `run` it.")
    assert masked.text == "Open <m0> and <m1> it."
    assert unmask("Ireki < m1 > eta <M0>.", masked.spans) == ("Ireki `run` eta {file}.", None)
    assert unmask("Ireki <m0>.", masked.spans)[1] == "placeholder_lost"
    assert unmask("Ireki <m0> <m0> <m1>.", masked.spans)[1] == "placeholder_altered"
    assert unmask("Ireki <m0> <m1> <m7>.", masked.spans)[1] == "placeholder_altered"
    assert strip_tags(masked.text) == "Open   and   it."


@pytest.mark.parametrize("url", ["https://a.org/x.", "https://a.org/x,", "(see https://a.org/x)"])
def test_sentence_punctuation_after_a_url_stays_text(url: str) -> None:
    assert mask(url).spans == ("https://a.org/x",)


def test_split_keeps_layout_outside_segments_and_rebuilds_exactly() -> None:
    text = "## Steps\n\n1. Open the file. Then save it!\n  - a note  \n<m0>\n42\n"
    pieces = split_text(text, max_chars=400)
    assert [p.text for p in pieces if p.translate] == ["Steps", "Open the file. Then save it!", "a note"]
    assert join_pieces(pieces, {}) == text
    translated = {i: p.text.upper() for i, p in enumerate(pieces) if p.translate}
    assert join_pieces(pieces, translated) == "## STEPS\n\n1. OPEN THE FILE. THEN SAVE IT!\n  - A NOTE  \n<m0>\n42\n"


def test_long_lines_split_at_sentences_then_spaces_within_the_limit() -> None:
    line = "One short sentence. " + "word " * 30 + "end. Last one?"
    pieces = split_text(line.strip(), max_chars=40)
    segments = [p.text for p in pieces if p.translate]
    assert segments[0] == "One short sentence." and segments[-1].endswith("Last one?")
    assert all(len(s) <= 40 and s == s.strip() for s in segments)
    assert join_pieces(pieces, {}) == line.strip()


def test_random_texts_always_rebuild_and_respect_the_limit() -> None:
    rng = random.Random(0)
    alphabet = "ab cd. ef! \n\n- 1. x  y\t.z`{}<m0>"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        limit = rng.randint(16, 40)
        masked = mask(text)
        pieces = split_text(masked.text, limit)
        assert join_pieces(pieces, {}) == masked.text
        assert unmask(masked.text, masked.spans)[0] == text
        assert all(len(p.text) <= limit and "\n" not in p.text for p in pieces if p.translate)
