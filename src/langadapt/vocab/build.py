"""Build a target-language vocabulary from a base tokenizer: replace, extend or optimise it.

- `bpe` / `unigram` (the paper's pure variants): a new vocabulary only; the base's added tokens are carried
  over first (and, for byte-fallback bases, the 256 `<0xNN>` byte tokens), then the trained tokens.
- `extended`: the original vocabulary untouched (same ids), new target tokens appended after the last id.
- `optimized`: the original vocabulary pruned to `keep` tokens by frequency on target + English text, closed
  under the merges that build them, then extended like `extended`.

How new merges join the original ones (`merges`), measured on SmolLM2 + 16k Basque BPE (docs/benchmarks.md):

- `prepend` (the paper, Chinese-LLaMA style): the target BPE's merges first. English words not in the
  vocabulary get re-split: a target merge fires first and leaves a piece the original merges never combine
  (`Charts`: `Ch|arts` → `C|har|ts`), so English loses ~1 % chars/token.
- `append`: the target BPE's merges after the original ones. English can only gain, but many target merges
  expect pieces the original merges never produce, so target text gains less.
- `continue` (default): resume BPE on the original's own segmentation of the target corpus (the later
  ruadapt recipe). Same number of new tokens, every one reachable from the original pieces, and a word the
  new merges do not touch is tokenized exactly as before.

Every variant sets `ignore_merges`, so a word that is a whole token is emitted as that one token.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langadapt.errors import LangadaptError
from langadapt.vocab.base import BYTE_TOKENS, BaseTokenizer, BpeParts
from langadapt.vocab.token_map import TokenMap, vocab_hash
from langadapt.vocab.tokenizer_training import TrainedTarget, continue_merges, count_words, train_target

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger("langadapt.vocab")

METHODS = ("bpe", "unigram", "extended", "optimized")
MERGE_ORDERS = ("continue", "append", "prepend")


@dataclass
class Vocabulary:
    """A built tokenizer (as a `tokenizers` spec), its map to the base, and what went into it."""

    spec: dict[str, Any]
    token_map: TokenMap
    info: dict[str, Any] = field(default_factory=dict)


def build_vocabulary(
    base: BaseTokenizer,
    texts: Iterable[str],
    *,
    method: str,
    vocab_size: int,
    keep: int | None = None,
    english: Iterable[str] | None = None,
    merges: str = "continue",
    min_frequency: int = 2,
) -> Vocabulary:
    """Train on the target `texts` (streamed once) and build the `method` vocabulary from `base`."""
    if method not in METHODS:
        raise LangadaptError(f"unknown vocabulary method '{method}' — choose one of: {', '.join(METHODS)}")
    if merges not in MERGE_ORDERS:
        raise LangadaptError(f"unknown merge order '{merges}' — choose one of: {', '.join(MERGE_ORDERS)}")
    if vocab_size < base.min_vocab_size():
        raise LangadaptError(
            f"vocab size {vocab_size} is smaller than the base's alphabet and specials (256 byte symbols + "
            f"{len(base.added_tokens)} added tokens = {base.min_vocab_size()}) — use a larger vocab size"
        )
    if keep is not None and method != "optimized":
        raise LangadaptError(f"keep={keep} only applies to method 'optimized', not '{method}' — drop it")
    if method == "optimized":
        if keep is None:
            raise LangadaptError("method 'optimized' needs keep=K, the number of original tokens to keep")
        if keep > len(base.hf):
            raise LangadaptError(
                f"keep={keep} is larger than the original vocabulary ({len(base.hf)} tokens) — keep fewer, or "
                "use method 'extended' to keep them all"
            )
    kind = "unigram" if method == "unigram" else "bpe"
    byte_fallback_head = 256 if method in ("bpe", "unigram") and base.family == "metaspace" else 0
    target = train_target(
        base, texts, kind=kind, vocab_size=vocab_size - byte_fallback_head, min_frequency=min_frequency,
        count=method == "optimized" or merges == "continue",
    )
    _warn_if_small(target, vocab_size - byte_fallback_head)
    info: dict[str, Any] = {
        "method": method, "base_vocab_size": len(base.hf), "target_vocab_size": target.vocab_size,
        "corpus": {"documents": target.stats.documents, "empty_documents": target.stats.empty_documents,
                   "characters": target.stats.characters},
    }
    if method in ("bpe", "unigram"):
        spec = _replace(base, target)
    else:
        parts, added = base.parts, base.added_tokens
        if method == "optimized":
            assert keep is not None
            english_words = count_words(base, english) if english is not None else Counter()
            if not english_words:
                log.warning("optimized: no English sample given — original tokens are ranked by target text only")
            parts, added = prune(base, token_frequencies(base.parts, [target.words, english_words]), keep)
            info["kept_original_tokens"] = len(parts.vocab) + sum(t["content"] not in parts.vocab for t in added)
        parts, new_tokens = extend(parts, added, target, merges=merges, min_frequency=min_frequency,
                                   byte_level=base.family == "byte_level")
        info["merges"] = merges
        info["appended_tokens"] = len(new_tokens)
        spec = _spec(base, parts.to_json(), added)
    token_map = build_token_map(method, base, spec)
    info["vocab_size"] = token_map.vocab_size
    info["new_tokens"] = len(token_map.new_ids())
    info["undecomposable_tokens"] = len(token_map.undecomposable_ids())
    return Vocabulary(spec=spec, token_map=token_map, info=info)


def _warn_if_small(target: TrainedTarget, requested: int) -> None:
    if target.vocab_size < requested:
        log.warning(
            "the corpus is too small for a %d-token vocabulary: %d documents, %d characters gave only %d tokens "
            "(no pair occurs often enough) — add text or lower the vocab size",
            requested, target.stats.documents - target.stats.empty_documents, target.stats.characters,
            target.vocab_size,
        )


def _spec(base: BaseTokenizer, model: dict[str, Any], added: list[dict[str, Any]]) -> dict[str, Any]:
    """The base's tokenizer.json with a new model and (re-numbered) added tokens; checked by `tokenizers`."""
    spec = base.with_model(model, added)  # parses: a broken vocabulary fails here, not when loaded later
    data = json.loads(spec.to_str())
    if {t["content"]: t["id"] for t in data["added_tokens"]} != {t["content"]: t["id"] for t in added}:
        raise RuntimeError("tokenizers renumbered the added tokens: the model vocabulary has gaps below them")
    _renumber_post_processor(data.get("post_processor"), {t["content"]: t["id"] for t in added})
    return data


