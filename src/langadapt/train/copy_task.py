"""The copy task (LEP calibration, arXiv 2412.21140 §5): target-language instructions to repeat a corpus
sentence or paragraph verbatim. It pushes an adapted model to read and write its new long tokens.

Optionally a share of *continuation* examples: the first half of a corpus text, answered by its second half.
Copying alone wears down what CPT taught about reading a passage for what follows (cloze `mutual_info` 0.47
after CPT, 0.37 after copy-only calibration; docs/benchmarks.md, "Cloze scorings")."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable

from langadapt.data.instruct import Conversation
from langadapt.errors import LangadaptError

log = logging.getLogger("langadapt.train.copy_task")

# Several phrasings per language, so the model learns the task rather than one sentence ({text} is the text).
COPY_TASK_INSTRUCTIONS: dict[str, list[str]] = {
    "en": [
        "Copy the following text exactly, without changing anything:\n\n{text}",
        "Repeat this text word for word:\n\n{text}",
        "Rewrite the text below exactly as it is:\n\n{text}",
    ],
    "eu": [
        "Kopiatu hurrengo testua zehazki, ezer aldatu gabe:\n\n{text}",
        "Errepikatu testu hau hitzez hitz:\n\n{text}",
        "Idatzi berriro beheko testua, dagoen bezala:\n\n{text}",
    ],
    "ru": [
        "Скопируйте следующий текст дословно, ничего не меняя:\n\n{text}",
        "Повторите этот текст слово в слово:\n\n{text}",
        "Перепишите текст ниже точно так, как он есть:\n\n{text}",
    ],
    "lt": [
        "Tiksliai nukopijuokite šį tekstą nieko nekeisdami:\n\n{text}",
        "Pakartokite šį tekstą žodis žodin:\n\n{text}",
        "Perrašykite žemiau esantį tekstą lygiai taip, kaip jis parašytas:\n\n{text}",
    ],
}


CONTINUATION_INSTRUCTIONS: dict[str, list[str]] = {
    "en": ["Continue this text:\n\n{text}", "Write how this text goes on:\n\n{text}"],
    "eu": ["Jarraitu testu hau:\n\n{text}", "Idatzi nola jarraitzen duen testu honek:\n\n{text}"],
    "ru": ["Продолжите этот текст:\n\n{text}", "Напишите, как продолжается этот текст:\n\n{text}"],
    "lt": ["Tęskite šį tekstą:\n\n{text}", "Parašykite, kaip šis tekstas tęsiasi:\n\n{text}"],
}
MIN_CONTINUATION_WORDS = 4  # two to read, two to write


_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a paragraph: split after . ! ? … followed by white space."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def copy_task_conversations(
    texts: Iterable[str],
    *,
    count: int,
    sentence_share: float,
    language: str,
    seed: int,
    min_chars: int = 20,
    max_sentence_chars: int = 300,
    max_paragraph_chars: int = 2000,
    instructions: list[str] | None = None,
    continuation_share: float = 0.0,
    continuation_instructions: list[str] | None = None,
) -> tuple[list[Conversation], dict[str, int]]:
    """Copy-task conversations: a random instruction with a corpus sentence or paragraph, answered by that text;
    `continuation_share` of them instead give a text's first half (split between words) and answer its second.

    Sentences and paragraphs (whole documents) are drawn uniformly from the stream with reservoir sampling, so a
    large corpus is read once in constant memory; duplicates are skipped. Returns fewer examples than asked when
    the corpus has too few texts in the length limits (the counts say so).
    """
    templates = instructions or COPY_TASK_INSTRUCTIONS.get(language)
    if not templates:
        raise LangadaptError(
            f"no built-in copy-task instructions for language '{language}' — set sft.copy_task.instructions "
            "(templates with {text})"
        )
    continue_templates = continuation_instructions or CONTINUATION_INSTRUCTIONS.get(language)
    if continuation_share and not continue_templates:
        raise LangadaptError(
            f"no built-in continuation instructions for language '{language}' — set "
            "sft.copy_task.continuation_instructions (templates with {text})"
        )
    rng = random.Random(seed)
    want_continuations = round(count * continuation_share)
    want_sentences = round((count - want_continuations) * sentence_share)
    sentences = _Reservoir(want_sentences, rng)
    paragraphs = _Reservoir(count - want_continuations - want_sentences, rng)
    continuations = _Reservoir(want_continuations, rng)
    for text in texts:
        text = text.strip()
        text_sentences = split_sentences(text)
        if min_chars <= len(text) <= max_paragraph_chars:
            if len(text_sentences) > 1:
                paragraphs.offer(text)
            words = text.split()
            if len(words) >= MIN_CONTINUATION_WORDS:
                continuations.offer(" ".join(words))
        for sentence in text_sentences:
            if min_chars <= len(sentence) <= max_sentence_chars:
                sentences.offer(sentence)
    chosen = [*sentences.items, *paragraphs.items]
    rng.shuffle(chosen)
    conversations = [
        [{"role": "user", "content": rng.choice(templates).format(text=text)}, {"role": "assistant", "content": text}]
        for text in chosen
    ]
    if continuations.items and continue_templates:
        for text in continuations.items:
            words = text.split(" ")
            start, rest = " ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])
            conversations.append([{"role": "user", "content": rng.choice(continue_templates).format(text=start)},
                                  {"role": "assistant", "content": rest}])
        rng.shuffle(conversations)
    stats = {"sentences": len(sentences.items), "paragraphs": len(paragraphs.items),
             "continuations": len(continuations.items), "requested": count}
    if len(conversations) < count:
        log.warning("copy task: the corpus yielded %d of the %d examples asked for", len(conversations), count)
    return conversations, stats


class _Reservoir:
    """Uniform sample of `size` distinct items from a stream (Algorithm R)."""

    def __init__(self, size: int, rng: random.Random):
        self.size, self.rng = size, rng
        self.items: list[str] = []
        self._members: set[str] = set()
        self._seen = 0

    def offer(self, item: str) -> None:
        if self.size == 0 or item in self._members:
            return
        self._seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
            self._members.add(item)
            return
        slot = self.rng.randrange(self._seen)
        if slot < self.size:
            self._members.discard(self.items[slot])
            self.items[slot] = item
            self._members.add(item)
