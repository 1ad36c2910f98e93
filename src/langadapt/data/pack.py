"""Packing: turn the mixed document pieces into fixed-length training blocks.

Output (`pack/dataset/`, a `datasets.save_to_disk` folder), one row per block, every column a list of
exactly `context_length` values:

- `input_ids` (int64): documents back to back, each followed by EOS (and preceded by BOS if asked);
- `position_ids` (int64): 0, 1, 2, ... restarting at every document start and at every block start, so
  attention backends that read them (flash-attention varlen via transformers' packed-sequence support)
  never attend across documents;
- `source_ids` (int8): the index of the source each token came from (names in the manifest and in
  `pack/sources.json`), -1 on padding: achieved shares and per-source losses can be read off the data;
- `labels` (int64, `best_fit` only): `input_ids` with -100 on padding.

Strategies:

- `concat` (default): the stream is cut every `context_length` tokens; a document may continue into the
  next block (where its positions restart). The total is a multiple of the context length, so there is
  no padding at all (packing efficiency 1.0).
- `best_fit`: every block starts at a document boundary (the LEP paper's choice): documents longer than a
  block are cut into block-sized chunks, then pieces go into blocks by best-fit decreasing, and the rest of
  each block is padding.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from langadapt.data.config import PackConfig
from langadapt.data.engine import default_workers
from langadapt.data.mix import Pieces, plan_mixture
from langadapt.data.tokens import TokenizedCorpus, default_add_bos, eos_id, tokenize_corpus
from langadapt.errors import LangadaptError
from langadapt.runstore import write_json

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
PIECES_PER_CHUNK = 8192


def split_long_pieces(pieces: Pieces, size: int) -> Pieces:
    """Cut pieces longer than `size` into consecutive chunks of `size` (the last one shorter)."""
    counts = -(-pieces.length // size)  # ceil
    index = np.repeat(np.arange(len(pieces)), counts)
    chunk = np.arange(len(index)) - np.repeat(np.cumsum(counts) - counts, counts)
    start = pieces.start[index] + chunk * size
    length = np.minimum(size, pieces.length[index] - chunk * size)
    return Pieces(pieces.source[index], pieces.doc[index], start, length)


def best_fit_bins(lengths: np.ndarray, capacity: int) -> np.ndarray:
    """Bin index of each length under best-fit decreasing (every length ≤ capacity).

    Open bins are bucketed by remaining space, so each placement is one vectorised search for the
    smallest bucket that fits — O(n · capacity / SIMD width), fine for millions of documents.
    """
    order = np.argsort(-lengths, kind="stable")
    buckets: list[list[int]] = [[] for _ in range(capacity + 1)]
    available = np.zeros(capacity + 1, dtype=bool)
    bins = np.empty(len(lengths), dtype=np.int64)
    opened = 0
    for i in order:
        need = int(lengths[i])
        fits = np.flatnonzero(available[need:])
        if fits.size:
            space = need + int(fits[0])
            target = buckets[space].pop()
            available[space] = bool(buckets[space])
        else:
            space, target = capacity, opened
            opened += 1
        bins[i] = target
        left = space - need
        if left:
            buckets[left].append(target)
            available[left] = True
    return bins


def layout(
    pieces: Pieces, context_length: int, strategy: str, rng: np.random.Generator
) -> tuple[Pieces, np.ndarray | None]:
    """The pieces in writing order and, for `best_fit`, the block of each (None: cut the stream)."""
    if strategy == "concat":
        return pieces, None
    pieces = split_long_pieces(pieces, context_length)
    bins = best_fit_bins(pieces.length, context_length)
    rank = rng.permutation(int(bins.max()) + 1)[bins]  # blocks in random order, not longest-first
    order = np.lexsort((np.arange(len(pieces)), rank))
    return pieces.take(order), rank[order]


class TokenGatherer:
    """Reads the token ids of many pieces at once from the sources' cached Arrow tables."""

    def __init__(self, corpora: list[TokenizedCorpus]):
        self._columns = [c.dataset.data.column("input_ids") for c in corpora]

    def gather(self, pieces: Pieces) -> np.ndarray:
        import pyarrow as pa

        out = np.empty(int(pieces.length.sum()), dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(pieces.length)])
        for source in np.unique(pieces.source):
            where = np.flatnonzero(pieces.source == source)
            rows = self._columns[source].take(pa.array(pieces.doc[where])).combine_chunks()
            values = rows.flatten().to_numpy()
            starts = rows.offsets.to_numpy()[:-1] - rows.offsets[0].as_py()
            for k, i in enumerate(where):
                begin = starts[k] + pieces.start[i]
                out[offsets[i] : offsets[i + 1]] = values[begin : begin + pieces.length[i]]
        return out