def _renumber_post_processor(node: Any, ids: dict[str, int]) -> None:
    """Special-token ids the post-processor inserts (BOS/EOS templates, cls/sep) follow their tokens."""
    if isinstance(node, dict):
        if node.get("type") == "TemplateProcessing":
            for token in node.get("special_tokens", {}).values():
                token["ids"] = [ids.get(t, i) for t, i in zip(token["tokens"], token["ids"], strict=True)]
        for key in ("cls", "sep"):
            if isinstance(node.get(key), list) and node[key][0] in ids:
                node[key][1] = ids[node[key][0]]
        for value in node.values():
            _renumber_post_processor(value, ids)
    elif isinstance(node, list):
        for item in node:
            _renumber_post_processor(item, ids)


# --------------------------------------------------------------------------------------------------------
# Extended: append target tokens after the (possibly pruned) original vocabulary.
# --------------------------------------------------------------------------------------------------------


def extend(
    parts: BpeParts,
    added: list[dict[str, Any]],
    target: TrainedTarget,
    *,
    merges: str = "continue",
    min_frequency: int = 2,
    byte_level: bool = True,
) -> tuple[BpeParts, list[str]]:
    """Append new target tokens to `parts` (ids after every existing id) and join the merges by `merges`."""
    present = set(parts.vocab) | {t["content"] for t in added}
    unseen = [t for t in target.tokens_in_rank_order() if t not in present]
    if merges == "continue":
        new_tokens, new_merges = continue_merges(
            parts, target.words, len(unseen), min_frequency=min_frequency, byte_level=byte_level
        )
        joined = parts.merges + new_merges
    else:
        new_tokens = unseen
        target_merges = target.merges()
        if merges == "append":
            known = set(parts.merges)
            joined = parts.merges + [m for m in target_merges if m not in known]
        else:
            known = set(target_merges)
            joined = target_merges + [m for m in parts.merges if m not in known]
    # Added tokens sitting above the model vocabulary (Llama-3's specials) join it at their ids: `tokenizers`
    # numbers added tokens missing from the model right after it, which the new tokens now occupy.
    vocab = {**parts.vocab, **{t["content"]: t["id"] for t in added if t["content"] not in parts.vocab}}
    next_id = max(vocab.values()) + 1
    for offset, token in enumerate(new_tokens):
        vocab[token] = next_id + offset
    return BpeParts(vocab, joined, {**parts.options, "ignore_merges": True}), new_tokens


