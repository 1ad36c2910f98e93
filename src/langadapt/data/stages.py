"""The `data` pipeline stage: read every configured source, write the corpus, record its statistics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langadapt.config import RunConfig
from langadapt.data.corpus import TextWriter, corpus_file, eval_file
from langadapt.data.sources import ReadStats, iter_documents, source_files
from langadapt.data.stats import text_stats
from langadapt.errors import LangadaptError
from langadapt.pipeline import StageContext, stage


def _source_paths(cfg: RunConfig) -> Iterable[str]:
    for source in (*cfg.data.sources.values(), *cfg.data.eval_sources.values()):
        yield source.path


def _preflight(cfg: RunConfig) -> None:
    for group, sources in (("sources", cfg.data.sources), ("eval_sources", cfg.data.eval_sources)):
        for name, source in sources.items():
            source_files(source, name)  # raises a one-line error when nothing matches
            first = next(iter_documents(source.model_copy(update={"max_documents": 1}), name), None)
            if first is None:
                raise LangadaptError(
                    f"data.{group}.{name}: '{source.path}' holds no documents — check the file and text_field"
                )


@stage("data", uses=("models.base", "models.tokenizer"), external_inputs=_source_paths, preflight=_preflight)
def data_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    from langadapt.models import load_tokenizer

    tokenizer_ref = cfg.models.base_tokenizer
    tokenizer = load_tokenizer(tokenizer_ref, trust_remote_code=cfg.models.trust_remote_code)
    metrics: dict[str, Any] = {"tokenizer": tokenizer_ref, "sources": {}, "eval": {}}
    for group, sources, where in (("sources", cfg.data.sources, corpus_file), ("eval", cfg.data.eval_sources, eval_file)):
        for name, source in sources.items():
            read = ReadStats()
            with TextWriter(where(ctx.out, name)) as writer:
                stats = text_stats(writer.passthrough(iter_documents(source, name, read)), tokenizer)
            if writer.count == 0:
                raise LangadaptError(f"data source '{name}' produced no documents — check its path and text_field")
            stats.update(language=source.language, invalid_utf8=read.invalid_utf8, invalid_json=read.invalid_json,
                         missing_field=read.missing_field)
            metrics[group][name] = stats
            ctx.log.info("%s: %d documents, %.2f tokens/word", name, stats["documents"], stats["tokens_per_word"])
    metrics["summary"] = {"documents": sum(s["documents"] for s in metrics["sources"].values())}
    for name, stats in metrics["sources"].items():
        metrics["summary"][f"{name} tok/word"] = stats["tokens_per_word"]
    return metrics
