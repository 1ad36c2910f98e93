"""The `vocab:` config section: which tokenizer to build for the target language, and from what."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from langadapt.schema import Section

Method = Literal["bpe", "unigram", "extended", "optimized"]
MergeOrder = Literal["continue", "append", "prepend"]


class VocabConfig(Section):
    """Train a target-language tokenizer on the data stage's corpus and combine it with the base's."""

    method: Method = Field(
        default="extended",
        description="bpe / unigram: replace the vocabulary; extended: append new tokens to the original one; "
        "optimized: prune the original to `keep` tokens, then extend",
    )
    vocab_size: int = Field(
        default=16000, ge=1,
        description="size of the target-language tokenizer trained on the corpus (extended/optimized append its "
        "tokens the base lacks)",
    )
    keep: int | None = Field(default=None, ge=1, description="optimized: how many original tokens are kept")
    merges: MergeOrder = Field(
        default="continue",
        description="extended/optimized: how new merges join the original ones (see docs/config.md)",
    )
    min_frequency: int = Field(default=2, ge=1, description="a merge must occur this often in the corpus")
    sources: list[str] | None = Field(
        default=None, description="data sources to train on; default: those whose language is target_language"
    )
    english_sources: list[str] | None = Field(
        default=None, description="optimized: sources of the English frequency sample; default: language 'en'"
    )
    english_documents: int = Field(
        default=20000, ge=1, description="optimized: documents of the English frequency sample"
    )
    max_documents: int | None = Field(default=None, ge=1, description="train on at most this many documents")

    @model_validator(mode="after")
    def _keep_matches_method(self) -> VocabConfig:
        if self.method == "optimized" and self.keep is None:
            raise ValueError("method 'optimized' needs 'keep' (how many original tokens to keep)")
        if self.method != "optimized" and self.keep is not None:
            raise ValueError(f"'keep' only applies to method 'optimized', not '{self.method}' — remove it")
        ignored = {"merges": ("extended", "optimized"), "english_sources": ("optimized",),
                   "english_documents": ("optimized",)}
        for key, methods in ignored.items():
            if key in self.model_fields_set and self.method not in methods:
                raise ValueError(f"'{key}' only applies to method {' or '.join(repr(m) for m in methods)}, not "
                                 f"'{self.method}' — remove it")
        return self