# --------------------------------------------------------------------------------------------------------
# Optimized: prune the original vocabulary to the tokens target + English text use.
# --------------------------------------------------------------------------------------------------------


def token_frequencies(parts: BpeParts, samples: list[Counter[str]]) -> dict[str, float]:
    """Each token's share of the base's tokens on each sample, summed: every language weighs the same."""
    scores: Counter[str] = Counter()
    for words in samples:
        counts: Counter[str] = Counter()
        for word, count in words.items():
            for piece, known in parts.segment(word):
                if known:
                    counts[piece] += count
        total = sum(counts.values())
        for token, count in counts.items():
            scores[token] += count / total
    return scores


def prune(base: BaseTokenizer, scores: dict[str, float], keep: int) -> tuple[BpeParts, list[dict[str, Any]]]:
    """Keep `keep` original tokens: specials and the alphabet, then the tokens by score (then by id), each
    with every token its merges are built from, so no kept token becomes unreachable and no merge refers to a
    pruned token. Kept tokens keep their relative order and are numbered from 0."""
    parts = base.parts
    producer: dict[str, tuple[str, str]] = {}
    for left, right in parts.merges:
        producer.setdefault(left + right, (left, right))
    added_names = [t["content"] for t in base.added_tokens]
    unk = parts.options.get("unk_token")
    if base.family == "byte_level":
        required = [t for t in base.alphabet() if t in parts.vocab]
    else:
        required = [t for t in BYTE_TOKENS if t in parts.vocab]
        required += [t for t in parts.vocab if len(t) == 1 and scores.get(t, 0) > 0]
    required = list(dict.fromkeys([*added_names, *([unk] if unk in parts.vocab else []), *required]))
    if keep < len(required):
        raise LangadaptError(
            f"keep={keep} is smaller than the tokens every vocabulary needs ({len(required)}: specials and the "
            "alphabet) — keep more"
        )
    kept = set(required)
    # Tokens the samples use, most used first; then the rest by id (for BPE, merge rank: most frequent in the
    # base's own training data), so the paper's "keep ids < K" is the fallback when the samples are small.
    ranked = sorted(parts.vocab, key=lambda t: (-scores.get(t, 0.0), parts.vocab[t]))
    for token in ranked:
        closure, stack = [], [token]
        while stack:  # the token and every not-yet-kept token its merges are built from
            current = stack.pop()
            if current in kept or current in closure:
                continue
            closure.append(current)
            stack.extend(producer.get(current, ()))
        if len(kept) + len(closure) <= keep:
            kept.update(closure)
        if len(kept) >= keep:
            break
    full = base.full_vocab()
    order = sorted(kept, key=full.__getitem__)
    new_id = {token: index for index, token in enumerate(order)}
    vocab = {token: new_id[token] for token in order if token in parts.vocab}
    merges = [(a, b) for a, b in parts.merges if a in kept and b in kept and a + b in kept]
    added = [{**t, "id": new_id[t["content"]]} for t in base.added_tokens]
    return BpeParts(vocab, merges, dict(parts.options)), added


# --------------------------------------------------------------------------------------------------------
# BPE / Unigram: a new vocabulary only.
# --------------------------------------------------------------------------------------------------------


def _replace(base: BaseTokenizer, target: TrainedTarget) -> dict[str, Any]:
    """The trained model with the base's added tokens first (same ids when the base keeps them first) and,
    for byte-fallback bases, the 256 byte tokens next, as in Llama-2's layout."""
    head = [t["content"] for t in base.added_tokens]
    if base.family == "metaspace" and base.parts.byte_fallback:
        head += [b for b in BYTE_TOKENS if b not in head]
    # every byte stays representable even if the trainer left a byte symbol out
    alphabet = [t for t in base.alphabet() if t not in head] if base.family == "byte_level" else []
    trained = [t for t in target.tokens_in_rank_order() if t not in head]
    order = list(dict.fromkeys([*head, *trained, *alphabet]))
    ids = {token: index for index, token in enumerate(order)}
    added = [{**t, "id": ids[t["content"]]} for t in base.added_tokens]
    options = base.parts.options
    if target.model["type"] == "BPE":
        model = BpeParts(ids, target.merges(), dict(options)).to_json()
        if options.get("unk_token") not in ids:
            model["unk_token"] = None
    else:
        scores = dict(target.model["vocab"])
        floor = min(scores.values(), default=0.0) - 10.0  # specials/bytes must never win over real pieces
        unk = options.get("unk_token") or base.hf.unk_token  # Unigram needs one, even with byte fallback
        model = {
            "type": "Unigram",
            "unk_id": ids.get(unk) if unk else None,
            "vocab": [[t, floor if t in head or t not in scores else scores[t]] for t in order],
            "byte_fallback": bool(options.get("byte_fallback")),
        }
    return _spec(base, model, added)


