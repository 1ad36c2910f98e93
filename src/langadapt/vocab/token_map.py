"""`token_map.json`: how each id of a new tokenizer relates to the old (base) tokenizer.

Written by the vocabulary stage next to every tokenizer it produces; read by embedding initialisation
(new rows = mean of the old rows in `decompositions`) and by LEP Conversion (the same sub-token operator T).

Format (JSON)::

    {
      "format": "langadapt.token_map/1",
      "method": "extended",                 # how the new tokenizer was built
      "base_vocab_size": 49152,             # len(old tokenizer)
      "base_vocab_hash": "3f2a...",         # vocab_hash(old tokenizer): detects a mismatched base model
      "old_ids": [0, 1, ..., -1, -1],       # one entry per new id: its old id, or -1 for a new token
      "decompositions": {"49152": [3, 17]}  # new id -> old-tokenizer ids of its surface string (new tokens)
    }

Every new token (old id -1) has an entry in `decompositions`: the old ids of its surface form (`Ġ...`
byte-level characters or `▁...` pieces) under the old tokenizer's raw model. An EMPTY list is the one
explicit marker for "no old sub-token exists": e.g. a byte symbol the old byte-level vocabulary lacks
(SmolLM2 has no token for bytes 0x04, 0xC0, 0xF5-0xFF, ...), or a lone `<0xNN>` byte of a multi-byte
character. Initialise such rows from the mean of all old rows (`undecomposable_ids()` lists them).
"""

from __future__ import annotations

import gc
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from langadapt.errors import LangadaptError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

FORMAT = "langadapt.token_map/1"
FILENAME = "token_map.json"


def vocab_hash(tokenizer: PreTrainedTokenizerBase) -> str:
    """Fingerprint of a tokenizer's full vocabulary (token -> id, added tokens included)."""
    items = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    blob = json.dumps(items, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class TokenMap:
    method: str
    base_vocab_size: int
    base_vocab_hash: str
    old_ids: list[int]
    decompositions: dict[int, list[int]] = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        return len(self.old_ids)

    def new_ids(self) -> list[int]:
        """Ids of tokens that did not exist in the old tokenizer."""
        return [new for new, old in enumerate(self.old_ids) if old < 0]

    def undecomposable_ids(self) -> list[int]:
        """New tokens with no old sub-token (empty decomposition): initialise them from the mean old row."""
        return [new for new in self.new_ids() if not self.decompositions.get(new)]

    def kept_ids(self) -> list[tuple[int, int]]:
        """(new id, old id) for every token carried over from the old tokenizer."""
        return [(new, old) for new, old in enumerate(self.old_ids) if old >= 0]

    def check(self) -> None:
        """Internal consistency: every new token has a decomposition, every id is in range."""
        for new in self.new_ids():  # min/max per token: this runs on every load of a 50k-token map
            pieces = self.decompositions.get(new)
            if pieces is None:
                raise LangadaptError(f"token_map.json: new token {new} has no decomposition — rebuild the tokenizer")
            if pieces and (min(pieces) < 0 or max(pieces) >= self.base_vocab_size):
                raise LangadaptError(f"token_map.json: new token {new} decomposes into ids outside the base vocabulary")
        if max(self.old_ids, default=-1) >= self.base_vocab_size:
            raise LangadaptError("token_map.json: an old id is outside the base vocabulary — rebuild the tokenizer")

    def check_base(self, tokenizer: PreTrainedTokenizerBase, what: str = "the base model") -> None:
        """The map must have been built from exactly this old tokenizer."""
        if len(tokenizer) != self.base_vocab_size or vocab_hash(tokenizer) != self.base_vocab_hash:
            raise LangadaptError(
                f"token_map.json was built from a different base vocabulary than {what}'s "
                f"({self.base_vocab_size} tokens, hash {self.base_vocab_hash} vs {len(tokenizer)} tokens, "
                f"hash {vocab_hash(tokenizer)}) — rebuild the tokenizer from this base"
            )

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / FILENAME
        data = {
            "format": FORMAT,
            "method": self.method,
            "base_vocab_size": self.base_vocab_size,
            "base_vocab_hash": self.base_vocab_hash,
            "old_ids": self.old_ids,
            "decompositions": {str(k): v for k, v in sorted(self.decompositions.items())},
        }
        path.write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> TokenMap:
        path = Path(folder)
        path = path if path.name == FILENAME else path / FILENAME
        if not path.exists():
            raise LangadaptError(
                f"'{path.parent}' has no {FILENAME} — use a tokenizer built by `langadapt vocab train` "
                "(it records how new tokens relate to the old vocabulary)"
            )
        # Tens of thousands of small lists, none in a cycle: the cyclic GC would only re-scan the whole heap
        # (a loaded model's included) several times over while they are built.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT:
                raise LangadaptError(f"'{path}' is not a {FORMAT} file — rebuild the tokenizer with this langadapt")
            token_map = cls(
                method=data["method"],
                base_vocab_size=data["base_vocab_size"],
                base_vocab_hash=data["base_vocab_hash"],
                old_ids=list(data["old_ids"]),
                decompositions={int(k): list(v) for k, v in data["decompositions"].items()},
            )
        finally:
            if gc_was_enabled:
                gc.enable()
        token_map.check()
        return token_map
