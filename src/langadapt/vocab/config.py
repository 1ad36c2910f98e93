"""The `vocab:` config section (filled by the vocabulary-adaptation issue)."""

from __future__ import annotations

from langadapt.schema import Section


class VocabConfig(Section):
    """Tokenizer training and merging."""
