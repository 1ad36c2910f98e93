"""The `eval:` section's own settings: which models to evaluate and how; each task adds its key (`tasks.py`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from langadapt.judge import JudgeConfig
from langadapt.schema import ModelRef, Section

# Names in `eval.models` that refer to the run's configured models rather than to a stage or a folder.
RUN_MODELS = ("base", "instruct")


class EvalConfig(Section):
    """Which models to evaluate and how; every registered task adds its own key (bpc, mc, copy, ...)."""

    models: list[ModelRef] | None = Field(
        default=None, min_length=1,
        description="base/instruct (models.*), stage names (that stage's model/), or model refs; default: base, "
        "instruct and every stage that wrote a model; names this run lacks are skipped",
    )
    chat_models: list[str] | None = Field(
        default=None,
        description="labels of models prompted through their chat template where a task says 'auto'; default: "
        "instruct and the stages whose models are chat models (lep, sft, dpo)",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_tokens: int = Field(default=4096, ge=64, description="prompt tokens per forward pass in MC scoring")
    judge: JudgeConfig | None = None
