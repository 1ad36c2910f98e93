"""Learned Embedding Propagation (Tikhomirov & Chernyshev 2024, arXiv 2412.21140).

Three models: B, the original base; I, its instruct fine-tune (B's vocabulary, maybe plus chat tokens);
D, the donor — B with the new tokenizer and embeddings trained on the target language. LEP keeps I's
transformer body and gives it D's vocabulary, mapping D's rows into I's embedding space with a d×d
matrix X fitted by least squares, separately for `embed_tokens` and `lm_head` (only `embed_tokens` when
tied). Row-major: a model's matrix W has one row per token, and

- `swap`:       X = identity (D's rows as they are);
- `overlap`:    X = argmin ‖W_B[C]·X − W_I[C]‖_F over C, the tokens kept from the old vocabulary;
- `conversion`: X = argmin ‖(T·W_B)·X − (T·W_I)‖_F over every new-vocabulary row, T the sub-token mean
  operator of `token_map.json` — the same T that initialised D, so fit and initialisation agree.

Fits run in float64 (`torch.linalg.lstsq`, driver gelsy, as the reference code); D·X is computed in
float64 too and cast to I's dtype at the end. Then I's chat/special tokens are added to D's tokenizer
where missing and *their rows are copied from I* (both matrices); I's special-token map and chat
template go with them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from langadapt.embeddings.surgery import (
    OUTPUT,
    all_finite,
    copy_special_tokens,
    embedding_matrices,
    install_matrices,
    remap_token_ids,
    subtoken_mean,
)
from langadapt.errors import LangadaptError
from langadapt.lep.config import LepMethod
from langadapt.vocab.token_map import FILENAME as TOKEN_MAP_FILE
from langadapt.vocab.token_map import TokenMap

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger("langadapt.lep")

SPECIAL_TOKEN_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "pad_token")
ROWS_PER_CHUNK = 16384  # D·X in float64 a chunk at a time: bounded memory for 100k+ vocabularies


# --------------------------------------------------------------------------------------------------------
# The maps.
# --------------------------------------------------------------------------------------------------------


def relative_residual(source: torch.Tensor, target: torch.Tensor, transform: torch.Tensor) -> float:
    """‖source·X − target‖_F / ‖target‖_F in float64."""
    source, target = source.double(), target.double()
    return float(torch.linalg.matrix_norm(source @ transform - target) / torch.linalg.matrix_norm(target))


def fit_map(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The d×d least-squares X minimising ‖source·X − target‖_F, in float64."""
    return torch.linalg.lstsq(source.double(), target.double(), driver="gelsy").solution


@dataclass(frozen=True)
class FittedMap:
    transform: torch.Tensor  # d×d, float64
    fit_rows: int  # rows the map was fitted on
    residual: float  # relative Frobenius error of the fit on those rows
    identity_deviation: float  # ‖X − I‖_F / ‖I‖_F: how far the map is from a plain swap

    def metrics(self) -> dict[str, float | int]:
        return {"fit_rows": self.fit_rows, "residual": self.residual, "identity_deviation": self.identity_deviation}


def propagation_map(
    method: LepMethod,
    base: torch.Tensor,
    instruct: torch.Tensor,
    token_map: TokenMap,
    skip: frozenset[int] = frozenset(),
) -> FittedMap:
    """X for one matrix (`base`, `instruct`: B's and I's rows of the old vocabulary, row-major). Rows `skip`
    (new ids of special/added tokens: their rows are copied, not mapped) stay out of the fit, as in the reference."""
    if method == "conversion":
        rows = [i for i in range(token_map.vocab_size) if i not in skip]
        source, found = subtoken_mean(base.double(), token_map, rows)
        target, _ = subtoken_mean(instruct.double(), token_map, rows)
        source, target = source[found], target[found]  # tokens with no sub-tokens say nothing about the map
    else:  # overlap fits on the shared tokens; swap reports how well identity does there
        old = torch.tensor([old for new, old in token_map.kept_ids() if new not in skip], dtype=torch.long)
        source, target = base[old].double(), instruct[old].double()
    if len(source) == 0:
        raise LangadaptError(f"LEP {method}: no rows to fit the map on — the token map shares no tokens with the base")
    dim = base.shape[1]
    eye = torch.eye(dim, dtype=torch.float64)
    transform = eye if method == "swap" else fit_map(source, target)
    return FittedMap(
        transform=transform,
        fit_rows=len(source),
        residual=relative_residual(source, target, transform),
        identity_deviation=float(torch.linalg.matrix_norm(transform - eye) / dim**0.5),
    )


