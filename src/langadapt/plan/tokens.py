"""How many tokens each stage trains on, and where each figure comes from.

In order of preference: the run folder's own records (the data stage's per-source token counts, the pack
stage's blocks); what the config fixes (`pack.total_tokens`, `max_steps`); a sample estimate — every word of
each local source counted, tokens per word measured on its first documents with the tokenizer the model will
train with when its `tokenizer.json` is on this machine, else an assumed `DEFAULT_TOKENS_PER_WORD`. Hub
datasets are never read: their counts stay unknown unless the config fixes them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from langadapt.config import RunConfig
from langadapt.data.config import SourceConfig
from langadapt.runstore import RunStore

DEFAULT_TOKENS_PER_WORD = 2.0  # assumed when no tokenizer is available offline (English BPEs: ~1.3; others 1.5-3)


@dataclass(frozen=True)
class Count:
    """A number of tokens (or examples), None when unknown, and the sentence that says where it came from."""

    value: int | None
    basis: str


class TokenCounter:
    """Tokens of texts under one tokenizer (a tokenizer.json read with `tokenizers`; no model, no torch)."""

    def __init__(self, tokenizer_json: Path | None, label: str):
        self.label = label
        self._tokenizer = None
        if tokenizer_json is not None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(tokenizer_json))

    @property
    def available(self) -> bool:
        return self._tokenizer is not None

    def tokens_per_word(self, texts: list[str], default: float) -> tuple[float, str]:
        words = sum(len(t.split()) for t in texts)
        if self._tokenizer is None or not words:
            return default, f"assumed {default} tokens/word (no tokenizer.json for {self.label} on this machine)"
        tokens = sum(len(e.ids) for e in self._tokenizer.encode_batch(texts, add_special_tokens=False))
        return tokens / words, f"{tokens / words:.3f} tokens/word measured with {self.label}"


def training_counter(ref: str, run_dir: Path | None = None) -> TokenCounter:
    """A counter for the tokenizer the model trains with: the vocab stage's output in `run_dir` when it ran,
    else `ref`'s tokenizer.json if it is on this machine (a local folder, a materialised builtin, the Hugging
    Face cache — never a download); a counter without a tokenizer otherwise."""
    from langadapt.models import builtin_folder

    if run_dir is not None and (run_dir / "vocab" / "tokenizer" / "tokenizer.json").is_file():
        return TokenCounter(run_dir / "vocab" / "tokenizer" / "tokenizer.json", "the vocab stage's tokenizer")
    found: Path | None = None
    if ref.startswith("builtin:"):
        found = builtin_folder(ref.removeprefix("builtin:")) / "tokenizer.json"
    elif (Path(ref) / "tokenizer.json").is_file():
        found = Path(ref) / "tokenizer.json"
    elif "/" in ref and not Path(ref).is_absolute():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(ref, "tokenizer.json")
        found = Path(cached) if isinstance(cached, str) else None
    label = f"{ref}'s tokenizer" + (" (the vocab stage has not run: new tokens not counted)" if run_dir else "")
    return TokenCounter(found if found is not None and found.is_file() else None, label)


def corpus_tokens(cfg: RunConfig, counter: TokenCounter, *, sample: int, default_tpw: float) -> dict[str, Count]:
    """Tokens of each training source: the data stage's counts when it ran, else a sample estimate."""
    store = RunStore(cfg.output_dir)
    recorded = (store.manifest("data") or {}).get("metrics", {}).get("sources", {})
    counts = {}
    for name, source in cfg.data.sources.items():
        stats = recorded.get(name)
        if isinstance(stats, dict) and isinstance(stats.get("tokens"), int):
            sampled = stats.get("tokens_estimated_from")
            how = (f"data stage's estimate from {sampled} of {stats.get('documents')} documents" if sampled is not None
                   else "data stage's count")
            counts[name] = Count(stats["tokens"], f"{name}: {how} (base tokenizer, after cleaning)")
        else:
            counts[name] = estimate_source(name, source, counter, sample=sample, default_tpw=default_tpw)
    return counts


def estimate_source(name: str, source: SourceConfig, counter: TokenCounter, *, sample: int,
                    default_tpw: float) -> Count:
    """Every word of a local source counted (before cleaning), times tokens/word measured on a sample."""
    from langadapt.data.sources import is_hub_source, iter_documents

    if is_hub_source(source):
        return Count(None, f"{name}: hub dataset '{source.path}' is not read offline — set pack.total_tokens "
                           "or cpt.max_steps")
    first: list[str] = []
    words = documents = 0
    for text in iter_documents(source, name, limit=source.max_documents):
        documents += 1
        words += len(text.split())
        if len(first) < sample:
            first.append(text)
    tpw, how = counter.tokens_per_word(first, default_tpw)
    return Count(round(words * tpw), f"{name}: {words:,} words in {documents:,} documents (before cleaning) × {how}")


