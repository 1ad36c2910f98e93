"""The `cpt:`, `sft:` and `dpo:` config sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from langadapt.judge import JudgeConfig
from langadapt.schema import InputPath, Section
from langadapt.translate.config import DataFile

# The attention kernels transformers can load; "auto" lets transformers choose (sdpa where it can).
Attention = Literal["auto", "sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3"]
# "auto": bf16 mixed precision on a GPU that supports it, fp32 otherwise (CPU).
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Reporter = Literal["tensorboard", "wandb", "trackio", "none"]


class LoraConfig(Section):
    """LoRA adapters on the transformer body; merged into the weights at the end of training."""

    r: int = Field(default=64, ge=1)
    alpha: float = Field(default=128.0, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = Field(
        default="all-linear", description="module names to adapt; 'all-linear' = attention + MLP, not the head"
    )
    train_embeddings: bool = Field(
        default=True, description="also train the input embeddings and LM head in full (new tokens need it)"
    )


class LaunchConfig(Section):
    """How `langadapt run` starts the training processes (one process in-line by default)."""

    num_processes: int = Field(default=1, ge=1, description="processes (GPUs) to train on")
    config_file: InputPath | None = Field(
        default=None, description="an accelerate config, e.g. configs/accelerate/deepspeed-zero2.yaml"
    )

    @property
    def distributed(self) -> bool:
        return self.num_processes > 1 or self.config_file is not None


class CptConfig(Section):
    """Continued pre-training on the packed corpus. Defaults are the LEP recipe (embeddings only, AdamW
    β 0.9/0.95, ε 1e-5, weight decay 0.1, cosine with 100 warm-up steps, LR 1e-4)."""

    mode: Literal["full", "embeddings", "lora"] = "embeddings"
    learning_rate: float = Field(default=1e-4, gt=0)
    embedding_lr: float | None = Field(
        default=None, gt=0, description="learning rate of the input embeddings and LM head; default learning_rate"
    )
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    warmup_steps: int = Field(default=100, ge=0)
    decay_ratio: float = Field(default=0.1, gt=0, le=1, description="wsd: share of the steps spent decaying")
    min_lr_ratio: float = Field(default=0.0, ge=0, lt=1, description="cosine/wsd: final LR as a share of the peak")
    weight_decay: float = Field(default=0.1, ge=0)
    adam_beta1: float = Field(default=0.9, ge=0, lt=1)
    adam_beta2: float = Field(default=0.95, ge=0, lt=1)
    adam_epsilon: float = Field(default=1e-5, gt=0)
    max_grad_norm: float = Field(default=1.0, ge=0, description="gradient clipping; 0 disables it")
    optimizer: str = Field(default="adamw_torch_fused", description="a transformers `optim` name, e.g. adamw_8bit")
    batch_size: int = Field(default=4, ge=1, description="blocks per device per micro-step")
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1, description="optimizer steps; overrides epochs")
    precision: Precision = "auto"
    attention: Attention = "auto"
    gradient_checkpointing: bool = False
    save_steps: int = Field(default=500, ge=1)
    save_total_limit: int = Field(
        default=2, ge=2, description="checkpoints kept; ≥ 2 so a crash while rotating never leaves none intact"
    )
    keep_checkpoint: bool = Field(
        default=False, description="move the final checkpoint (with optimizer state) into the stage folder"
    )
    logging_steps: int = Field(default=10, ge=1)
    report_to: list[Reporter] = Field(default_factory=lambda: ["tensorboard"])
    dataloader_workers: int = Field(default=0, ge=0)
    lora: LoraConfig | None = Field(default=None, description="LoRA settings (mode: lora)")
    launch: LaunchConfig = Field(default_factory=LaunchConfig)

    @model_validator(mode="after")
    def _lora_only_with_lora_mode(self) -> CptConfig:
        if self.lora is not None and self.mode != "lora":
            raise ValueError(f"a lora section is set but mode is '{self.mode}' — set mode: lora or remove lora")
        # Keys that would be ignored: refused when given a value of their own (a dumped config that is read
        # back carries the defaults, which must still validate).
        fields = type(self).model_fields
        if self.decay_ratio != fields["decay_ratio"].default and self.schedule != "wsd":
            raise ValueError(f"'decay_ratio' only applies to schedule 'wsd', not '{self.schedule}' — remove it")
        if self.min_lr_ratio != fields["min_lr_ratio"].default and self.schedule == "constant":
            raise ValueError("'min_lr_ratio' does not apply to schedule 'constant' (the LR never decays) — remove it")
        return self

    @property
    def lora_settings(self) -> LoraConfig:
        return self.lora or LoraConfig()


# ---------------------------------------------------------------------------------------------------------
# Instruction tuning and preference alignment.
# ---------------------------------------------------------------------------------------------------------

class TuningLoraConfig(LoraConfig):
    """LoRA on the transformer body for SFT/DPO: smaller defaults than CPT's, optionally on some layers only."""

    r: int = Field(default=16, ge=1)
    alpha: float = Field(default=32.0, gt=0)
    layers: list[int] | None = Field(
        default=None, description="only these transformer layers (negative counts from the end; LEP: [0, -1])"
    )
    train_embeddings: bool | Literal["auto"] = Field(
        default="auto",
        description="train input embeddings + LM head in full; auto = when the vocabulary differs from the "
        "original model's (new tokens must learn)",
    )


