"""`embed.method: auto` and `langadapt embed probe`: try several init methods, keep the best at step 0.

Each listed method initialises the new rows (plus the configured calibration); the resized model is scored
in bits/char on held-out documents of the TRAINING corpus (target and English sides — never the eval
sets, which would leak), and the method with the lowest target bits/char whose English bits/char is within
`english_limit` of the original model's wins. When none is, the one with the least English regression wins,
with a warning. The table goes into the manifest and the report.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import torch

from langadapt.embeddings.config import AutoConfig
from langadapt.embeddings.registry import ProbeTexts
from langadapt.errors import LangadaptError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger("langadapt.embed")


def score(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int
) -> float | None:
    from langadapt.evaluate.bpc import bits_per_character

    if not texts:
        return None
    return round(bits_per_character(model, tokenizer, texts, max_length=max_length).bits_per_char, 5)


def choose(rows: list[dict[str, Any]], original_english: float | None, limit: float) -> tuple[str, bool]:
    """The method with the lowest target bits/char among those within the English limit; (name, limit met)."""
    def regression(row: dict[str, Any]) -> float:
        if original_english is None or row["english_bpc"] is None:
            return 0.0
        return row["english_bpc"] / original_english - 1

    eligible = [row for row in rows if regression(row) <= limit]
    if eligible:
        return min(eligible, key=lambda row: row["target_bpc"])["method"], True
    return min(rows, key=regression)["method"], False


def probe_table(
    model: PreTrainedModel, old_tokenizer: PreTrainedTokenizerBase, new_tokenizer: PreTrainedTokenizerBase,
    candidates: dict[str, tuple[dict[str, torch.Tensor], dict[str, Any]]], install: Any, texts: ProbeTexts,
    config: AutoConfig,
) -> tuple[str, dict[str, Any]]:
    """Score the original model, then each candidate's matrices (`install(matrices)` puts them in `model`).

    `candidates`: method -> (new-vocabulary matrices, its figures). Returns the winner and the table.
    """
    if not texts.target:
        raise LangadaptError("embed.method auto: no held-out target-language document to probe on — add a source "
                             "with the target language to data.sources")
    original = {"target_bpc": score(model, old_tokenizer, texts.target, config.max_length),
                "english_bpc": score(model, old_tokenizer, texts.english, config.max_length)}
    rows = []
    for name, (matrices, figures) in candidates.items():
        started = time.perf_counter()
        install(matrices)
        row = {"method": name, "target_bpc": score(model, new_tokenizer, texts.target, config.max_length),
               "english_bpc": score(model, new_tokenizer, texts.english, config.max_length), **figures}
        if original["english_bpc"] and row["english_bpc"] is not None:
            row["english_regression"] = round(row["english_bpc"] / original["english_bpc"] - 1, 5)
        row["score_seconds"] = round(time.perf_counter() - started, 2)
        rows.append(row)
        log.info("probe %s: target %.4f, English %s bits/char", name, row["target_bpc"], row["english_bpc"])
    chosen, met = choose(rows, original["english_bpc"], config.english_limit)
    if not met:
        log.warning("probe: no method keeps English within %.1f %% of the original — chose %s (least regression)",
                    100 * config.english_limit, chosen)
    table = {"original": original, "methods": rows, "chosen": chosen, "english_limit": config.english_limit,
             "limit_met": met, "documents": {"target": len(texts.target), "english": len(texts.english)}}
    return chosen, table
