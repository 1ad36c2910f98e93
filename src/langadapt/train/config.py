"""The `cpt:`, `sft:` and `dpo:` config sections."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from langadapt.schema import InputPath, Section

# The attention kernels transformers can load; "auto" lets transformers choose (sdpa where it can).
Attention = Literal["auto", "sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3"]
# "auto": bf16 mixed precision on a GPU that supports it, fp32 otherwise (CPU).
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Reporter = Literal["tensorboard", "wandb", "trackio", "none"]


class LoraSettings(Section):
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


class LaunchSettings(Section):
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
    lora: LoraSettings | None = Field(default=None, description="LoRA settings (mode: lora)")
    launch: LaunchSettings = Field(default_factory=LaunchSettings)

    @model_validator(mode="after")
    def _lora_only_with_lora_mode(self) -> CptConfig:
        if self.lora is not None and self.mode != "lora":
            raise ValueError(f"a lora section is set but mode is '{self.mode}' — set mode: lora or remove lora")
        return self

    @property
    def lora_settings(self) -> LoraSettings:
        return self.lora or LoraSettings()


# ---------------------------------------------------------------------------------------------------------
# Instruction tuning and preference alignment.
# ---------------------------------------------------------------------------------------------------------


class SftConfig(Section):
    """Instruction tuning / calibration."""


class DpoConfig(Section):
    """Preference alignment."""