class TuningConfig(Section):
    """Training settings shared by SFT and DPO."""

    mode: Literal["lora", "full"] = "lora"
    lora: TuningLoraConfig = Field(default_factory=TuningLoraConfig)
    chat_template: str | None = Field(
        default=None,
        description="for a model without a chat template: 'chatml' or a .jinja file; ignored when it has one",
    )
    max_length: int = Field(
        default=2048, ge=16, description="tokens per example; longer ones lose whole trailing turns or are dropped"
    )
    learning_rate: float = Field(default=1e-4, gt=0)
    embedding_lr: float | None = Field(
        default=None, gt=0, description="learning rate of the input embeddings and LM head; default learning_rate"
    )
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, ge=0, description="gradient clipping; 0 disables it")
    batch_size: int = Field(default=8, ge=1, description="examples per device per micro-step")
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1, description="optimizer steps; overrides epochs")
    precision: Precision = "auto"
    gradient_checkpointing: bool = False
    logging_steps: int = Field(default=10, ge=1)
    save_steps: int = Field(default=500, ge=1, description="checkpoint (in the stage's work folder) every N steps")

    @model_validator(mode="after")
    def _lora_only_with_lora_mode(self) -> TuningConfig:
        if self.mode == "full" and "lora" in self.model_fields_set:
            raise ValueError("a lora section is set but mode is 'full' — set mode: lora or remove lora")
        return self


class SftCopyTaskConfig(Section):
    """LEP calibration's copy task: target-language instructions to repeat a corpus text verbatim."""

    count: int = Field(default=1000, ge=1, description="examples to generate")
    sentence_share: float = Field(default=0.5, ge=0, le=1, description="share of single sentences; rest paragraphs")
    source: str | None = Field(
        default=None, description="data source to draw from; default: the first with language = target_language"
    )
    min_chars: int = Field(default=20, ge=1)
    max_sentence_chars: int = Field(default=300, ge=1)
    max_paragraph_chars: int = Field(default=2000, ge=1)
    instructions: list[str] | None = Field(
        default=None, min_length=1, description="instruction templates with {text}; default: built-in per language"
    )
    continuation_share: float = Field(
        default=0.0, ge=0, lt=1, description="share of examples that give a text's first half and answer the second")
    continuation_instructions: list[str] | None = Field(
        default=None, min_length=1, description="continuation templates with {text}; default: built-in per language"
    )

    @field_validator("instructions", "continuation_instructions")
    @classmethod
    def _has_placeholder(cls, value: list[str] | None) -> list[str] | None:
        for template in value or []:
            if "{text}" not in template:
                raise ValueError(f"instruction {template[:40]!r} has no {{text}} placeholder — add it")
        return value


class CalibrationJudgeConfig(JudgeConfig):
    """The judge of self-calibration answers: the endpoint, and the grade an answer needs to be kept."""

    threshold: int = Field(default=4, ge=1, le=5, description="keep answers graded at least this")


class SelfCalibrationConfig(Section):
    """LEP self-calibration: the original instruct model answers prompts greedily; filtered answers become SFT data."""

    prompts: list[InputPath] = Field(min_length=1, description="files of prompts (any instruction format)")
    count: int | None = Field(default=None, ge=1, description="use at most this many prompts")
    max_new_tokens: int = Field(default=512, ge=1)
    batch_size: int = Field(default=8, ge=1)
    min_chars: int = Field(default=1, ge=0, description="drop answers shorter than this")
    max_chars: int | None = Field(default=None, ge=1, description="drop answers longer than this")
    drop_unfinished: bool = Field(default=True, description="drop answers cut off by max_new_tokens")
    language_filter: bool = Field(default=True, description="keep only answers in target_language (lingua)")
    min_language_confidence: float = Field(default=0.5, ge=0, le=1)
    judge: CalibrationJudgeConfig | None = None


class SftConfig(TuningConfig):
    """Instruction tuning / calibration: instruction files, the copy task and self-calibration, mixed."""

    data: list[DataFile] = Field(
        default_factory=list,
        description="instruction files (formats auto-detected), or translate:NAME for a translate stage output")
    copy_task: SftCopyTaskConfig | None = None
    self_calibration: SelfCalibrationConfig | None = None

    @model_validator(mode="after")
    def _has_data(self) -> SftConfig:
        if not self.data and self.copy_task is None and self.self_calibration is None:
            raise ValueError("no training data — set data (instruction files), copy_task or self_calibration")
        return self


class DpoConfig(TuningConfig):
    """Preference alignment (DPO / IPO) on preference files; LoRA uses the adapter-free model as reference."""

    data: list[DataFile] = Field(
        min_length=1, description="preference files (prompt, chosen, rejected), or translate:NAME")
    beta: float = Field(default=0.1, gt=0, description="strength of the pull towards the reference model")
    loss_type: Literal["sigmoid", "ipo"] = "sigmoid"
    max_prompt_length: int | None = Field(default=None, ge=1, description="drop pairs whose prompt is longer")
    learning_rate: float = Field(default=5e-6, gt=0)
