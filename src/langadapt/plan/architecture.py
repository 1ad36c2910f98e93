"""The shape of a model, read from its `config.json` only — never its weights.

`find_architecture` looks for the config of a model reference, in this order: the `--model-config` file the
user passed; the folder of a local model; the Hugging Face cache (offline, never a download); the config
shipped for its family (`architectures/*.json`, matched on the hub id by `FAMILIES`); the shipped SmolLM2
config for `builtin:smollm2-135m-instruct`. Parameter counts follow the Llama / Mistral / Qwen2 decoder
(RMSNorm, rotary attention with grouped KV heads, SwiGLU MLP); the tests check them against transformers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from langadapt.errors import LangadaptError

SHIPPED = Path(__file__).resolve().parent / "architectures"

# (pattern on the lower-cased hub id, shipped config). Fine-tunes that keep the base's name match too
# (e.g. meta-llama/Meta-Llama-3-8B-Instruct → llama-3-8b); the first match wins.
FAMILIES: tuple[tuple[str, str], ...] = (
    (r"llama-?2-7b", "llama-2-7b"),
    (r"llama-?2-13b", "llama-2-13b"),
    (r"llama-?3\.1-8b", "llama-3.1-8b"),
    (r"llama-?3-8b", "llama-3-8b"),
    (r"mistral-7b(-instruct)?-v0\.[12]", "mistral-7b-v0.1"),
    (r"mistral-7b(-instruct)?-v0\.3", "mistral-7b-v0.3"),
    (r"qwen2\.5-0\.5b", "qwen2.5-0.5b"),
    (r"qwen2\.5-1\.5b", "qwen2.5-1.5b"),
    (r"qwen2\.5-3b", "qwen2.5-3b"),
    (r"qwen2\.5-7b", "qwen2.5-7b"),
    (r"smollm2-135m", "smollm2-135m"),
    (r"smollm2-360m", "smollm2-360m"),
    (r"smollm2-1\.7b", "smollm2-1.7b"),
)
# the child: a fine-tune
BUILTIN_CONFIGS = {"smollm2-135m-instruct": "smollm2-135m", "smollm2-135m-child-brackets": "smollm2-135m"}
SUPPORTED_TYPES = ("llama", "mistral", "qwen2")
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Architecture:
    """A decoder-only transformer's dimensions and where they were read from."""

    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    qkv_bias: bool
    source: str  # where the config came from, shown in the plan

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one decoder layer."""
        h, f = self.hidden, self.intermediate
        return {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, f), "up_proj": (h, f), "down_proj": (f, h)}

    @property
    def layer_linear_params(self) -> int:
        weights = sum(i * o for i, o in self.linear_shapes().values())
        return weights + (self.q_dim + 2 * self.kv_dim if self.qkv_bias else 0)

    @property
    def layer_params(self) -> int:
        return self.layer_linear_params + 2 * self.hidden  # + two RMSNorm weights

    @property
    def embedding_params(self) -> int:
        """The input embedding matrix and the LM head: one matrix when tied."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def parameters(self) -> int:
        return self.layers * self.layer_params + self.hidden + self.embedding_params

    @property
    def matmul_parameters(self) -> int:
        """Weights used in matrix multiplications: the body's linear layers and the LM head (a lookup into the
        input embeddings costs no FLOPs)."""
        return self.layers * self.layer_linear_params + self.vocab * self.hidden

    def with_vocab(self, vocab: int, why: str) -> Architecture:
        return replace(self, vocab=vocab, source=f"{self.source}; vocab {vocab:,} ({why})")

    @classmethod
    def from_config(cls, config: dict[str, Any], source: str) -> Architecture:
        config = config.get("text_config", config) if "hidden_size" not in config else config
        model_type = str(config.get("model_type", "?"))
        if model_type not in SUPPORTED_TYPES:
            raise LangadaptError(f"{source}: model_type '{model_type}' is not one plan can size (it knows "
                                 f"{', '.join(SUPPORTED_TYPES)}) — plan a model of those families")
        try:
            heads = int(config["num_attention_heads"])
            hidden = int(config["hidden_size"])
            return cls(
                model_type=model_type, hidden=hidden, intermediate=int(config["intermediate_size"]),
                layers=int(config["num_hidden_layers"]), heads=heads,
                kv_heads=int(config.get("num_key_value_heads") or heads),
                head_dim=int(config.get("head_dim") or hidden // heads), vocab=int(config["vocab_size"]),
                tied=bool(config.get("tie_word_embeddings", False)),  # the default of all three families
                qkv_bias=model_type == "qwen2" or bool(config.get("attention_bias", False)), source=source,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LangadaptError(f"{source}: config.json lacks a usable {exc} — pass a complete Hugging Face "
                                 "config.json with --model-config") from None


def find_architecture(ref: str, *, model_config: Path | None = None) -> Architecture:
    """The architecture of model reference `ref` (see the module docstring for the search order)."""
    if model_config is not None:
        return _read(model_config, f"--model-config {model_config}")
    if ref.startswith("builtin:"):
        name = ref.removeprefix("builtin:")
        if name in BUILTIN_CONFIGS:
            return _read(SHIPPED / f"{BUILTIN_CONFIGS[name]}.json", f"shipped {BUILTIN_CONFIGS[name]} config")
    path = Path(ref).expanduser()
    if (path / "config.json").is_file():
        return _read(path / "config.json", str(path / "config.json"))
    cached = _hub_cache_config(ref)
    if cached is not None:
        return _read(cached, f"{ref} (Hugging Face cache)")
    family = shipped_family(ref)
    if family is not None:
        return _read(SHIPPED / f"{family}.json", f"shipped {family} config")
    raise LangadaptError(
        f"cannot read a config.json for model '{ref}': not a local model folder, not in the Hugging Face cache "
        f"and not a family plan ships ({', '.join(sorted({f for _, f in FAMILIES}))}) — pass its config.json "
        "with --model-config PATH"
    )


def shipped_family(ref: str) -> str | None:
    name = ref.lower()
    for pattern, family in FAMILIES:
        if re.search(pattern, name):
            return family
    return None


def _hub_cache_config(ref: str) -> Path | None:
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", ref):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of transformers
        return None
    found = try_to_load_from_cache(ref, "config.json")
    return Path(found) if isinstance(found, str) else None


def _read(path: Path, source: str) -> Architecture:
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LangadaptError(f"{source}: no such file — pass the model's config.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LangadaptError(f"{source}: not valid JSON — pass the model's config.json") from None
    if not isinstance(config, dict):
        raise LangadaptError(f"{source}: not a config.json object — pass the model's config.json")
    return Architecture.from_config(config, source)
