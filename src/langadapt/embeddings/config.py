"""The `embed:` config section: how the rows of tokens new to the model are initialised."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from langadapt.schema import Section

InitMethod = Literal["mean", "normal", "random"]


class EmbedConfig(Section):
    """Resize the base model to the vocab stage's tokenizer and initialise the new rows."""

    method: InitMethod = Field(
        default="mean",
        description="mean: mean of the old rows of the token's sub-tokens (the LEP paper's); normal: sampled "
        "from N(mean, covariance) of the old rows; random: N(0, initializer_range), a baseline only",
    )
