"""Tokenised corpus files, cached on disk (Arrow) and shared across stages and runs.

A cache entry holds one corpus file tokenised by one tokenizer: a column `input_ids` (int32 lists), each
document's tokens followed by EOS (and preceded by BOS when asked). The entry's key hashes the tokenizer
(its full serialised definition, not its name), the corpus file's bytes and the BOS/EOS choice, so an
edited corpus or tokenizer never reuses stale tokens, while re-packing with another mix, context length
or seed — or another run over the same corpus — reuses them. Entries are written to a temporary folder
and renamed into place, so a crash never leaves half an entry.

Tokenising streams: the corpus is read in batches that `workers` forked processes encode (each with the
tokenizer's own threading off, so `workers` is the number of cores used), at most two batches per worker
in flight, and the parent appends the ids to the Arrow file in order — memory is bounded by those
batches, not by the corpus.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from langadapt.data.corpus import read_texts
from langadapt.data.stats import batches, token_ids
from langadapt.errors import LangadaptError

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

CACHE_VERSION = 1
TOKENS_FILE = "tokens.arrow"
INFO_FILE = "info.json"


@dataclass
class TokenizedCorpus:
    """One source's documents as token ids; `lengths[i]` counts document i's tokens incl. BOS/EOS."""

    dataset: Dataset
    lengths: np.ndarray
    cached: bool  # True when the entry was already in the cache
    folder: Path
    seconds: float = 0.0  # spent tokenising (0 on a cache hit)


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of everything that decides the ids: the serialised tokenizer and its special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    digest.update(body.encode("utf-8"))
    digest.update(json.dumps([tokenizer.bos_token_id, tokenizer.eos_token_id]).encode())
    return digest.hexdigest()


def file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def default_add_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer itself starts a text with BOS (Llama-2 and Mistral do; SmolLM2 and Qwen2 don't)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def eos_id(tokenizer: PreTrainedTokenizerBase) -> int:
    if tokenizer.eos_token_id is None:
        raise LangadaptError(
            "the tokenizer has no eos_token, so packed documents cannot be separated — set eos_token in its "
            "tokenizer_config.json"
        )
    return int(tokenizer.eos_token_id)


def tokenize_corpus(
    path: Path, tokenizer: PreTrainedTokenizerBase, *, add_bos: bool, cache_dir: Path, batch_size: int = 1000,
    workers: int = 1,
) -> TokenizedCorpus:
    """The cached token ids of corpus file `path`, tokenising it first (with `workers` processes) when the
    cache lacks them."""
    from datasets import Dataset

    eos = eos_id(tokenizer)
    bos = tokenizer.bos_token_id if add_bos else None
    if add_bos and bos is None:
        raise LangadaptError("pack.add_bos is true but the tokenizer has no bos_token — set add_bos: false")
    key = hashlib.sha256(
        json.dumps([CACHE_VERSION, tokenizer_fingerprint(tokenizer), file_fingerprint(path), bos, eos]).encode()
    ).hexdigest()[:32]
    folder = Path(cache_dir) / key
    cached = (folder / INFO_FILE).exists()
    start = time.perf_counter()
    if not cached:
        _write_entry(path, tokenizer, folder, bos=bos, eos=eos, batch_size=batch_size, workers=workers)
    seconds = 0.0 if cached else time.perf_counter() - start
    dataset = Dataset.from_file(str(folder / TOKENS_FILE))
    lengths = _list_lengths(dataset)
    return TokenizedCorpus(dataset=dataset, lengths=lengths, cached=cached, folder=folder, seconds=seconds)


_ENCODER: tuple[PreTrainedTokenizerBase, list[int], int] | None = None  # what a forked worker encodes with


def _encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(tokens per document, all ids back to back) of a batch, each document as prefix + ids + EOS."""
    assert _ENCODER is not None
    tokenizer, prefix, eos = _ENCODER
    rows = [[*prefix, *ids, eos] for ids in token_ids(tokenizer, texts)]
    lengths = np.fromiter(map(len, rows), dtype=np.int32, count=len(rows))
    return lengths, np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=int(lengths.sum()))


def _single_threaded() -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # in the worker only: one core each


def encoded_batches(path: Path, tokenizer: PreTrainedTokenizerBase, prefix: list[int], eos: int, *,
                    batch_size: int, workers: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The corpus's encoded batches, in order, from `workers` forked processes."""
    global _ENCODER
    _ENCODER = (tokenizer, prefix, eos)
    context = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_single_threaded) as pool:
            pending: deque[Future] = deque()
            for batch in batches(read_texts(path), batch_size):
                pending.append(pool.submit(_encode, batch))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    finally:
        _ENCODER = None


def _write_entry(
    path: Path, tokenizer: PreTrainedTokenizerBase, folder: Path, *, bos: int | None, eos: int, batch_size: int,
    workers: int,
) -> None:
    import pyarrow as pa
    from datasets import Features, List, Value
    from datasets.arrow_writer import ArrowWriter

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    prefix = [bos] if bos is not None else []
    documents = tokens = 0
    try:
        features = Features({"input_ids": List(Value("int32"))})
        with ArrowWriter(features=features, path=str(tmp / TOKENS_FILE)) as writer:
            for lengths, ids in encoded_batches(path, tokenizer, prefix, eos, batch_size=batch_size, workers=workers):
                offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int32)
                column = pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids))
                writer.write_table(pa.table({"input_ids": column}))
                documents += len(lengths)
                tokens += int(lengths.sum())
            writer.finalize()
        info = {"corpus": str(path), "tokenizer": tokenizer.name_or_path, "documents": documents, "tokens": tokens}
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        try:
            os.replace(tmp, folder)
        except OSError:  # another process wrote the same entry meanwhile: theirs is as good as ours
            if not (folder / INFO_FILE).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _list_lengths(dataset: Dataset) -> np.ndarray:
    import pyarrow.compute as pc

    column = dataset.data.column("input_ids")
    return np.asarray(pc.list_value_length(column).to_numpy(zero_copy_only=False), dtype=np.int64)