def _positions(starts: np.ndarray) -> np.ndarray:
    """Position ids of a (blocks, length) matrix: count up from the last True in `starts` on each row."""
    index = np.broadcast_to(np.arange(starts.shape[1]), starts.shape)
    return index - np.maximum.accumulate(np.where(starts, index, 0), axis=1)


def iter_blocks(
    pieces: Pieces, blocks: np.ndarray | None, gatherer: TokenGatherer, context_length: int, pad_id: int
) -> Iterator[dict[str, np.ndarray]]:
    """Batches of blocks as (n, context_length) arrays; `blocks=None` cuts the stream (concat)."""
    carry_ids = np.zeros(0, np.int64)
    carry_src = np.zeros(0, np.int8)
    carry_start = np.zeros(0, bool)
    begin = 0
    while begin < len(pieces):
        end = min(begin + PIECES_PER_CHUNK, len(pieces))
        if blocks is not None:  # never split a block between chunks
            while end < len(pieces) and blocks[end] == blocks[end - 1]:
                end += 1
        chunk = pieces.take(slice(begin, end))
        ids = gatherer.gather(chunk)
        src = np.repeat(chunk.source.astype(np.int8), chunk.length)
        first = np.zeros(len(ids), bool)
        first[np.concatenate([[0], np.cumsum(chunk.length)[:-1]])] = True
        if blocks is None:
            ids, src, first = (np.concatenate(p) for p in ((carry_ids, ids), (carry_src, src), (carry_start, first)))
            full = len(ids) // context_length * context_length
            carry_ids, carry_src, carry_start = ids[full:], src[full:], first[full:]
            if full:
                starts = first[:full].reshape(-1, context_length).copy()
                starts[:, 0] = True
                yield {
                    "input_ids": ids[:full].reshape(-1, context_length),
                    "position_ids": _positions(starts),
                    "source_ids": src[:full].reshape(-1, context_length),
                }
        else:
            yield _padded_blocks(ids, src, first, blocks[begin:end], chunk.length, context_length, pad_id)
        begin = end
    if len(carry_ids):
        raise AssertionError(f"{len(carry_ids)} tokens left over: the mix total must be a multiple of the block")


def _padded_blocks(
    ids: np.ndarray, src: np.ndarray, first: np.ndarray, piece_blocks: np.ndarray, lengths: np.ndarray,
    context_length: int, pad_id: int,
) -> dict[str, np.ndarray]:
    """Place whole pieces into their blocks (consecutive block numbers in `piece_blocks`), pad the rest."""
    new_block = np.concatenate([[True], piece_blocks[1:] != piece_blocks[:-1]])
    row_of_piece = np.cumsum(new_block) - 1
    rows = int(row_of_piece[-1]) + 1
    token_row = np.repeat(row_of_piece, lengths)
    row_start = np.searchsorted(token_row, np.arange(rows))  # first token of each row in the stream
    column = np.arange(len(ids)) - row_start[token_row]
    input_ids = np.full((rows, context_length), pad_id, np.int64)
    source_ids = np.full((rows, context_length), -1, np.int8)
    starts = np.zeros((rows, context_length), bool)
    input_ids[token_row, column] = ids
    source_ids[token_row, column] = src
    starts[token_row, column] = first
    fill = np.bincount(token_row, minlength=rows)
    padded = fill < context_length
    starts[np.flatnonzero(padded), fill[padded]] = True  # padding is its own segment, never attended to
    starts[:, 0] = True
    labels = np.where(source_ids >= 0, input_ids, IGNORE_INDEX)
    return {"input_ids": input_ids, "position_ids": _positions(starts), "source_ids": source_ids, "labels": labels}


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """No `datasets` progress bar in the stage log."""
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()


