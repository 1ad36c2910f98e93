"""The `embed` pipeline stage: the base model resized to the vocab stage's tokenizer, new rows initialised.

Output: `<run>/embed/model/`, an HF model folder (safetensors, the new tokenizer with its token_map.json,
chat template, generation config). Metrics: row counts (kept / new / fallback / special), row norms, the
method's own figures, the calibration's and, with `method: auto`, the probe table. Corpus-based methods read
the data stage's corpus (`data/corpus/`).
"""

from __future__ import annotations

from typing import Any

from langadapt.config import RunConfig
from langadapt.embeddings.config import EmbedConfig
from langadapt.pipeline import StageContext, stage


def _models(cfg: RunConfig) -> list[str]:
    return [cfg.models.base]


def _preflight(cfg: RunConfig) -> None:
    from langadapt.embeddings.registry import AUTO, get_method, registered_methods, unknown_method_message
    from langadapt.errors import LangadaptError

    assert cfg.embed is not None
    names = cfg.embed.auto.methods if cfg.embed.method == AUTO else [cfg.embed.method]
    for name in names:
        get_method(name)
    known = registered_methods()
    for name, options in cfg.embed.options.items():
        if name not in known:
            raise LangadaptError(unknown_method_message(name, known, "embed.options"))
        known[name].parse_options(options)
    calibration = cfg.embed.calibration
    shared = next((key for key in ("shared_offset", "shared_direction") if calibration and getattr(calibration, key)),
                  None)
    if any(known[n].needs_corpus for n in names) or cfg.embed.method == AUTO or shared:
        languages = {s.language for s in cfg.data.sources.values()} if cfg.data else set()
        if cfg.target_language not in languages:
            what = f"embed.calibration.{shared}" if shared else f"embed.method {cfg.embed.method}"
            raise LangadaptError(
                f"{what} reads the target corpus, but no data source has language: {cfg.target_language} — "
                f"set `language` on the target source, or use method mean without {shared or 'shared_offset'}"
            )


@stage("embed", config=EmbedConfig, needs=("vocab",), produces=("model",),
       uses=("models.base", "models.tokenizer", "models.trust_remote_code", "target_language"),
       external_inputs=_models, preflight=_preflight, version=2)
def embed_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    from langadapt.embeddings.corpus import run_corpus
    from langadapt.embeddings.registry import AUTO, Corpus
    from langadapt.embeddings.surgery import embed_model

    assert cfg.embed is not None
    corpus = Corpus()
    if "data" in ctx.inputs and cfg.data is not None:
        probe = cfg.embed.auto.documents if cfg.embed.method == AUTO else 0
        corpus = run_corpus(ctx.inputs["data"], {n: s.language for n, s in cfg.data.sources.items()},
                            cfg.target_language, probe_documents=probe)
    metrics = embed_model(
        cfg.models.base, ctx.inputs["vocab"] / "tokenizer", ctx.out / "model", cfg.embed,
        base_tokenizer=ctx.tokenizer_for(cfg.models.base), seed=cfg.seed,
        trust_remote_code=cfg.models.trust_remote_code,
        corpus=corpus,
    )
    metrics["summary"] = {
        "method": metrics["method"], "vocab size": metrics["vocab_size"], "new rows": metrics["new_rows"],
        "fallback rows": metrics["fallback_rows"], "init s": metrics["init_seconds"],
    }
    return metrics
