"""Exact and near-duplicate detection, streaming: the first occurrence of a document wins.

Exact: a 64-bit hash of the text case-folded with punctuation and spacing removed, so copies that differ
only in those count as duplicates. Near: MinHash signatures of word n-gram shingles in a datasketch
`MinHashLSH` index, which finds earlier documents whose estimated Jaccard similarity passes the threshold.
Both indexes grow with the number of *kept* documents (8 bytes, resp. one key per LSH band, each).
"""

from __future__ import annotations

import hashlib
import re
import zlib

from langadapt.data.config import NearDedupConfig

_NON_WORD = re.compile(r"[\W_]+")


def dedup_key(text: str) -> str:
    """The text as exact dedup compares it: case-folded words separated by single spaces."""
    return _NON_WORD.sub(" ", text.casefold()).strip()


def exact_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(dedup_key(text).encode("utf-8"), digest_size=8).digest(), "little")


def shingles(text: str, n: int) -> list[bytes]:
    """Word n-grams of the dedup key; a text shorter than n words is one shingle."""
    words = dedup_key(text).split()
    if len(words) <= n:
        return [" ".join(words).encode("utf-8")] if words else []
    return [" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)]


class NearDuplicateIndex:
    """MinHash LSH over shingles. `seen(text)` answers whether a near-duplicate was added before."""

    def __init__(self, cfg: NearDedupConfig, seed: int = 1):
        from datasketch import MinHash, MinHashLSH

        self.cfg = cfg
        self._minhash = MinHash
        # One set of permutations shared by every signature: building them per document is the slow part.
        self._permutations = MinHash(num_perm=cfg.num_perm, seed=seed).permutations
        self._lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
        self._next_key = 0

    def signature(self, text: str):
        minhash = self._minhash(
            num_perm=self.cfg.num_perm, permutations=self._permutations, scheme="affine32", hashfunc=zlib.crc32
        )
        minhash.update_batch(shingles(text, self.cfg.ngram))
        return minhash

    def seen(self, signature) -> bool:
        return not signature.is_empty() and bool(self._lsh.query(signature))

    def add(self, signature) -> None:
        if not signature.is_empty():
            self._lsh.insert(self._next_key, signature, check_duplication=False)
            self._next_key += 1

    def __len__(self) -> int:
        return self._next_key