def apply_map(rows: torch.Tensor, transform: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """rows·X in float64, cast to `dtype`."""
    out = torch.empty(rows.shape[0], transform.shape[1], dtype=dtype)
    for start in range(0, rows.shape[0], ROWS_PER_CHUNK):
        chunk = rows[start : start + ROWS_PER_CHUNK]
        out[start : start + ROWS_PER_CHUNK] = (chunk.double() @ transform).to(dtype)
    return out


# --------------------------------------------------------------------------------------------------------
# Checks before any weights are loaded.
# --------------------------------------------------------------------------------------------------------


@dataclass
class LepInputs:
    """The three models' tokenizers and the token map, checked to belong together."""

    base_tokenizer: PreTrainedTokenizerBase
    instruct_tokenizer: PreTrainedTokenizerBase
    donor_tokenizer: PreTrainedTokenizerBase
    token_map: TokenMap


def _text_config(ref: str | Path, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    from langadapt.models import resolve

    folder = resolve(ref, trust_remote_code=trust_remote_code)
    return AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code).get_text_config()


def check_instruct_vocabulary(base: PreTrainedTokenizerBase, instruct: PreTrainedTokenizerBase) -> None:
    """I must hold B's vocabulary with the same ids; it may add chat tokens (OpenChat adds <|end_of_turn|>)."""
    base_vocab, instruct_vocab = base.get_vocab(), instruct.get_vocab()
    moved = [token for token, index in base_vocab.items() if instruct_vocab.get(token) != index]
    if moved:
        raise LangadaptError(
            f"the base and instruct models have different vocabularies ({len(moved)} of the base's tokens are "
            f"missing or have other ids in the instruct's, e.g. {moved[0]!r}) — LEP needs an instruct model "
            "fine-tuned from this very base"
        )
    added = {token.content for token in instruct.added_tokens_decoder.values()}
    extra = [token for token in instruct_vocab if token not in base_vocab and token not in added]
    if extra:
        raise LangadaptError(
            f"the instruct model's vocabulary has {len(extra)} ordinary token(s) the base lacks (e.g. "
            f"{extra[0]!r}) — LEP needs an instruct model fine-tuned from this very base"
        )


def check_inputs(
    base: str | Path,
    instruct: str | Path,
    donor: str | Path,
    token_map_path: str | Path | None = None,
    *,
    base_tokenizer: str | Path | None = None,
    trust_remote_code: bool = False,
) -> LepInputs:
    """Every one-line refusal LEP can give, from configs and tokenizers only (no weights loaded).
    `base_tokenizer` is B's tokenizer when it is not B's own folder (`models.tokenizer`)."""
    from langadapt.models import load_tokenizer, resolve

    configs = {name: _text_config(ref, trust_remote_code) for name, ref in
               (("base", base), ("instruct", instruct), ("donor", donor))}
    for key, what in (("hidden_size", "hidden size"), ("num_hidden_layers", "layer count")):
        values = {name: getattr(config, key, None) for name, config in configs.items()}
        if values["base"] != values["instruct"]:
            raise LangadaptError(
                f"the base and instruct models differ in {what} ({values['base']} vs {values['instruct']}) — "
                "LEP needs an instruct model fine-tuned from this very base"
            )
    if configs["donor"].hidden_size != configs["base"].hidden_size:
        raise LangadaptError(
            f"the donor's hidden size ({configs['donor'].hidden_size}) differs from the base's "
            f"({configs['base'].hidden_size}) — the donor must be the base with a new vocabulary (embed/cpt output)"
        )
    tying = {name: bool(getattr(config, "tie_word_embeddings", False)) for name, config in configs.items()}
    if len(set(tying.values())) > 1:
        raise LangadaptError(
            "the base, instruct and donor models disagree on tied embeddings "
            f"({', '.join(f'{k}: {v}' for k, v in tying.items())}) — they must all come from the same base"
        )

    tokenizers = {name: load_tokenizer(ref, trust_remote_code=trust_remote_code)
                  for name, ref in (("base", base_tokenizer or base), ("instruct", instruct), ("donor", donor))}
    check_instruct_vocabulary(tokenizers["base"], tokenizers["instruct"])
    token_map = TokenMap.load(token_map_path or resolve(donor, trust_remote_code=trust_remote_code))
    token_map.check_base(tokenizers["base"], "the base model")
    if token_map.vocab_size != len(tokenizers["donor"]):
        raise LangadaptError(
            f"{TOKEN_MAP_FILE} describes a tokenizer of {token_map.vocab_size} tokens but the donor's has "
            f"{len(tokenizers['donor'])} — pass the token map of the tokenizer the donor was built with"
        )
    if not tokenizers["instruct"].chat_template:
        log.warning("the instruct model has no chat template — the result keeps the donor's (if any)")
    return LepInputs(tokenizers["base"], tokenizers["instruct"], tokenizers["donor"], token_map)


# --------------------------------------------------------------------------------------------------------
# Assembling the result.
# --------------------------------------------------------------------------------------------------------


def output_tokenizer(
    donor: PreTrainedTokenizerBase, instruct: PreTrainedTokenizerBase
) -> tuple[PreTrainedTokenizerBase, int]:
    """D's tokenizer plus I's added tokens it lacks, I's special-token map and chat template.

    Returns the tokenizer (a copy: `donor` is untouched) and how many tokens were added.
    """
    import copy

    tokenizer = copy.deepcopy(donor)
    vocab = tokenizer.get_vocab()
    missing = [token for _, token in sorted(instruct.added_tokens_decoder.items()) if token.content not in vocab]
    for token in missing:
        tokenizer.add_tokens([token], special_tokens=token.special)
    for attribute in SPECIAL_TOKEN_ATTRIBUTES:
        value = getattr(instruct, attribute, None)
        if value is not None:
            setattr(tokenizer, attribute, str(value))
    if instruct.chat_template:
        tokenizer.chat_template = instruct.chat_template
    return tokenizer, len(missing)


def chat_rows(
    tokenizer: PreTrainedTokenizerBase, instruct: PreTrainedTokenizerBase
) -> list[tuple[int, int]]:
    """(output id, instruct id) for every added/special token of the output that I holds as one token."""
    instruct_vocab = instruct.get_vocab()
    return [(index, instruct_vocab[token.content]) for index, token in sorted(tokenizer.added_tokens_decoder.items())
            if token.content in instruct_vocab]


def propagate(
    instruct_model: PreTrainedModel,
    base_matrices: dict[str, torch.Tensor],
    donor_matrices: dict[str, torch.Tensor],
    inputs: LepInputs,
    method: LepMethod = "conversion",
) -> tuple[PreTrainedTokenizerBase, dict[str, Any]]:
    """Turn `instruct_model` (in place) into LEP's result; returns its tokenizer and the metrics."""
    instruct_matrices = embedding_matrices(instruct_model)  # only read: the new matrices are built beside them
    if set(instruct_matrices) != set(base_matrices) or set(donor_matrices) != set(base_matrices):
        raise LangadaptError("the base, instruct and donor models disagree on tied embeddings — they must all "
                             "come from the same base")
    # Special tokens the old vocabulary holds are its rows, not means of their characters (a replaced vocabulary
    # gives them new ids); special (chat/control) rows are copied, not mapped, so they stay out of the fit.
    token_map, _ = copy_special_tokens(inputs.token_map, inputs.base_tokenizer, inputs.donor_tokenizer)
    skip = frozenset(i for i, token in inputs.donor_tokenizer.added_tokens_decoder.items() if token.special)
    n_base, n_donor = token_map.base_vocab_size, token_map.vocab_size
    tokenizer, added = output_tokenizer(inputs.donor_tokenizer, inputs.instruct_tokenizer)
    copied = chat_rows(tokenizer, inputs.instruct_tokenizer)
    copy_to = torch.tensor([out for out, _ in copied], dtype=torch.long)
    copy_from = torch.tensor([src for _, src in copied], dtype=torch.long)
    assert set(range(n_donor, len(tokenizer))) <= set(copy_to.tolist()), "tokens past the donor's come from I"

    metrics: dict[str, Any] = {"method": method, "maps": {}}
    new_matrices = {}
    for name, instruct in instruct_matrices.items():
        base, donor = base_matrices[name], donor_matrices[name]
        if donor.shape[0] < n_donor or base.shape[0] < n_base:
            raise LangadaptError(f"{name}: the donor or base model has fewer rows than its tokenizer — re-export it")
        fitted = propagation_map(method, base[:n_base], instruct[:n_base], token_map, skip)
        matrix = instruct.new_empty((len(tokenizer), instruct.shape[1]))
        matrix[:n_donor] = apply_map(donor[:n_donor], fitted.transform, instruct.dtype)
        matrix[copy_to] = instruct[copy_from]
        if not all_finite(matrix):
            raise LangadaptError(f"{name}: LEP produced non-finite rows — one of the models holds NaN/inf weights")
        new_matrices[name] = matrix
        metrics["maps"][name] = fitted.metrics()
        log.info("%s %s: fitted on %d rows, relative residual %.4g", method, name, fitted.fit_rows, fitted.residual)
    install_matrices(instruct_model, new_matrices)
    remap_token_ids(instruct_model, inputs.instruct_tokenizer, tokenizer)
    metrics.update(
        tied=OUTPUT not in instruct_matrices,
        vocab_size=len(tokenizer),
        propagated_rows=n_donor,
        new_rows=len(token_map.new_ids()),
        fallback_rows=len(token_map.undecomposable_ids()),
        chat_rows_copied=len(copied),
        tokens_added_from_instruct=added,
        chat_template="instruct" if inputs.instruct_tokenizer.chat_template else "donor",
    )
    return tokenizer, metrics


def lep_model(
    base: str | Path,
    instruct: str | Path,
    donor: str | Path,
    out: str | Path,
    method: LepMethod = "conversion",
    *,
    token_map_path: str | Path | None = None,
    base_tokenizer: str | Path | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Check, load (B and D one at a time, keeping only their matrices), propagate, save to `out`."""
    from langadapt.models import load_model, save_model_folder

    inputs = check_inputs(base, instruct, donor, token_map_path, base_tokenizer=base_tokenizer,
                          trust_remote_code=trust_remote_code)

    def matrices_of(ref: str | Path) -> dict[str, torch.Tensor]:
        model = load_model(ref, dtype="auto", trust_remote_code=trust_remote_code)
        return dict(embedding_matrices(model))  # the rest of the model is freed on return

    base_matrices = matrices_of(base)
    donor_matrices = matrices_of(donor)
    model = load_model(instruct, dtype="auto", trust_remote_code=trust_remote_code)
    tokenizer, metrics = propagate(model, base_matrices, donor_matrices, inputs, method)
    save_model_folder(model, tokenizer, out)
    return metrics
