"""The `vocab` pipeline stage: build the target-language tokenizer from the data stage's corpus.

Output: `<run>/vocab/tokenizer/`, an HF tokenizer folder with `token_map.json` inside. Metrics: how the
build went, and original vs new tokenizer statistics on every eval text of the data stage.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain, islice
from pathlib import Path
from typing import Any

from langadapt.config import RunConfig
from langadapt.data.corpus import corpus_file, eval_file, read_texts
from langadapt.errors import LangadaptError
from langadapt.pipeline import StageContext, stage
from langadapt.vocab.config import VocabConfig


def training_sources(cfg: RunConfig) -> list[str]:
    """`vocab.sources`, or every data source written in the target language."""
    assert cfg.vocab is not None
    if cfg.vocab.sources is not None:
        return _known_sources(cfg, cfg.vocab.sources, "sources")
    names = [n for n, s in cfg.data.sources.items() if s.language == cfg.target_language]
    if not names:
        raise LangadaptError(
            f"vocab: no data source has language '{cfg.target_language}' — set data.sources.<name>.language "
            "or list the sources to train on in vocab.sources"
        )
    return names


def english_sources(cfg: RunConfig) -> list[str]:
    """`vocab.english_sources`, or every data source written in English (optimized only)."""
    assert cfg.vocab is not None
    if cfg.vocab.english_sources is not None:
        return _known_sources(cfg, cfg.vocab.english_sources, "english_sources")
    return [n for n, s in cfg.data.sources.items() if s.language == "en"]


def _known_sources(cfg: RunConfig, names: list[str], key: str) -> list[str]:
    unknown = [n for n in names if n not in cfg.data.sources]
    if unknown or not names:
        raise LangadaptError(
            f"vocab.{key}: {', '.join(unknown) or '(empty list)'} — name sources of data.sources "
            f"({', '.join(cfg.data.sources)})"
        )
    return names


def _preflight(cfg: RunConfig) -> None:
    training_sources(cfg)
    if cfg.vocab is not None and cfg.vocab.method == "optimized":
        english_sources(cfg)


def _tokenizer_files(cfg: RunConfig) -> list[str]:
    """The base tokenizer's own files (not its weights): an edit to them must rebuild the vocabulary."""
    ref = cfg.models.base_tokenizer
    if Path(ref).is_dir():
        return [str(Path(ref) / pattern) for pattern in ("tokenizer*", "special_tokens_map.json", "chat_template*")]
    return [ref]


def _texts(data_dir: Path, names: list[str], limit: int | None) -> Iterator[str]:
    texts = chain.from_iterable(read_texts(corpus_file(data_dir, name)) for name in names)
    return islice(texts, limit)


@stage(
    "vocab", config=VocabConfig, needs=("data",), produces=("tokenizer",),
    uses=("models.base", "models.tokenizer", "target_language"), external_inputs=_tokenizer_files,
    preflight=_preflight,
)
def vocab_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    from langadapt.vocab.base import BaseTokenizer
    from langadapt.vocab.build import build_vocabulary, save_vocabulary
    from langadapt.vocab.metrics import compare_tokenizers

    section = cfg.vocab
    assert section is not None
    data_dir = ctx.inputs["data"]
    base = BaseTokenizer.load(cfg.models.base_tokenizer, trust_remote_code=cfg.models.trust_remote_code)
    sources = training_sources(cfg)
    english = None
    if section.method == "optimized":
        english_names = english_sources(cfg)
        english = _texts(data_dir, english_names, section.english_documents) if english_names else None
    ctx.log.info("training a %d-token %s tokenizer on %s (%s)", section.vocab_size, section.method,
                 ", ".join(sources), base.family)
    vocabulary = build_vocabulary(
        base, _texts(data_dir, sources, section.max_documents), method=section.method,
        vocab_size=section.vocab_size, keep=section.keep, english=english, merges=section.merges,
        min_frequency=section.min_frequency,
    )
    tokenizer = save_vocabulary(vocabulary, base, ctx.out / "tokenizer")
    ctx.log.info("%s: %d tokens (%d new)", section.method, vocabulary.info["vocab_size"], vocabulary.info["new_tokens"])

    eval_texts = {name: list(read_texts(eval_file(data_dir, name))) for name in cfg.data.eval_sources}
    comparison = compare_tokenizers({"original": base.hf, "new": tokenizer}, eval_texts)
    original, new = comparison["tokenizers"]["original"], comparison["tokenizers"]["new"]
    evaluation = {name: {"original": original["texts"][name], "new": new["texts"][name]} for name in eval_texts}
    summary: dict[str, Any] = {"vocab size": vocabulary.info["vocab_size"], "new tokens": vocabulary.info["new_tokens"]}
    for name, pair in evaluation.items():
        before, after = pair["original"]["chars_per_token"], pair["new"]["chars_per_token"]
        if before and after:
            summary[f"{name} ×chars/tok"] = round(after / before, 4)
        ctx.log.info("%s: chars/token %.3f → %.3f", name, before or 0, after or 0)
    return {
        "build": {**vocabulary.info, "sources": sources, "family": base.family},
        "overlap": new["overlap"],
        "eval": evaluation,
        "summary": summary,
    }
