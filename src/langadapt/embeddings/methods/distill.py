"""`distill`: fit the new rows so that the model reads and predicts them as it does their sub-token paths.

Teacher = the original model on the old-token path of real corpus snippets; student = the same frozen body
with the new rows, on the new tokenization (`contexts`: aligned where both have read the same characters).
Only the new rows train (Adam, a few steps), starting from `start` (default: the sub-token mean). The loss:

- reading (input side): the student's last hidden state after each new token matches the teacher's at the
  same characters (relative squared error), in context — a context-free [BOS, token] version made the tied
  SmolLM2 worse, because the same row is the token's logit vector;
- predicting (output side): the student's log-likelihood of the target snippets (the teacher knows too
  little of a new language to be a target there);
- English guard: on English snippets, the student's distribution must keep the teacher's mass on the old
  tokens (cross-entropy to the teacher's distribution), so new tokens do not steal it.

Tied models train one row per token on all three; untied ones an input and an output row. Tokens never
seen in a snippet get their `start` rows back and are counted as fallbacks (`reset_unseen: false` keeps what
the softmax taught them — to stay unlikely where they did not occur —, which cost out-of-domain Russian text
6 % in `bench/init.py`). Time is bounded by `steps` and
`max_seconds`; memory by `batch_size × length` tokens (one backward through the body at a time) and by never holding
logits over the whole vocabulary for more than 128 positions (`chunked_logsumexp`).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import Field

from langadapt.embeddings.contexts import (
    at,
    chunked_logsumexp,
    final_hidden,
    frozen,
    make_batch,
    paths,
    restore,
    snippets,
)
from langadapt.embeddings.registry import InitInputs, InitResult, init_method
from langadapt.embeddings.surgery import INPUT, OUTPUT
from langadapt.errors import LangadaptError
from langadapt.schema import Section
from langadapt.vocab.token_map import TokenMap

log = logging.getLogger("langadapt.embed")


class DistillOptions(Section):
    """Options of `embed.method: distill` (`embed.options.distill`)."""

    start: str = Field(default="mean", description="method giving the starting rows (and the fallback)")
    steps: int = Field(default=44, ge=1, description="optimisation steps")
    batch_size: int = Field(default=6, ge=1, description="target-language snippets per step")
    english_batch_size: int = Field(default=2, ge=0, description="English snippets per step (guard)")
    length: int = Field(default=48, ge=4, description="tokens per snippet (new tokenizer)")
    learning_rate: float = Field(default=1e-3, gt=0)
    hidden_weight: float = Field(default=1.0, ge=0, description="weight of the reading (hidden-state) loss")
    likelihood_weight: float = Field(default=1.0, ge=0, description="weight of the target log-likelihood")
    english_weight: float = Field(default=1.0, ge=0, description="weight of the English guard")
    max_documents: int = Field(default=20000, ge=1, description="documents sampled for snippets, per side")
    max_seconds: float | None = Field(default=None, gt=0, description="stop after this many seconds")
    checkpointing: bool = Field(
        default=True, description="gradient checkpointing through the body (less memory, ~30 % more time)"
    )
    reset_unseen: bool = Field(
        default=True, description="give tokens never seen in a snippet their start rows back (else they keep what "
        "the softmax taught them: to stay unlikely where they did not occur)",
    )


@dataclass(frozen=True)
class SplitMatrix:
    """The new vocabulary's matrix, never built: kept ids read their old rows (constant), new ids the trained
    `rows`. Only (tokens × hidden) gathers and the new rows' gradient exist per step — not a (vocab × hidden)
    matrix, its gradient and their copies."""

    old: torch.Tensor  # the old matrix
    rows: torch.Tensor  # the new ids' rows, in `fresh` order (trained)
    old_of: torch.Tensor  # per new id: its old id (0 for a new token)
    slot: torch.Tensor  # per new id: its index in `rows` (0 for a kept token)
    is_new: torch.Tensor
    kept_old: torch.Tensor  # the kept ids' old ids, in new-id order
    kept: torch.Tensor  # their old rows, in that order (`old` itself when every old row is kept in place)

    @classmethod
    def of(cls, old: torch.Tensor, rows: torch.Tensor, token_map: TokenMap, fresh: torch.Tensor) -> SplitMatrix:
        old_ids = torch.tensor(token_map.old_ids)
        slot = torch.zeros(token_map.vocab_size, dtype=torch.long)
        slot[fresh] = torch.arange(len(fresh))
        kept_old = old_ids[old_ids >= 0]
        whole = len(kept_old) == len(old) and bool((kept_old == torch.arange(len(old))).all())
        return cls(old, rows, old_ids.clamp_min(0), slot, old_ids < 0, kept_old, old if whole else old[kept_old])

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.where(self.is_new[ids][..., None], self.rows[self.slot[ids]], self.old[self.old_of[ids]])

    def logsumexp(self, hidden: torch.Tensor) -> torch.Tensor:
        """logsumexp over the whole new vocabulary of hidden @ matrix.T."""
        return chunked_logsumexp(hidden, self.kept, self.rows)


@init_method("distill", options=DistillOptions, needs_corpus=True)
def distill_init(inputs: InitInputs, options: DistillOptions) -> InitResult:
    """new rows fitted in real contexts: read like their sub-token paths, predict the corpus, spare English"""
    from langadapt.embeddings.registry import get_method

    inputs.need("distill", "model", "texts", "new_tokenizer")
    if options.start == "distill":
        raise LangadaptError("embed.options.distill.start cannot be 'distill' — use mean or another method")
    started = time.perf_counter()
    start = get_method(options.start)(inputs)
    token_map, model, tokenizer = inputs.token_map, inputs.model, inputs.new_tokenizer
    assert model is not None and tokenizer is not None and inputs.texts is not None
    spelled = paths(token_map)
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    rng = random.Random(int(torch.randint(0, 2**31, (1,), generator=inputs.generator)))
    target = snippets(tokenizer, inputs.texts(), length=options.length, count=options.steps * options.batch_size,
                      prefix=prefix, spelled=spelled, rng=rng, max_documents=options.max_documents)
    english = []
    if inputs.english is not None and options.english_batch_size and options.english_weight:
        english = snippets(tokenizer, inputs.english(), length=options.length,
                           count=options.steps * options.english_batch_size, prefix=prefix, spelled=spelled, rng=rng,
                           max_documents=options.max_documents)
    fresh = torch.tensor(inputs.new_ids, dtype=torch.long)
    if not target or not len(fresh):
        log.warning("distill: no usable snippet in the target corpus — all %d new rows keep their %s rows",
                    len(fresh), options.start)
        return InitResult(start.rows, len(fresh), {"start": options.start, "steps": 0, "snippets": 0})

    tied = OUTPUT not in inputs.matrices
    old_in = inputs.matrices[INPUT].float()
    old_out = old_in if tied else inputs.matrices[OUTPUT].float()
    base = token_map.base_vocab_size
    rows_in = torch.nn.Parameter(start.rows[INPUT].float().clone())
    rows_out = rows_in if tied else torch.nn.Parameter(start.rows[OUTPUT].float().clone())
    params = [rows_in] if tied else [rows_in, rows_out]
    optimizer = torch.optim.Adam(params, lr=options.learning_rate)
    w_in = SplitMatrix.of(old_in, rows_in, token_map, fresh)
    w_out = w_in if tied else SplitMatrix.of(old_out, rows_out, token_map, fresh)
    seen = torch.zeros(token_map.vocab_size, dtype=torch.bool)
    losses: list[float] = []
    flags = frozen(model)
    was_training, was_checkpointing = model.training, bool(model.is_activation_checkpointing)
    if options.checkpointing and model.supports_gradient_checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
        model.train()  # checkpointing acts in training mode only; the adapted models have no dropout here
    else:
        model.eval()
    steps = 0
    try:
        for step in range(options.steps):
            if options.max_seconds and time.perf_counter() - started > options.max_seconds:
                break
            tgt = target[step * options.batch_size:(step + 1) * options.batch_size]
            eng = english[step * options.english_batch_size:(step + 1) * options.english_batch_size]
            if not tgt:
                break
            batch = make_batch(tgt + eng, spelled)
            n_tgt = len(tgt)
            seen[batch.student[:n_tgt][batch.mask[:n_tgt]]] = True
            with torch.no_grad():
                teacher = at(final_hidden(model, F.embedding(batch.teacher, old_in), batch.teacher_mask), batch.ends)
            student = final_hidden(model, w_in.lookup(batch.student), batch.mask)
            predicting = batch.mask[:, 1:]
            loss = torch.zeros(())
            if options.likelihood_weight:  # -log softmax(h @ W.T)[next], never materialised over the vocabulary
                hidden = student[:n_tgt, :-1][predicting[:n_tgt]]
                nexts = batch.student[:n_tgt, 1:][predicting[:n_tgt]]
                nll = w_out.logsumexp(hidden) - (hidden * w_out.lookup(nexts)).sum(-1)
                loss = loss + options.likelihood_weight * nll.mean()
            if options.hidden_weight:
                after_new = (w_in.is_new[batch.student[:n_tgt]].cumsum(1) > 0) & batch.mask[:n_tgt]
                if after_new.any():
                    gap = ((student[:n_tgt] - teacher[:n_tgt]).pow(2).sum(-1)
                           / teacher[:n_tgt].pow(2).sum(-1).clamp_min(1e-6))
                    loss = loss + options.hidden_weight * gap[after_new].mean()
            if eng and options.english_weight:  # cross-entropy to the teacher's mass on the old tokens
                hidden = student[n_tgt:, :-1][predicting[n_tgt:]]
                with torch.no_grad():  # the teacher's probabilities of the kept tokens, and their mean row
                    p_teacher = torch.softmax(teacher[n_tgt:, :-1][predicting[n_tgt:]] @ old_out[:base].T, -1)
                    p_kept = p_teacher[:, w_out.kept_old]
                    expected_row = p_kept @ w_out.kept
                # −Σ_kept p·log q = Σp · logsumexp(h @ W.T) − h · Σ p·W_kept (the kept rows are constant)
                guard = w_out.logsumexp(hidden) * p_kept.sum(-1) - (hidden * expected_row).sum(-1)
                loss = loss + options.english_weight * guard.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(round(float(loss.detach()), 4))
            steps += 1
    finally:
        restore(model, flags)
        if options.checkpointing and model.supports_gradient_checkpointing and not was_checkpointing:
            model.activation_checkpointing_disable()
        model.train(was_training)
    unseen = ~seen[fresh]
    rows = {INPUT: rows_in.detach().clone()}
    if not tied:
        rows[OUTPUT] = rows_out.detach().clone()
    undecomposable = torch.tensor([not token_map.decompositions.get(t) for t in inputs.new_ids], dtype=torch.bool)
    reset = unseen if options.reset_unseen else undecomposable
    for name in rows:
        rows[name][reset] = start.rows[name][reset].to(rows[name].dtype)
    fallback = int(reset.sum())
    log.info("distill: %d steps over %d target + %d English snippets in %.1f s; %d of %d new tokens seen, %d keep "
             "their %s rows", steps, len(target), len(english), time.perf_counter() - started,
             len(fresh) - int(unseen.sum()), len(fresh), fallback, options.start)
    return InitResult(rows, fallback, {
        "start": options.start, "steps": steps, "target_snippets": min(len(target), steps * options.batch_size),
        "english_snippets": min(len(english), steps * options.english_batch_size), "unseen_rows": int(unseen.sum()),
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
    })
