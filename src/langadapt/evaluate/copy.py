"""DaruCopy (Darumeru / llmtf_open `CopyText`): can the model repeat a text verbatim?

A vocabulary-adapted model that copies badly has either lost the new tokens (it spells words with the
old fine-grained ones, so its output is much longer in tokens) or garbles the text. Two metrics:

- **sentence** copy, `len` = min(p/s, s/p): p = tokens the model generated, s = tokens of the reference
  under the evaluated model's own tokenizer, capped at the generation budget (128 in Darumeru);
- **paragraph** copy, `lcs` = 1 when the characters of difflib's matching blocks between prediction and
  reference, divided by len(prediction), reach 0.99 (character level; a correct but truncated copy passes,
  as in the reference code). An empty output scores 0 in both.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from statistics import fmean
from typing import TYPE_CHECKING, Any, Literal

from langadapt.evaluate.generation import Generation, generate_greedy

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

CopyKind = Literal["sentence", "paragraph"]

# Darumeru's generation budgets: 128 new tokens for a sentence, 1024 for a paragraph.
DEFAULT_MAX_NEW_TOKENS: dict[str, int] = {"sentence": 128, "paragraph": 1024}
LCS_THRESHOLD = 0.99

# The instruction per language ({text} is the text to copy). Override with `instruction=`.
COPY_INSTRUCTIONS: dict[str, str] = {
    "en": "Copy the following text exactly, without changing anything:\n\n{text}",
    "eu": "Kopiatu hurrengo testua zehazki, ezer aldatu gabe:\n\n{text}",
    "ru": "Скопируйте следующий текст дословно, ничего не меняя:\n\n{text}",
    "lt": "Tiksliai nukopijuokite šį tekstą nieko nekeisdami:\n\n{text}",
}


def length_score(generated_tokens: int, reference_tokens: int, cap: int = DEFAULT_MAX_NEW_TOKENS["sentence"]) -> float:
    """DaruCopy `len`: min(p/s, s/p) with s = min(reference tokens, cap); 0 for an empty output."""
    s = min(reference_tokens, cap)
    if generated_tokens <= 0 or s <= 0:
        return 0.0
    return min(generated_tokens / s, s / generated_tokens)


def lcs_ratio(prediction: str, reference: str) -> float:
    """Characters in difflib's matching blocks / len(prediction), both stripped; 0 for an empty output."""
    prediction, reference = prediction.strip(), reference.strip()
    if not prediction:
        return 0.0
    matcher = difflib.SequenceMatcher(None, prediction, reference, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / len(prediction)


def lcs_score(prediction: str, reference: str, threshold: float = LCS_THRESHOLD) -> float:
    """DaruCopy `lcs`: 1.0 when `lcs_ratio` reaches the threshold, else 0.0."""
    return 1.0 if lcs_ratio(prediction, reference) >= threshold else 0.0


@dataclass(frozen=True)
class CopyResult:
    kind: CopyKind
    score: float  # mean `len` (sentence) or mean `lcs` (paragraph)
    exact: float  # share of outputs identical to the reference (stripped)
    chars_per_generated_token: float  # how long the tokens the model uses are (Darumeru logs it too)
    words_per_second: float
    items: list[dict[str, Any]]

    def to_dict(self, *, with_items: bool = True) -> dict[str, Any]:
        summary = {
            "kind": self.kind, "score": round(self.score, 6), "exact": round(self.exact, 6),
            "chars_per_generated_token": round(self.chars_per_generated_token, 4),
            "words_per_second": round(self.words_per_second, 3), "n": len(self.items),
        }
        return {**summary, "items": self.items} if with_items else summary


def score_copies(
    tokenizer: PreTrainedTokenizerBase, references: list[str], outputs: list[Generation], kind: CopyKind,
    max_new_tokens: int,
) -> tuple[float, list[dict[str, Any]]]:
    """Per-item DaruCopy scores of already generated outputs and their mean."""
    items = []
    for reference, output in zip(references, outputs, strict=True):
        if kind == "sentence":
            ref_tokens = len(tokenizer(reference, add_special_tokens=False)["input_ids"])
            score = length_score(output.tokens, ref_tokens, cap=max_new_tokens)
            detail: dict[str, Any] = {"reference_tokens": ref_tokens}
        else:
            ratio = lcs_ratio(output.text, reference)
            score = 1.0 if ratio >= LCS_THRESHOLD else 0.0
            detail = {"lcs_ratio": round(ratio, 6)}
        items.append({"reference": reference, "prediction": output.text, "generated_tokens": output.tokens,
                      "score": score, **detail})
    return (fmean(item["score"] for item in items) if items else 0.0), items


def copy_task(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    kind: CopyKind,
    language: str = "en",
    instruction: str | None = None,
    chat_template: bool = True,
    max_new_tokens: int | None = None,
    batch_size: int = 8,
) -> CopyResult:
    """Ask the model to copy each text (greedy), then score the outputs with DaruCopy's metric."""
    max_new_tokens = max_new_tokens or DEFAULT_MAX_NEW_TOKENS[kind]
    template = instruction or COPY_INSTRUCTIONS.get(language, COPY_INSTRUCTIONS["en"])
    prompts = [template.format(text=text) for text in texts]
    run = generate_greedy(model, tokenizer, prompts, max_new_tokens=max_new_tokens, chat_template=chat_template,
                          batch_size=batch_size)
    score, items = score_copies(tokenizer, texts, run.outputs, kind, max_new_tokens)
    chars = sum(len(g.text) for g in run.outputs)
    tokens = sum(g.tokens for g in run.outputs)
    exact = fmean(g.text == t.strip() for g, t in zip(run.outputs, texts, strict=True)) if texts else 0.0
    return CopyResult(kind, score, exact, chars / tokens if tokens else 0.0, run.words_per_second, items)
