"""The `lep:` config section: how the adapted base's embeddings are mapped into the instruct model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from langadapt.schema import Section

LepMethod = Literal["swap", "overlap", "conversion"]


class LepConfig(Section):
    """Learned Embedding Propagation from the adapted base into the instruct model."""

    method: LepMethod = Field(
        default="conversion",
        description="swap: the donor's rows as they are; overlap: a d×d map fitted on the tokens shared by the "
        "old and new vocabularies; conversion: a map fitted on every new-vocabulary row after projecting "
        "base and instruct with the sub-token mean operator (the paper's default)",
    )
    allow_trained_body: bool = Field(
        default=False,
        description="allow LEP after cpt.mode full/lora: only the donor's embeddings are propagated, its trained "
        "body is dropped (LEP assumes the donor has B's body)",
    )
