"""Eval reports built by hand, with per-item data chosen so every interval and flag is known exactly.

The Russian case of issue 13 in miniature: three eval sources (in-domain target, out-of-domain target,
English) of ten 10-character documents, base → cpt → sft. cpt improves the in-domain source by exactly
1 bit/char on every document and makes the out-of-domain one worse by exactly 1.5 bits/char on every
document (a regression whose paired interval is the point 1.5); on English one document gets 1 bit worse
(+0.01 bits/char overall, no clear change). sft changes no bits/char. MC has 4 items and copy 2: their
changes get intervals but no verdict (fewer than `MIN_ITEMS` items).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from langadapt.config import RunConfig, validate_config
from langadapt.evaluate.runner import PreparedTask
from langadapt.evaluate.stages import eval_metrics
from langadapt.evaluate.tasks import EVAL_TASKS
from tests.tiny import EU_DEV

CHARS = [10] * 10
BITS = {  # model -> source -> bits per document
    "base": {"dev": [31] * 10, "ood": [36] * 10, "english": [15] * 10},
    "cpt": {"dev": [21] * 10, "ood": [51] * 10, "english": [15] * 9 + [16]},
    "sft": {"dev": [21] * 10, "ood": [51] * 10, "english": [15] * 9 + [16]},
}
CORRECT = {"base": [True, False, False, False], "cpt": [True, True, False, False], "sft": [True, True, True, True]}
OUTPUTS = {
    "base": ["Kaixo mundua", "ez dakit"],
    "cpt": ["Kaixo mundua!", "Egun on"],
    "sft": ["Kaixo mundua", "Egun on"],
}
LANGUAGES = {"dev": "eu", "ood": "eu", "english": "en"}


def run_config(tmp_path: Path) -> RunConfig:
    sources = {name: {"path": str(EU_DEV), "text_field": "en" if language == "en" else "eu", "language": language}
               for name, language in LANGUAGES.items()}
    return validate_config({
        "name": "constructed", "output_dir": str(tmp_path / "run"), "target_language": "eu",
        "models": {"base": "builtin:smollm2-135m-instruct"},
        "data": {"sources": {"eu": {"path": str(EU_DEV), "text_field": "eu"}}, "eval_sources": sources},
        "eval": {"mc": {"t": {"path": str(EU_DEV)}}, "copy": {"c": {"kind": "paragraph", "source": "dev"}}},
    }, base_dir=tmp_path)


def report(model: str) -> dict[str, Any]:
    bpc = {source: {"language": LANGUAGES[source], "bits_per_char": sum(bits) / sum(CHARS),
                    "per_document": {"nll_nats": [b * math.log(2) for b in bits], "characters": CHARS}}
           for source, bits in BITS[model].items()}
    mc = {
        "t": {
            "task": "t",
            "n": 4,
            "accuracy": {"loglik": sum(CORRECT[model]) / 4},
            "items": [{"answer": 0, "loglik": {"prediction": 0 if ok else 1, "correct": ok}} for ok in CORRECT[model]],
        }
    }
    references = ["Kaixo mundua", "Egun on"]
    copy = {"c": {"kind": "paragraph", "items": [{"reference": ref, "prediction": out, "score": float(ref == out),
                                                   "exact": ref == out}
                                                   for ref, out in zip(references, OUTPUTS[model], strict=True)]}}
    headline = {**{f"{s} bpc": round(v["bits_per_char"], 4) for s, v in bpc.items()},
                **{f"{s} tok/word": 2.0 for s in bpc},
                "mc:t loglik": mc["t"]["accuracy"]["loglik"],
                "copy:c lcs": sum(item["score"] for item in copy["c"]["items"]) / 2}
    return {"model": model, "bpc": bpc, "mc": mc, "copy": copy, "headline": headline}


def prepared_tasks(cfg: RunConfig) -> list[PreparedTask]:
    tasks = EVAL_TASKS.items()
    section = cfg.section("eval")
    return [(tasks["bpc"], section.bpc, None), (tasks["mc"], section.mc, None),
            (tasks["copy"], section.copy_tasks, None)]


def constructed_metrics(tmp_path: Path) -> dict[str, Any]:
    cfg = run_config(tmp_path)
    return eval_metrics(cfg, [report(m) for m in ("base", "cpt", "sft")], prepared_tasks(cfg), [])
