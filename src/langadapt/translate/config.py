"""The `translate:` config section: what to translate, with which backend, and which rows to keep."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator

from langadapt.llm_client import EndpointSettings
from langadapt.schema import InputPath, ModelRef, Section

TranslateRef = Annotated[str, StringConstraints(pattern=r"^translate:[A-Za-z0-9_.-]+$")]
"""`translate:NAME` in sft.data / dpo.data: the translate stage's output of dataset NAME."""

DataFile = Annotated[TranslateRef | InputPath, Field(union_mode="left_to_right")]
"""An entry of sft.data / dpo.data: a file, or `translate:NAME`."""

DEFAULT_PROMPT = (
    "Translate the following text from {source_language} to {target_language}. Keep every tag such as <m0> "
    "exactly as it is. Reply with the translation only.\n\n{text}"
)


class _PromptedBackend(Section):
    prompt: str = Field(
        default=DEFAULT_PROMPT,
        description="template with {text}, {source_language} and {target_language} (English language names)",
    )

    @field_validator("prompt")
    @classmethod
    def _text_slot(cls, value: str) -> str:
        if "{text}" not in value:
            raise ValueError("a prompt template needs a {text} placeholder (also allowed: {source_language}, "
                             "{target_language})")
        return value


class Seq2SeqBackendConfig(Section):
    """A transformers encoder-decoder MT model: Marian/opus-mt, NLLB, M2M100, MADLAD."""

    kind: Literal["seq2seq"]
    model: ModelRef
    family: Literal["auto", "marian", "nllb", "m2m100", "madlad"] = Field(
        default="auto", description="how language codes are passed; auto reads the model and tokenizer"
    )
    num_beams: int = Field(default=1, ge=1, description="1 = greedy")
    max_new_tokens: int = Field(default=256, ge=1)
    batch_size: int = Field(default=16, ge=1, description="segments per generate call (sorted by length)")
    max_segment_chars: int = Field(default=400, ge=16, description="longer lines are split at sentences, then spaces")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="auto = bfloat16 on a GPU that has it, else float32"
    )


class EndpointBackendConfig(EndpointSettings, _PromptedBackend):
    """An OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server, TGI, a hosted API)."""

    kind: Literal["endpoint"]
    system: str | None = Field(default=None, description="a system message sent before the prompt")
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=1024, ge=1, description="per reply")
    max_segment_chars: int = Field(default=2000, ge=16)


class CausalBackendConfig(_PromptedBackend):
    """A local causal LM prompted to translate (any instruct model; the builtin one works, weakly)."""

    kind: Literal["causal_lm"]
    model: ModelRef
    chat_template: bool = Field(default=True, description="wrap the prompt in the model's chat template")
    max_new_tokens: int = Field(default=128, ge=1, description="per segment; generation also stops at a newline")
    batch_size: int = Field(default=8, ge=1)
    max_segment_chars: int = Field(default=300, ge=16)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    trust_remote_code: bool = False


BackendConfig = Annotated[
    Seq2SeqBackendConfig | EndpointBackendConfig | CausalBackendConfig, Field(discriminator="kind")
]


class FilterSettings(Section):
    """Which translated rows are dropped (each reason counted; the rows go to the side file)."""

    language: bool = Field(default=True, description="drop rows lingua does not read as the target language")
    min_language_confidence: float = Field(default=0.5, ge=0, le=1)
    min_length_ratio: float = Field(default=0.5, gt=0, description="translated / source characters, per field")
    max_length_ratio: float = Field(default=2.5, gt=0)
    min_chars: int = Field(
        default=20, ge=1, description="texts shorter than this skip the language, length-ratio and copy checks"
    )
    untranslated: bool = Field(default=True, description="drop fields that came back (mostly) unchanged")
    max_repeats: int = Field(
        default=4,
        ge=2,
        description="drop a field where a word n-gram repeats this often in a row (and not in the source)",
    )


class RoundTripSettings(Section):
    """Translate back to the source language and drop rows whose back-translation drifted too far."""

    min_chrf: float = Field(default=30.0, ge=0, le=100, description="chrF (0-100) of back-translation vs source")


class DatasetSpec(Section):
    path: InputPath = Field(description="an instruction file (alpaca, chat, Q/A, preference or prompt rows)")
    limit: int | None = Field(default=None, ge=1, description="translate only the first N rows")


class TranslateConfig(Section):
    """Translate instruction/preference files into the target language before sft/dpo."""

    source_language: str = Field(default="en", description="ISO 639 code of the files' language")
    target_language: str | None = Field(default=None, description="default: the run's target_language")
    backend: BackendConfig
    datasets: dict[str, DatasetSpec] = Field(
        default_factory=dict, description="name -> file; sft/dpo name the result as translate:NAME"
    )
    system_prompts: Literal["translate", "keep"] = "translate"
    filters: FilterSettings = Field(default_factory=FilterSettings)
    round_trip: RoundTripSettings | None = None
    cache: InputPath | None = Field(
        default=None, description="SQLite cache file; default <output_dir>/.cache/translate.sqlite"
    )

    @field_validator("source_language", "target_language")
    @classmethod
    def _language_code(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z]{2,3}(_[A-Z][a-z]{3})?", value):
            raise ValueError(f"expects an ISO 639 code such as 'en' or 'eu', got {value!r}")
        return value

    @field_validator("datasets", mode="before")
    @classmethod
    def _path_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: {"path": spec} if isinstance(spec, str) else spec for name, spec in value.items()}
        return value

    @field_validator("datasets")
    @classmethod
    def _names(cls, value: dict[str, DatasetSpec]) -> dict[str, DatasetSpec]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
                raise ValueError(f"dataset name {name!r} must be letters, digits, '_', '-' or '.'")
        return value
