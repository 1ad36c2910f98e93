"""The `lep:` config section (filled by the embedding-surgery/LEP issue)."""

from __future__ import annotations

from langadapt.schema import Section


class LepConfig(Section):
    """Learned Embedding Propagation from the adapted base into the instruct model."""
