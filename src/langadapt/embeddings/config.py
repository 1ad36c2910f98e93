"""The `embed:` config section (filled by the embedding-surgery issue)."""

from __future__ import annotations

from langadapt.schema import Section


class EmbedConfig(Section):
    """Resize the model to the new tokenizer and initialise the new rows."""
