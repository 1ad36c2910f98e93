"""The `embed` pipeline stage: the base model resized to the vocab stage's tokenizer, new rows initialised.

Output: `<run>/embed/model/`, an HF model folder (safetensors, the new tokenizer with its token_map.json,
chat template, generation config). Metrics: row counts (kept / new / fallback / special), row norms.
"""

from __future__ import annotations

from typing import Any

from langadapt.config import RunConfig
from langadapt.embeddings.config import EmbedConfig
from langadapt.pipeline import StageContext, stage


def _models(cfg: RunConfig) -> list[str]:
    return [cfg.models.base]


@stage("embed", config=EmbedConfig, needs=("vocab",), produces=("model",),
       uses=("models.base", "models.tokenizer", "models.trust_remote_code"), external_inputs=_models)
def embed_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    from langadapt.embeddings.surgery import embed_model

    assert cfg.embed is not None
    metrics = embed_model(
        cfg.models.base, ctx.inputs["vocab"] / "tokenizer", ctx.out / "model", cfg.embed.method,
        base_tokenizer=ctx.tokenizer_for(cfg.models.base), seed=cfg.seed, trust_remote_code=cfg.models.trust_remote_code,
    )
    metrics["summary"] = {
        "vocab size": metrics["vocab_size"], "new rows": metrics["new_rows"],
        "fallback rows": metrics["fallback_rows"], "init s": metrics["init_seconds"],
    }
    return metrics