# --------------------------------------------------------------------------------------------------------
# The token map: old ids and decompositions for the embedding stage.
# --------------------------------------------------------------------------------------------------------


def new_vocab(spec: dict[str, Any]) -> dict[str, int]:
    """token -> id of a tokenizer spec, over the model vocabulary and the added tokens."""
    vocab = spec["model"]["vocab"]
    tokens = {piece: index for index, (piece, _) in enumerate(vocab)} if isinstance(vocab, list) else dict(vocab)
    tokens.update({t["content"]: t["id"] for t in spec.get("added_tokens", [])})
    return tokens


def surface_ids(base: BaseTokenizer, token: str) -> list[int]:
    """Old ids of a new token, from its surface form in the vocabulary (`Ġ...` byte-level characters or
    `▁...` pieces) run through the old tokenizer's raw model: no normalizer, no dummy prefix, and partial
    UTF-8 tokens decompose into their own bytes instead of vanishing in a decode/encode round trip.

    A `<0xNN>` byte token the base lacks has no surface of its own: an ASCII byte is its character, any
    other byte (part of a multi-byte character) has no old counterpart and gets [].
    """
    if token in BYTE_TOKENS and base.family == "metaspace":
        byte = int(token[3:5], 16)
        return base.parts.token_ids(chr(byte)) if byte < 0x80 else []
    return base.parts.token_ids(token)


def build_token_map(method: str, base: BaseTokenizer, spec: dict[str, Any]) -> TokenMap:
    old = base.full_vocab()
    tokens = new_vocab(spec)
    size = max(tokens.values()) + 1
    if len(tokens) != size:
        raise RuntimeError(f"the new vocabulary has gaps in its ids ({len(tokens)} tokens, ids up to {size - 1})")
    old_ids = [-1] * size
    decompositions: dict[int, list[int]] = {}
    for token, index in tokens.items():
        old_ids[index] = old.get(token, -1)
        if old_ids[index] < 0:
            decompositions[index] = surface_ids(base, token)
    token_map = TokenMap(method, len(base.hf), vocab_hash(base.hf), old_ids, decompositions)
    token_map.check()
    return token_map


# --------------------------------------------------------------------------------------------------------
# Saving: an HF tokenizer folder that AutoTokenizer loads, with token_map.json inside.
# --------------------------------------------------------------------------------------------------------

# Files that describe the OLD vocabulary in other formats; a saved folder must not carry them.
_OLD_VOCAB_FILES = ("tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.json", "merges.txt",
                    "vocab.txt", "added_tokens.json")


def save_vocabulary(vocabulary: Vocabulary, base: BaseTokenizer, out: str | Path) -> PreTrainedTokenizerBase:
    """Write the tokenizer folder: the base's config, specials and chat template around the new tokenizer.json.

    The folder names the generic `TokenizersBackend` class: model-specific classes (e.g. `LlamaTokenizer`)
    rebuild their backend from vocab + merges and would drop `ignore_merges` or a Unigram model.
    """
    from transformers import AutoTokenizer

    from langadapt.models import save_model_folder

    out = Path(out)
    save_model_folder(None, base.hf, out)
    for name in _OLD_VOCAB_FILES:
        (out / name).unlink(missing_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(vocabulary.spec, ensure_ascii=False), encoding="utf-8")
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "TokenizersBackend"
    ids = new_vocab(vocabulary.spec)
    if isinstance(config.get("added_tokens_decoder"), dict):
        config["added_tokens_decoder"] = {
            str(ids[entry["content"]]): entry for entry in config["added_tokens_decoder"].values()
        }
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    vocabulary.token_map.save(out)

    tokenizer = AutoTokenizer.from_pretrained(out)
    if len(tokenizer) != vocabulary.token_map.vocab_size:
        raise RuntimeError(f"saved tokenizer has {len(tokenizer)} tokens, expected {vocabulary.token_map.vocab_size}")
    for name, token in base.hf.special_tokens_map.items():
        for piece in token if isinstance(token, list) else [token]:
            if tokenizer.convert_tokens_to_ids(piece) != ids[piece]:
                raise RuntimeError(f"special token {name}={piece!r} did not keep id {ids[piece]} after saving")
    return tokenizer
