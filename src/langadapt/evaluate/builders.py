"""Build multiple-choice items from an aligned (English ↔ target) paragraph corpus, from real text.

- `translation_mc_items`: MMLU-style, a long shared context (consecutive target-language paragraphs of one
  document); the question quotes one and asks for its English translation; the distractors are English
  paragraphs of the same document. Hard for a 135M model: letter answers sit at chance.
- `continuation_mc_items`: a cloze a small model can show signal on — the first half of a target-language
  paragraph, and its true second half among the second halves of other paragraphs of the same document
  (same topic, same words), scored as text continuations (`answer_format: continuation`).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict

from langadapt.evaluate.mc import McItem

QUESTION = {
    "eu": "Zein da paragrafo honen ingelesezko itzulpena? «{paragraph}»",
    "ru": "Какой перевод этого абзаца на английский верен? «{paragraph}»",
    "lt": "Koks yra šios pastraipos vertimas į anglų kalbą? „{paragraph}“",
    "en": "Which is the English translation of this paragraph? \"{paragraph}\"",
}


def translation_mc_items(
    pairs: Iterable[dict[str, str]],
    language: str,
    *,
    n: int,
    seed: int = 0,
    passage_paragraphs: int = 6,
    min_chars: int = 40,
) -> list[McItem]:
    """Up to `n` items from records with `id` ("<document>#<paragraph>"), `en` and `<language>` fields."""
    documents: dict[str, list[dict[str, str]]] = defaultdict(list)
    for pair in pairs:
        if len(pair["en"]) >= min_chars and len(pair[language]) >= min_chars:
            documents[pair["id"].split("#")[0]].append(pair)
    rng = random.Random(seed)
    names = sorted(name for name, paras in documents.items() if len(paras) >= 4)
    rng.shuffle(names)
    template = QUESTION.get(language, QUESTION["en"])
    items: list[McItem] = []
    for name in names:
        paragraphs = documents[name]
        start = rng.randrange(max(1, len(paragraphs) - passage_paragraphs + 1))
        passage = paragraphs[start : start + passage_paragraphs]
        target = rng.choice(passage)
        others = {p["en"]: p for p in paragraphs if p["en"] != target["en"]}  # distinct English sides
        if len(others) < 3:
            continue
        distractors = rng.sample(sorted(others.values(), key=lambda p: p["id"]), 3)
        choices = [target["en"], *(p["en"] for p in distractors)]
        rng.shuffle(choices)
        items.append(McItem(
            question=template.format(paragraph=target[language]),
            choices=choices,
            answer=choices.index(target["en"]),
            context="\n".join(p[language] for p in passage),
        ))
        if len(items) >= n:
            break
    return items


def continuation_mc_items(
    pairs: Iterable[dict[str, str]], language: str, *, n: int, seed: int = 0, min_chars: int = 60,
    max_chars: int = 300,
) -> list[McItem]:
    """Up to `n` cloze items from records with `id` ("<document>#<paragraph>") and `<language>` text."""
    documents: dict[str, list[str]] = defaultdict(list)
    for pair in pairs:
        text = " ".join(pair[language].split())
        if min_chars <= len(text) <= max_chars:
            documents[pair["id"].split("#")[0]].append(text)
    rng = random.Random(seed)
    items: list[McItem] = []
    halves: list[tuple[str, str, str]] = []  # (document, start, rest)
    for name in sorted(documents):
        for text in dict.fromkeys(documents[name]):  # distinct paragraphs, in order
            words = text.split(" ")
            cut = max(2, round(len(words) * 0.5))
            if cut >= len(words) - 1:
                continue
            halves.append((name, " ".join(words[:cut]), " ".join(words[cut:])))
    rng.shuffle(halves)
    by_document: dict[str, list[str]] = defaultdict(list)
    for name, _, rest in halves:
        by_document[name].append(rest)
    for name, start, rest in halves:
        others = sorted({r for r in by_document[name] if r != rest})
        if len(others) < 3:
            continue
        choices = [rest, *rng.sample(others, 3)]
        rng.shuffle(choices)
        items.append(McItem(question=start, choices=choices, answer=choices.index(rest)))
        if len(items) >= n:
            break
    return items


def item_records(items: list[McItem]) -> list[dict[str, object]]:
    """JSON-ready records in the task-file format."""
    return [{k: v for k, v in asdict(item).items() if v is not None} for item in items]