def pack_tokens(cfg: RunConfig, corpus: dict[str, Count] | None) -> Count:
    """Tokens in the pack stage's blocks: its record, else `total_tokens`, else what the mix allows."""
    assert cfg.pack is not None
    context = cfg.pack.context_length
    manifest = RunStore(cfg.output_dir).manifest("pack")
    blocks = (manifest or {}).get("metrics", {}).get("blocks")
    if isinstance(blocks, int):
        return Count(blocks * context, f"pack stage's record: {blocks:,} blocks × {context}")
    if cfg.pack.total_tokens is not None:
        total = cfg.pack.total_tokens // context * context
        return Count(total, f"pack.total_tokens {cfg.pack.total_tokens:,} in blocks of {context}")
    if corpus is None or any(c.value is None for c in corpus.values()):
        unknown = [c.basis for c in (corpus or {}).values() if c.value is None]
        return Count(None, "; ".join(unknown) or "corpus size unknown")
    values = {name: c.value or 0 for name, c in corpus.items()}
    if cfg.pack.mix is None:
        total, how = sum(values.values()), "every source once"
    else:
        total = min(values[name] / share for name, share in cfg.pack.mix.items() if share > 0)
        how = "as many as the mix allows without repeats"
    total = int(total) // context * context
    return Count(total, f"{how}, in blocks of {context} (from the corpus counts)")


def cpt_tokens(cfg: RunConfig, packed: Count) -> Count:
    assert cfg.cpt is not None and cfg.pack is not None
    cpt, context = cfg.cpt, cfg.pack.context_length
    per_step = cpt.batch_size * cpt.gradient_accumulation_steps * cpt.launch.num_processes * context
    if cpt.max_steps is not None:
        return Count(cpt.max_steps * per_step, f"max_steps {cpt.max_steps:,} × {per_step:,} tokens per step")
    if packed.value is None:
        return Count(None, f"epochs × pack tokens, and {packed.basis}")
    return Count(round(cpt.epochs * packed.value), f"{cpt.epochs:g} epoch(s) × {packed.value:,} packed tokens")


def mean_example_tokens(texts: Iterable[str], counter: TokenCounter, *, max_length: int, sample: int,
                        default_tpw: float) -> tuple[float, str]:
    """Mean tokens per example (capped at max_length) over the first `sample` examples' texts."""
    chosen = [t for _, t in zip(range(sample), texts, strict=False)]
    if not chosen:
        return float(max_length), f"max_length {max_length} per example (upper bound: no example on this machine)"
    tpw, how = counter.tokens_per_word(chosen, default_tpw)
    mean = sum(min(max_length, math.ceil(len(t.split()) * tpw)) for t in chosen) / len(chosen)
    return mean, f"{mean:.0f} tokens per example ({how}, capped at max_length {max_length})"


def tuning_tokens(cfg: RunConfig, stage: str, counter: TokenCounter, *, sample: int,
                  default_tpw: float) -> tuple[Count, float]:
    """Tokens an SFT or DPO stage trains on (a DPO pair counts its chosen and rejected sequences) and the
    mean tokens per sequence."""
    from langadapt.data.instruct import load_conversations, load_preferences, load_prompts

    section = cfg.sft if stage == "sft" else cfg.dpo
    assert section is not None
    present = [Path(p) for p in section.data if Path(p).is_file()]
    missing = len(section.data) - len(present)
    texts: list[str] = []
    rows = 0
    if stage == "sft":
        conversations = load_conversations(present)[0] if present else []
        texts = [" ".join(m["content"] for m in c) for c in conversations]
        rows = len(conversations)
        if cfg.sft is not None and cfg.sft.copy_task is not None:
            rows += cfg.sft.copy_task.count
        calibration = cfg.sft.self_calibration if cfg.sft is not None else None
        if calibration is not None:
            prompts = [Path(p) for p in calibration.prompts]
            if all(p.is_file() for p in prompts):
                rows += min(len(load_prompts(prompts)), calibration.count or 10**12)
            elif calibration.count is not None:
                rows += calibration.count
            else:
                missing += 1
    else:
        pairs = load_preferences(present)[0] if present else []
        for pair in pairs:
            prompt = " ".join(m["content"] for m in pair.prompt)
            texts += [f"{prompt} {pair.chosen}", f"{prompt} {pair.rejected}"]
        rows = len(pairs)
    per_sequence, how = mean_example_tokens(texts, counter, max_length=section.max_length, sample=sample,
                                            default_tpw=default_tpw)
    sequences_per_example = 1 if stage == "sft" else 2
    per_step = section.batch_size * section.gradient_accumulation_steps  # one process (see docs/plan.md)
    if section.max_steps is not None:
        examples, where = section.max_steps * per_step, f"max_steps {section.max_steps:,} × {per_step} examples"
    elif missing:
        return Count(None, f"{stage}: {missing} input file(s) not on this machine and no max_steps — "
                           f"tokens ≤ examples × {section.max_length} × {sequences_per_example}"), per_sequence
    else:
        examples = math.ceil(section.epochs * rows)
        where = f"{section.epochs:g} epoch(s) × {rows:,} examples"
    tokens = round(examples * sequences_per_example * per_sequence)
    return Count(tokens, f"{where} × {sequences_per_example} sequence(s) × {how}"), per_sequence