def write_blocks(
    batches: Iterator[dict[str, np.ndarray]], out: Path, context_length: int, n_sources: int
) -> dict[str, Any]:
    """Write block batches as a `save_to_disk` folder at `out`; count tokens per source and padding."""
    import pyarrow as pa
    from datasets import Dataset, Features, List, Value

    dtypes = {"input_ids": "int64", "position_ids": "int64", "source_ids": "int8", "labels": "int64"}
    tmp = out.parent / f".{out.name}-arrow"
    tmp.mkdir(parents=True, exist_ok=True)
    counts = np.zeros(n_sources + 1, dtype=np.int64)  # last slot: padding (-1)
    blocks = 0
    writer = None
    try:
        from datasets.arrow_writer import ArrowWriter

        for batch in batches:
            if writer is None:
                features = Features({k: List(Value(dtypes[k]), length=context_length) for k in batch})
                writer = ArrowWriter(features=features, path=str(tmp / "blocks.arrow"))
            arrays = {
                k: pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), context_length) for k, v in batch.items()
            }
            writer.write_batch(arrays)
            counts += np.bincount(batch["source_ids"].reshape(-1).astype(np.int64) % (n_sources + 1),
                                  minlength=n_sources + 1)
            blocks += len(batch["input_ids"])
        assert writer is not None, "no blocks to write"
        writer.finalize()
        writer.close()
        with _quiet_datasets():
            Dataset.from_file(str(tmp / "blocks.arrow")).save_to_disk(str(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"blocks": blocks, "tokens_per_source": counts[:n_sources], "padding": int(counts[n_sources])}


def pack_corpus(
    corpus: dict[str, Path],
    tokenizer: PreTrainedTokenizerBase,
    cfg: PackConfig,
    out: Path,
    *,
    seed: int,
    cache_dir: Path,
    log: logging.Logger | None = None,
) -> dict[str, Any]:
    """Tokenise (cached), mix by tokens and pack the corpus files into `out`; return the pack metrics."""
    log = log or logging.getLogger("langadapt.pack")
    if len(corpus) > np.iinfo(np.int8).max:
        raise LangadaptError(f"pack: {len(corpus)} sources, at most {np.iinfo(np.int8).max} — merge some with globs")
    add_bos = default_add_bos(tokenizer) if cfg.add_bos is None else cfg.add_bos
    workers = cfg.workers or default_workers()
    corpora = {}
    for name, path in corpus.items():
        corpora[name] = tokenize_corpus(path, tokenizer, add_bos=add_bos, cache_dir=cache_dir, workers=workers)
        log.info("%s: %d documents, %d tokens (%s)", name, len(corpora[name].lengths),
                 int(corpora[name].lengths.sum()), "cached" if corpora[name].cached else "tokenised")
    multiple = cfg.context_length if cfg.strategy == "concat" else 1
    plan = plan_mixture({n: c.lengths for n, c in corpora.items()}, cfg.mix, total_tokens=cfg.total_tokens,
                        multiple=multiple, max_repeats=cfg.max_repeats, seed=seed)
    rng = np.random.default_rng([seed, 1])
    pieces, blocks = layout(plan.pieces, cfg.context_length, cfg.strategy, rng)
    gatherer = TokenGatherer([corpora[n] for n in plan.names])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id(tokenizer)
    written = write_blocks(iter_blocks(pieces, blocks, gatherer, cfg.context_length, pad_id), out,
                           cfg.context_length, len(plan.names))
    write_json(out.parent / "sources.json", plan.names)
    real = int(written["tokens_per_source"].sum())
    capacity = written["blocks"] * cfg.context_length
    achieved = {n: round(int(t) / real, 6) for n, t in zip(plan.names, written["tokens_per_source"], strict=True)}
    log.info("packed %d blocks of %d: %s of tokens (requested %s), efficiency %.4f", written["blocks"],
             cfg.context_length, achieved, {n: round(s, 4) for n, s in plan.requested.items()}, real / capacity)
    return {
        "context_length": cfg.context_length,
        "strategy": cfg.strategy,
        "add_bos": add_bos,
        "documents": {n: len(c.lengths) for n, c in corpora.items()},
        "tokens_available": plan.available,
        "cache": {n: "hit" if c.cached else "miss" for n, c in corpora.items()},
        "tokenize": {"workers": workers, **{n: _rate(c) for n, c in corpora.items() if not c.cached}},
        "mix": {
            "requested_token_share": {n: round(s, 6) for n, s in plan.requested.items()},
            "achieved_token_share": achieved,
            "repeats": plan.repeats,
            "tokens": {n: int(t) for n, t in zip(plan.names, written["tokens_per_source"], strict=True)},
        },
        "blocks": written["blocks"],
        "tokens": real,
        "padding_tokens": written["padding"],
        "packing_efficiency": round(real / capacity, 6),
    }


def _rate(corpus: TokenizedCorpus) -> dict[str, float]:
    tokens = int(corpus.lengths.sum())
    return {"tokens": tokens, "seconds": round(corpus.seconds, 3),
            "tokens_per_s": round(tokens / corpus.seconds) if corpus.seconds else None}
