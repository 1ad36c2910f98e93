"""Embedding surgery: give a model a new tokenizer without losing what it knows.

The vocab stage's `token_map.json` says, for every id of the new tokenizer, which old id it was (kept
tokens) or which old ids spell it (new tokens). From that:

- kept tokens keep their rows bit-for-bit (they are copied, never recomputed);
- new tokens get the rows of an init method from the registry (`registry.py`, one module each under
  `methods/`: `mean` — the LEP paper's sub-token mean —, `normal`, `random`, `convex`, `distill`), or of the
  best of several at step 0 (`auto`, `probe.py`), optionally with output-side calibration (`calibrate.py`);
- special/chat tokens of the new tokenizer that the old vocabulary holds are copied from their old row;
- tied models stay tied: only the shared matrix is initialised.

The sub-token mean is one `embedding_bag` over all tokens (no Python loop per token); LEP Conversion uses
the same operator T (`subtoken_mean`), so initialisation and propagation agree on what a new token is.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from langadapt.embeddings.config import EmbedConfig
from langadapt.embeddings.registry import Corpus
from langadapt.errors import LangadaptError
from langadapt.vocab.token_map import FILENAME as TOKEN_MAP_FILE
from langadapt.vocab.token_map import TokenMap

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langadapt.embeddings.registry import InitInputs

log = logging.getLogger("langadapt.embed")

INPUT, OUTPUT = "embed_tokens", "lm_head"
# Config / generation-config keys that hold token ids and must follow the tokens to their new ids.
TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


# --------------------------------------------------------------------------------------------------------
# The matrices of a model.
# --------------------------------------------------------------------------------------------------------


def is_tied(model: PreTrainedModel) -> bool:
    """True when the LM head shares its weight with the input embeddings (or there is no head)."""
    head = model.get_output_embeddings()
    return head is None or head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def embedding_matrices(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """`embed_tokens` (and `lm_head` when untied) as detached (vocab × hidden) tensors."""
    head = model.get_output_embeddings()
    if head is not None and getattr(head, "bias", None) is not None:
        raise LangadaptError(
            f"{type(model).__name__} has a bias on its LM head — embedding surgery and LEP support heads "
            "without bias only (Llama, Mistral, Qwen, Gemma, SmolLM, ...)"
        )
    matrices = {INPUT: model.get_input_embeddings().weight.detach()}
    if not is_tied(model):
        matrices[OUTPUT] = head.weight.detach()
    return matrices


def install_matrices(model: PreTrainedModel, matrices: dict[str, torch.Tensor]) -> None:
    """Resize `model` to the matrices' row count and put them in place (tied models stay tied)."""
    rows = matrices[INPUT].shape[0]
    if is_tied(model) != (OUTPUT not in matrices):
        raise ValueError("tied models take only embed_tokens; untied ones take embed_tokens and lm_head")
    model.resize_token_embeddings(rows, mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(matrices[INPUT])
        if OUTPUT in matrices:
            model.get_output_embeddings().weight.copy_(matrices[OUTPUT])


# --------------------------------------------------------------------------------------------------------
# The sub-token mean operator T and the initialisers.
# --------------------------------------------------------------------------------------------------------


def all_finite(matrix: torch.Tensor) -> bool:
    """No NaN/inf anywhere (min/max propagate both; 20x cheaper than a full isfinite mask on big matrices)."""
    return all(bool(torch.isfinite(bound)) for bound in torch.aminmax(matrix))


def subtoken_mean(
    weight: torch.Tensor, token_map: TokenMap, rows: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows `rows` of T·W: a kept token's old row, a new token's mean over its decomposition.

    Returns the (len(rows) × hidden) means and a mask of the rows that had anything to average; the others
    are zero. One `embedding_bag` call does all rows at once.
    """
    pieces = [[token_map.old_ids[new]] if token_map.old_ids[new] >= 0 else token_map.decompositions[new]
              for new in rows]
    lengths = torch.tensor([len(p) for p in pieces], dtype=torch.long)
    flat = torch.from_numpy(np.fromiter(chain.from_iterable(pieces), dtype=np.int64, count=int(lengths.sum())))
    offsets = torch.cumsum(lengths, 0) - lengths
    means = F.embedding_bag(flat, weight, offsets, mode="mean")
    return means, lengths > 0


def sample_fitted_normal(rows: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` samples of N(μ, Σ) fitted to `rows` (float64; Σ gets a little jitter if not positive definite)."""
    data = rows.double()
    mean = data.mean(0)
    centred = data - mean
    covariance = centred.T @ centred / max(len(data) - 1, 1)
    eye = torch.eye(covariance.shape[0], dtype=torch.float64)
    scale = covariance.diagonal().mean().clamp_min(1e-12)
    for jitter in (0.0, 1e-10, 1e-8, 1e-6, 1e-4):
        factor, info = torch.linalg.cholesky_ex(covariance + jitter * scale * eye)
        if info == 0:
            break
    else:  # pragma: no cover - a covariance plus 1e-4 of its scale is positive definite
        raise LangadaptError("the old embedding rows have a degenerate covariance — use method 'mean'")
    noise = torch.randn(count, covariance.shape[0], generator=generator, dtype=torch.float64)
    return mean + noise @ factor.T


def assemble_matrix(old: torch.Tensor, token_map: TokenMap, new_rows: torch.Tensor) -> torch.Tensor:
    """The (new vocab × hidden) matrix: kept rows gathered from `old` bit-for-bit, `new_rows` at the new ids."""
    # One gather puts every kept row in place (new rows gather row 0 and are overwritten below).
    sources = torch.tensor(token_map.old_ids, dtype=torch.long).clamp_min(0)
    matrix = torch.index_select(old, 0, sources)
    matrix[token_map.new_ids()] = new_rows.to(old.dtype)
    if not all_finite(matrix):
        bad = int((~torch.isfinite(matrix)).any(1).sum())
        raise LangadaptError(
            f"{bad} embedding row(s) are not finite after initialisation — the base model's own weights hold "
            "NaN/inf (or the init method diverged); check the model or use method mean"
        )
    return matrix


def init_matrix(
    old: torch.Tensor,
    token_map: TokenMap,
    method: str,
    *,
    generator: torch.Generator,
    init_std: float = 0.02,
) -> torch.Tensor:
    """The (new vocab × hidden) matrix for `old` with a method that needs nothing but the matrix (mean,
    normal, random). With `mean`, new tokens without sub-tokens get the mean of all old rows."""
    from langadapt.embeddings.registry import InitInputs, get_method

    inputs = InitInputs({INPUT: old}, token_map, generator=generator, init_std=init_std)
    return assemble_matrix(old, token_map, get_method(method)(inputs).rows[INPUT])


# --------------------------------------------------------------------------------------------------------
# Resizing a model to a new tokenizer.
# --------------------------------------------------------------------------------------------------------


def check_token_map(
    token_map: TokenMap, old_tokenizer: PreTrainedTokenizerBase, new_tokenizer: PreTrainedTokenizerBase, what: str
) -> None:
    """The map must relate exactly these two tokenizers."""
    token_map.check_base(old_tokenizer, what)
    if len(new_tokenizer) != token_map.vocab_size:
        raise LangadaptError(
            f"token_map.json describes a tokenizer of {token_map.vocab_size} tokens but the tokenizer beside it "
            f"has {len(new_tokenizer)} — the folder was edited after the vocab stage; rebuild it"
        )


def copy_special_tokens(
    token_map: TokenMap, old_tokenizer: PreTrainedTokenizerBase, new_tokenizer: PreTrainedTokenizerBase
) -> tuple[TokenMap, int]:
    """The map with every added/special token of the new tokenizer that the old one holds marked as kept.

    An Extended tokenizer keeps them already; a replaced vocabulary may give `<|im_start|>` a new id, and
    its row must still be the old row, not a mean of '<', '|', 'im', ...
    Returns the map and how many special rows come from old rows.
    """
    old_vocab = old_tokenizer.get_vocab()
    old_ids = list(token_map.old_ids)
    special = 0
    for new_id, token in new_tokenizer.added_tokens_decoder.items():
        if token.content in old_vocab:
            old_ids[new_id] = old_vocab[token.content]
            special += 1
    decompositions = {k: v for k, v in token_map.decompositions.items() if old_ids[k] < 0}
    return replace(token_map, old_ids=old_ids, decompositions=decompositions), special


def remap_token_ids(
    model: PreTrainedModel, old_tokenizer: PreTrainedTokenizerBase, new_tokenizer: PreTrainedTokenizerBase
) -> None:
    """Point bos/eos/pad ids of the config and generation config at the same tokens in the new tokenizer."""
    new_vocab = new_tokenizer.get_vocab()

    def remap(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            mapped = [remap(v) for v in value]
            return [v for v in mapped if v is not None]
        token = old_tokenizer.convert_ids_to_tokens(int(value))
        if token not in new_vocab:
            log.warning("special token %r (id %s) is not in the new tokenizer; its id is dropped", token, value)
        return new_vocab.get(token)

    for config in (model.config, model.generation_config):
        if config is None:
            continue
        for key in TOKEN_ID_KEYS:
            if getattr(config, key, None) is not None:
                setattr(config, key, remap(getattr(config, key)))


@dataclass
class _Candidate:
    rows: dict[str, torch.Tensor]
    figures: dict[str, Any]


def _run_method(name: str, config: EmbedConfig, inputs: InitInputs, seed: int) -> _Candidate:
    """One method's new rows (+ calibration) and its figures; each method gets the same seeded generator."""
    from langadapt.embeddings.calibrate import calibrate_output
    from langadapt.embeddings.registry import get_method

    started = time.perf_counter()
    inputs.generator = torch.Generator().manual_seed(seed)
    result = get_method(name)(inputs, config.options.get(name))
    figures: dict[str, Any] = {"fallback_rows": result.fallback_rows, "report": result.report}
    if config.calibration is not None:
        figures["calibration"] = calibrate_output(inputs, result.rows, config.calibration)
    figures["init_seconds"] = round(time.perf_counter() - started, 3)
    if result.fallback_rows:
        log.info("%s: %d new rows fell back to the sub-token mean", name, result.fallback_rows)
    return _Candidate(result.rows, figures)


def resize_to_tokenizer(
    model: PreTrainedModel,
    old_tokenizer: PreTrainedTokenizerBase,
    new_tokenizer: PreTrainedTokenizerBase,
    token_map: TokenMap,
    method: str | EmbedConfig = "mean",
    *,
    seed: int = 0,
    corpus: Corpus | None = None,
) -> dict[str, Any]:
    """Give `model` the new tokenizer's vocabulary in place; returns counts for the manifest.

    `method` is a registered init method's name, `auto`, or a whole `embed` section (options, calibration,
    auto); `corpus` holds the texts the corpus-based methods and the probe read.
    """
    from langadapt.embeddings.probe import probe_table
    from langadapt.embeddings.registry import AUTO, InitInputs, get_method

    config = method if isinstance(method, EmbedConfig) else EmbedConfig(method=method)
    names = config.auto.methods if config.method == AUTO else [config.method]
    for name in names:
        get_method(name)  # unknown names fail before any work
    corpus = corpus or Corpus()
    check_token_map(token_map, old_tokenizer, new_tokenizer, "the model")
    old_matrices = embedding_matrices(model)
    rows_before = old_matrices[INPUT].shape[0]
    if rows_before < token_map.base_vocab_size:
        raise LangadaptError(
            f"the model has {rows_before} embedding rows but its tokenizer {token_map.base_vocab_size} tokens — "
            "the model and tokenizer do not belong together"
        )
    token_map, special = copy_special_tokens(token_map, old_tokenizer, new_tokenizer)
    init_std = float(getattr(model.config.get_text_config(), "initializer_range", 0.02))
    inputs = InitInputs(old_matrices, token_map, old_tokenizer, new_tokenizer, model, corpus.texts, corpus.english,
                        init_std=init_std)
    candidates = {name: _run_method(name, config, inputs, seed) for name in names}

    def install(rows: dict[str, torch.Tensor]) -> None:
        install_matrices(
            model, {name: assemble_matrix(old, token_map, rows[name]) for name, old in old_matrices.items()}
        )

    probe = None
    chosen = names[0]
    if config.method == AUTO:
        if corpus.probe is None:
            raise LangadaptError("embed.method auto needs held-out corpus documents to probe on — add a `data` stage "
                                 "(or pass --corpus to `langadapt embed init`)")
        chosen, probe = probe_table(model, old_tokenizer, new_tokenizer,
                                    {name: (c.rows, c.figures) for name, c in candidates.items()},
                                    install, corpus.probe, config.auto)
    install(candidates[chosen].rows)
    remap_token_ids(model, old_tokenizer, new_tokenizer)
    fresh = token_map.new_ids()
    new_matrices = embedding_matrices(model)
    norms = {
        name: {
            "old_rows": float(old[: token_map.base_vocab_size].float().norm(dim=1).mean()),
            "new_rows": float(new_matrices[name][fresh].float().norm(dim=1).mean()) if fresh else 0.0,
        }
        for name, old in old_matrices.items()
    }
    pieces = [len(token_map.decompositions[i]) for i in fresh]
    figures = candidates[chosen].figures
    metrics = {
        "method": chosen,
        "tied": OUTPUT not in old_matrices,
        "rows_before": rows_before,
        "vocab_size": token_map.vocab_size,
        "kept_rows": token_map.vocab_size - len(fresh),
        "new_rows": len(fresh),
        "fallback_rows": figures["fallback_rows"],
        "special_rows": special,
        "mean_subtokens": sum(pieces) / len(pieces) if pieces else 0.0,
        "mean_row_norm": norms,
        "init": figures["report"],
        "method_seconds": figures["init_seconds"],
    }
    if "calibration" in figures:
        metrics["calibration"] = figures["calibration"]
    if probe is not None:
        metrics["probe"] = probe
    return metrics


def embed_model(
    model_ref: str | Path,
    tokenizer_dir: str | Path,
    out: str | Path,
    method: str | EmbedConfig = "mean",
    *,
    base_tokenizer: str | Path | None = None,
    seed: int = 0,
    trust_remote_code: bool = False,
    corpus: Corpus | None = None,
) -> dict[str, Any]:
    """Load `model_ref`, resize it to the tokenizer in `tokenizer_dir` (which holds token_map.json) and save
    an HF folder to `out`: weights, new tokenizer, its token map, chat template, generation config.

    `base_tokenizer` is the tokenizer the vocab stage extended (default: the model's own).
    """
    from langadapt.models import load_model, load_tokenizer, save_model_folder

    token_map = TokenMap.load(tokenizer_dir)
    old_tokenizer = load_tokenizer(base_tokenizer or model_ref, trust_remote_code=trust_remote_code)
    new_tokenizer = load_tokenizer(tokenizer_dir, trust_remote_code=trust_remote_code)
    check_token_map(token_map, old_tokenizer, new_tokenizer, "the model")  # before loading any weights
    model = load_model(model_ref, dtype="auto", trust_remote_code=trust_remote_code)
    started = time.perf_counter()
    metrics = resize_to_tokenizer(model, old_tokenizer, new_tokenizer, token_map, method, seed=seed, corpus=corpus)
    metrics["init_seconds"] = round(time.perf_counter() - started, 3)
    if not new_tokenizer.chat_template and old_tokenizer.chat_template:
        new_tokenizer.chat_template = old_tokenizer.chat_template
    save_model_folder(model, new_tokenizer, out)
    shutil.copy(Path(tokenizer_dir) / TOKEN_MAP_FILE, Path(out) / TOKEN_MAP_FILE)
    log.info("%s init: %d new rows (%d fallback), %d kept", metrics["method"], metrics["new_rows"],
             metrics["fallback_rows"], metrics["kept_rows"])
    return metrics
