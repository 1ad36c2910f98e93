"""The base tokenizer as vocabulary surgery sees it: its `tokenizer.json`, family, vocabulary and merges.

Two families of BPE tokenizers are supported, and a new vocabulary always follows the base's conventions:

- **byte-level** (GPT-2, Llama-3, Qwen, SmolLM): text is turned into bytes shown as printable characters
  (`Ġ` for a space) by a `ByteLevel` pre-tokenizer; every token is a string of those characters;
- **metaspace** (Llama-2, Mistral: SentencePiece converted by transformers): spaces become `▁`, unknown
  characters fall back to `<0xNN>` byte tokens.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from langadapt.errors import LangadaptError

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from tokenizers.models import Model
    from transformers import PreTrainedTokenizerBase

SUPPORTED = (
    "byte-level BPE (GPT-2, Llama-3, Qwen, SmolLM style) and SentencePiece-style BPE with a Metaspace "
    "pre-tokenizer (Llama-2, Mistral style)"
)
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]


def _types(node: Any) -> list[str]:
    """Every component `type` inside a (possibly nested `Sequence`) normalizer/pre-tokenizer/decoder spec."""
    if isinstance(node, dict):
        found = [node["type"]] if isinstance(node.get("type"), str) else []
        for value in node.values():
            found += _types(value)
        return found
    if isinstance(node, list):
        return [t for item in node for t in _types(item)]
    return []


def _as_pair(merge: str | list[str]) -> tuple[str, str]:
    if isinstance(merge, str):  # tokenizers < 0.20 wrote merges as "a b"
        left, right = merge.split(" ")
        return left, right
    return merge[0], merge[1]


@dataclass
class BpeParts:
    """A BPE vocabulary and its ranked merges, plus the model options (byte_fallback, unk_token, ...)."""

    vocab: dict[str, int]
    merges: list[tuple[str, str]]
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**self.options, "type": "BPE", "vocab": self.vocab, "merges": [list(m) for m in self.merges]}

    @cached_property
    def model(self) -> Model:
        """The raw `tokenizers` BPE model: tokenizes one pre-tokenized word, no normalizer, no dummy prefix."""
        from tokenizers import Tokenizer

        return Tokenizer.from_str(json.dumps({"version": "1.0", "model": self.to_json()})).model

    @cached_property
    def byte_fallback(self) -> bool:
        return bool(self.options.get("byte_fallback"))

    def segment(self, word: str) -> list[tuple[str, bool]]:
        """Split a word with this model: (token, True) for vocabulary pieces, (char, False) for each
        character the vocabulary lacks (the raw model would silently drop it, or emit unk/byte tokens)."""
        out: list[tuple[str, bool]] = []
        start = 0
        for index, char in enumerate(word):
            if char not in self.vocab:
                out += self._tokenize(word[start:index])
                out.append((char, False))
                start = index + 1
        out += self._tokenize(word[start:])
        return out

    def _tokenize(self, run: str) -> list[tuple[str, bool]]:
        return [(token.value, True) for token in self.model.tokenize(run)] if run else []

    def token_ids(self, text: str) -> list[int]:
        """Old ids of `text` under this raw model. A character the vocabulary lacks becomes its `<0xNN>`
        byte tokens when the model has byte fallback, and is left out otherwise (an unk row says nothing)."""
        ids: list[int] = []
        for piece, known in self.segment(text):
            if known:
                ids.append(self.vocab[piece])
            elif self.byte_fallback:
                ids += [self.vocab[b] for b in (BYTE_TOKENS[x] for x in piece.encode("utf-8")) if b in self.vocab]
        return ids


@dataclass
class BaseTokenizer:
    """A loaded base tokenizer: the HF object (specials, chat template) and its `tokenizer.json` spec."""

    hf: PreTrainedTokenizerBase
    spec: dict[str, Any]
    family: str  # "byte_level" | "metaspace"

    @classmethod
    def load(cls, ref: str, *, trust_remote_code: bool = False) -> BaseTokenizer:
        from langadapt.models import load_tokenizer

        return cls.from_hf(load_tokenizer(ref, trust_remote_code=trust_remote_code), name=ref)

    @classmethod
    def from_hf(cls, tokenizer: PreTrainedTokenizerBase, name: str = "the base") -> BaseTokenizer:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or not getattr(tokenizer, "is_fast", False):
            raise LangadaptError(
                f"base tokenizer '{name}' is not a fast (tokenizers-backed) tokenizer — langadapt extends "
                f"{SUPPORTED}; save it with a tokenizer.json first"
            )
        spec = json.loads(backend.to_str())
        model_type = spec["model"].get("type")
        if model_type != "BPE":
            raise LangadaptError(
                f"base tokenizer '{name}' is a {model_type} model — supported: {SUPPORTED}"
            )
        pieces = _types(spec.get("pre_tokenizer")) + _types(spec.get("normalizer"))
        if "ByteLevel" in pieces:
            family = "byte_level"
        elif "Metaspace" in pieces or _replaces_space_with_metaspace(spec.get("normalizer")):
            family = "metaspace"
        else:
            raise LangadaptError(
                f"base tokenizer '{name}' is a BPE with neither a ByteLevel nor a Metaspace pre-tokenizer "
                f"(found: {', '.join(pieces) or 'none'}) — supported: {SUPPORTED}"
            )
        return cls(tokenizer, spec, family)

    @cached_property
    def parts(self) -> BpeParts:
        model = self.spec["model"]
        options = {k: v for k, v in model.items() if k not in ("type", "vocab", "merges")}
        return BpeParts(dict(model["vocab"]), [_as_pair(m) for m in model["merges"]], options)

    @property
    def added_tokens(self) -> list[dict[str, Any]]:
        """The base's added tokens (specials, chat markers) as in tokenizer.json, by id."""
        return sorted(self.spec.get("added_tokens", []), key=lambda t: t["id"])

    def full_vocab(self) -> dict[str, int]:
        """token -> id over the model vocabulary and the added tokens."""
        return {**self.parts.vocab, **{t["content"]: t["id"] for t in self.added_tokens}}

    def alphabet(self) -> list[str]:
        """The symbols every word is built from before any merge."""
        if self.family == "byte_level":
            from tokenizers import pre_tokenizers

            return pre_tokenizers.ByteLevel.alphabet()
        return [t for t in self.parts.vocab if len(t) == 1]

    def min_vocab_size(self) -> int:
        """A trained vocabulary must at least hold the specials and the byte alphabet."""
        return len(self.added_tokens) + 256

    def with_model(self, model: dict[str, Any], added_tokens: list[dict[str, Any]] | None = None) -> Tokenizer:
        """A `tokenizers.Tokenizer` with the base's normalizer, pre-tokenizer, decoder and post-processor."""
        from tokenizers import Tokenizer

        spec = copy.deepcopy(self.spec)
        spec["model"] = model
        if added_tokens is not None:
            spec["added_tokens"] = added_tokens
        return Tokenizer.from_str(json.dumps(spec))

    def word_splitter(self) -> Tokenizer:
        """The base's normalizer and pre-tokenizer, splitting text into the words BPE works on.

        Metaspace tokenizers keep a whole sentence as one "word" (`split: false`); SentencePiece itself
        trains on whitespace-separated pieces, so words are split at `▁` here, as SentencePiece does.
        """
        from tokenizers import Tokenizer, pre_tokenizers

        spec = copy.deepcopy(self.spec)
        spec["model"] = {"type": "BPE", "vocab": {}, "merges": []}
        spec["added_tokens"] = []
        spec["post_processor"] = None
        tokenizer = Tokenizer.from_str(json.dumps(spec))
        if self.family == "metaspace":
            pre = spec.get("pre_tokenizer")
            if pre is not None and pre.get("type") == "Metaspace":
                tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
                    replacement=pre.get("replacement", "▁"), prepend_scheme=pre.get("prepend_scheme", "always"),
                    split=True,
                )
            else:  # older Llama-2 files: the normalizer prepends and replaces, nothing splits
                tokenizer.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
        return tokenizer


def _replaces_space_with_metaspace(normalizer: Any) -> bool:
    if isinstance(normalizer, dict):
        if normalizer.get("type") == "Replace" and normalizer.get("content") == "▁":
            return True
        return any(_replaces_space_with_metaspace(n) for n in normalizer.get("normalizers", []))
    return False
