"""The `eval:` config section: which models to evaluate, on which texts and tasks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from langadapt.schema import InputPath, ModelRef, Section

# Names in `eval.models` that refer to the run rather than to a model folder.
RUN_MODELS = ("base", "instruct")
STAGE_MODELS = ("embed", "cpt", "lep", "sft", "dpo")


class BpcSection(Section):
    """Bits per character on the data stage's held-out texts (`data.eval_sources`)."""

    sources: list[str] | None = Field(default=None, description="eval source names; default: all of them")
    max_texts: int | None = Field(default=None, ge=1, description="score the first N texts of each source")
    max_length: int = Field(default=1024, ge=8)
    stride: int | None = Field(default=None, ge=1, description="default: max_length // 2")


class McTaskConfig(Section):
    """A local multiple-choice task: JSONL with question, choices, answer (0-based) and optional context."""

    path: InputPath
    fewshot_path: InputPath | None = None
    num_fewshot: int = Field(default=0, ge=0)
    language: str | None = Field(default=None, description="prompt language; default: target_language")
    answer_format: Literal["letter", "text"] = "letter"
    scoring: list[Literal["loglik", "loglik_norm", "first_token"]] = Field(
        default_factory=lambda: ["loglik", "loglik_norm", "first_token"], min_length=1)
    template: str | None = Field(default=None, description="fields: {context} {question} {question_label} {options}")
    answer_prefix: str | None = None
    chat_template: bool | Literal["auto"] = "auto"
    max_items: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _fewshot_needs_file(self) -> McTaskConfig:
        if self.num_fewshot and self.fewshot_path is None:
            raise ValueError("num_fewshot > 0 needs fewshot_path (a file of examples in the task's format)")
        return self


class CopyTaskConfig(Section):
    """DaruCopy on held-out texts: `source` names a data eval source, or `path` a JSONL with `text`."""

    kind: Literal["sentence", "paragraph"]
    source: str | None = None
    path: InputPath | None = None
    language: str | None = None
    min_chars: int = Field(default=0, ge=0)
    max_chars: int | None = Field(default=None, ge=1)
    max_items: int | None = Field(default=20, ge=1)
    max_new_tokens: int | None = Field(default=None, ge=1, description="default: 128 sentence, 1024 paragraph")
    instruction: str | None = Field(default=None, description="with {text}; default: per language")

    @model_validator(mode="after")
    def _one_origin(self) -> CopyTaskConfig:
        if (self.source is None) == (self.path is None):
            raise ValueError("set exactly one of source (a data.eval_sources name) or path (a JSONL file)")
        return self


class GenerateTaskConfig(Section):
    """Answers to a prompt file (`prompt`, optional `reference` for ROUGE)."""

    path: InputPath
    language: str | None = None
    max_items: int | None = Field(default=None, ge=1)
    max_new_tokens: int = Field(default=128, ge=1)


class JudgeSection(Section):
    """An OpenAI-compatible chat endpoint that grades generated answers 1-5."""

    url: str
    model: str
    api_key_env: str | None = Field(default="OPENAI_API_KEY", description="environment variable holding the key")


class LmEvalSection(Section):
    """lm-evaluation-harness tasks run on every evaluated model (needs `pip install langadapt[eval]`)."""

    tasks: list[str] = Field(min_length=1)
    include_path: InputPath | None = None
    num_fewshot: int | None = Field(default=None, ge=0)
    limit: float | None = Field(default=None, gt=0)
    batch_size: int = Field(default=1, ge=1)
    apply_chat_template: bool | Literal["auto"] = "auto"


class EvalConfig(Section):
    """Which models to evaluate on which texts and tasks."""

    models: list[ModelRef] = Field(
        default_factory=lambda: ["base", "instruct", *STAGE_MODELS], min_length=1,
        description="base/instruct (models.*), stage names (that stage's model/), or model refs; absent ones skipped",
    )
    chat_models: list[str] = Field(
        default_factory=lambda: ["instruct", "lep", "sft", "dpo"],
        description="labels of models prompted through their chat template where a task says 'auto'",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_tokens: int = Field(default=4096, ge=64, description="prompt tokens per forward pass in MC scoring")
    bpc: BpcSection | None = Field(default_factory=BpcSection)
    mc: dict[str, McTaskConfig] = Field(default_factory=dict)
    copy_tasks: dict[str, CopyTaskConfig] = Field(default_factory=dict, alias="copy")
    generate: dict[str, GenerateTaskConfig] = Field(default_factory=dict)
    judge: JudgeSection | None = None
    lm_eval: LmEvalSection | None = None
