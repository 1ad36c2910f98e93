"""The data-layer stages.

- `data` (before `vocab`): read, clean, language-ID and deduplicate every source into
  `data/corpus/<source>.jsonl.gz` and `data/eval/<name>.jsonl.gz`, with per-filter counts.
- `pack` (after `vocab`): tokenise the corpus with the tokenizer the model trains with, mix sources by
  tokens and pack `pack/dataset/` (see `langadapt.data.pack`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from langadapt.config import RunConfig
from langadapt.data.config import PackConfig
from langadapt.data.corpus import corpus_file
from langadapt.data.sources import is_hub_source, iter_documents, source_files
from langadapt.errors import LangadaptError
from langadapt.pipeline import StageContext, stage
from langadapt.preflight import input_files_checked


def _source_paths(cfg: RunConfig) -> Iterable[str]:
    for source in (*cfg.data.sources.values(), *cfg.data.eval_sources.values()):
        yield source.path


def _preflight(cfg: RunConfig) -> None:
    from langadapt.data.langid import lingua_language
    from langadapt.data.preflight import check_language_sample

    for group, sources in (("sources", cfg.data.sources), ("eval_sources", cfg.data.eval_sources)):
        for name, source in sources.items():
            if source.language and cfg.data.langid is not None:
                lingua_language(source.language)
            if is_hub_source(source) or not input_files_checked():
                continue  # reading the first row needs the network; the stage reports problems
            source_files(source, name)  # raises a one-line error when nothing matches
            if next(iter_documents(source, name, limit=1), None) is None:
                raise LangadaptError(
                    f"data.{group}.{name}: '{source.path}' holds no documents — check the file and text_field"
                )
    check_language_sample(cfg.data, cfg.target_language)


@stage("data", produces=("corpus",), uses=("models.base", "models.tokenizer", "target_language"),
       unhashed=("data.executor", "data.token_count_every"),
       external_inputs=_source_paths, preflight=_preflight, version=2)
def data_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    from langadapt.data.ingest import ingest_corpus
    from langadapt.models import load_tokenizer

    tokenizer_ref = ctx.tokenizer_for(cfg.models.base)
    tokenizer = load_tokenizer(tokenizer_ref, trust_remote_code=cfg.models.trust_remote_code)
    metrics = ingest_corpus(cfg.data, seed=cfg.seed, target_language=cfg.target_language, tokenizer=tokenizer,
                            out=ctx.out, work=ctx.work, log=ctx.log)
    metrics["tokenizer"] = tokenizer_ref
    return {**metrics, "summary": _summary(metrics)}


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    sources = metrics["sources"]
    summary: dict[str, Any] = {
        "documents": sum(s["documents"] for s in sources.values()),
        "removed": sum(s["read"] - s["documents"] for s in sources.values()),
        "duplicates": sum(s["duplicates"] for s in sources.values()),
        "MB/s": metrics["throughput"]["mb_per_s"],
    }
    for name, stats in sources.items():
        summary[f"{name} tok/word"] = stats["tokens_per_word"]
    return summary


def _pack_preflight(cfg: RunConfig) -> None:
    assert cfg.pack is not None
    if cfg.pack.mix is not None:
        unknown = sorted(set(cfg.pack.mix) - set(cfg.data.sources))
        missing = sorted(set(cfg.data.sources) - set(cfg.pack.mix))
        if unknown:
            raise LangadaptError(
                f"pack.mix names {', '.join(unknown)}, which data.sources lacks ({', '.join(cfg.data.sources)})"
            )
        if missing:
            raise LangadaptError(
                f"pack.mix leaves out {', '.join(missing)} — give every data source a share (0 leaves it out)"
            )


@stage("pack", config=PackConfig, needs=("data",), after=("vocab",), produces=("dataset",),
       uses=("models.base", "models.tokenizer"), unhashed=("pack.workers",), preflight=_pack_preflight)
def pack_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    from langadapt.data.pack import pack_corpus
    from langadapt.models import langadapt_home, load_tokenizer

    section = cfg.pack
    assert section is not None
    tokenizer_ref = ctx.upstream_tokenizer()  # the tokenizer the model trains with
    tokenizer = load_tokenizer(tokenizer_ref, trust_remote_code=cfg.models.trust_remote_code)
    corpus = {name: corpus_file(ctx.inputs["data"], name) for name in cfg.data.sources}
    cache_dir = Path(section.cache_dir) if section.cache_dir else langadapt_home() / "cache" / "tokens"
    result = pack_corpus(corpus, tokenizer, section, ctx.out / "dataset", seed=cfg.seed, cache_dir=cache_dir,
                         log=ctx.log)
    result["tokenizer"] = "vocab/tokenizer" if tokenizer_ref != cfg.models.base_tokenizer else tokenizer_ref
    achieved = result["mix"]["achieved_token_share"]
    result["summary"] = {
        "blocks": result["blocks"], "tokens": result["tokens"], "packing eff.": result["packing_efficiency"],
        **{f"{name} share": share for name, share in achieved.items()},
    }
    return result
