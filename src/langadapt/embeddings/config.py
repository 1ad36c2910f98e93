"""The `embed:` config section: how the rows of tokens new to the model are initialised.

Method names and per-method options are checked against the init-method registry by the stage's preflight
(`langadapt validate`), not here, so that reading a config does not import torch.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from langadapt.schema import Section


class CalibrationConfig(Section):
    """`embed.calibration`: corrections of the new rows' output side, combinable with any method."""

    norm: bool = Field(default=False, description="rescale each new output row to its sub-tokens' mean row norm")
    offset: bool = Field(default=True, description="cap a new token's logit on English at its first sub-token's")
    quantile: float = Field(default=0.98, gt=0, le=1, description="share of English positions the cap holds at")
    english_documents: int = Field(default=256, ge=1, description="English documents the offsets are measured on")
    shared_offset: bool = Field(
        default=False, description="one logit offset for every new token, fitted by likelihood on target + English"
    )
    shared_direction: bool = Field(
        default=False, description="one vector added to the rows of each group of new tokens (a context-dependent "
        "class offset), fitted by L2-regularised likelihood on target + English; instead of shared_offset"
    )
    direction_word_start: bool = Field(
        default=False, description="shared direction: one for the new tokens that start a word (Ġ…/▁…), one for "
        "those that continue one"
    )
    direction_clusters: int = Field(
        default=1, ge=1, description="shared direction: split the new tokens (each side, with direction_word_start) "
        "into this many clusters of similar rows, with a direction each"
    )
    direction_passes: int = Field(
        default=2, ge=1, description="tied: fits of the shared direction, each on what the model reads after the "
        "one before (the shift moves the input rows too)"
    )
    target_documents: int = Field(
        default=512, ge=1, description="target documents the shared offset or direction is fitted on"
    )
    max_length: int = Field(default=256, ge=8, description="tokens per English document")

    @model_validator(mode="after")
    def _one_shared_shift(self) -> CalibrationConfig:
        if self.shared_offset and self.shared_direction:
            raise ValueError("shared_offset and shared_direction both shift every new row — keep one (the "
                             "direction contains the offset)")
        if not self.shared_direction and (self.direction_word_start or self.direction_clusters != 1):
            raise ValueError("direction_word_start and direction_clusters group the shared direction — set "
                             "shared_direction: true, or remove them")
        return self


class AutoConfig(Section):
    """`embed.auto`: the methods `method: auto` probes and how it chooses."""

    methods: list[str] = Field(default=["mean", "convex", "distill"], min_length=1)
    english_limit: float = Field(
        default=0.01, ge=0, description="largest English bits/char regression allowed (0.01 = 1 %)"
    )
    documents: int = Field(default=32, ge=1, description="held-out training documents scored per side")
    max_length: int = Field(default=256, ge=8, description="tokens per scored document (sliding window)")


class EmbedConfig(Section):
    """Resize the base model to the vocab stage's tokenizer and initialise the new rows."""

    method: str = Field(
        default="mean",
        description="a registered init method (mean, normal, random, convex, distill, ...) or auto: probe "
        "`auto.methods` and keep the best at step 0",
    )
    options: dict[str, dict[str, object]] = Field(
        default_factory=dict,
        description="per-method options, e.g. {distill: {steps: 24}}; each method validates its own",
    )
    calibration: CalibrationConfig | None = Field(default=None, description="output-side calibration, or null")
    auto: AutoConfig = Field(default_factory=AutoConfig)
