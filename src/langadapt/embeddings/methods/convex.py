"""`convex` (FOCUS / CW2V / OFA family): each new row = a sparse convex combination of old rows of tokens
the two vocabularies share, weighted by how similar the tokens are in the target corpus.

Similarities come from static vectors trained here on the corpus tokenized with the NEW tokenizer (gensim
word2vec, skip-gram; each token id is one "word"), never downloaded. For a new token, its `neighbours` most
similar shared tokens (kept tokens seen in the corpus) get weights sparsemax(cosine / temperature): non-negative,
summing to one, most of them zero. `blend` mixes the result with the sub-token mean (1 = convex only). New
tokens the corpus is too small to give a vector fall back to the mean (counted).
"""

from __future__ import annotations

import logging
from itertools import islice

import numpy as np
import torch
from pydantic import Field

from langadapt.embeddings.registry import InitInputs, InitResult, get_method, init_method
from langadapt.errors import LangadaptError
from langadapt.schema import Section

log = logging.getLogger("langadapt.embed")


class ConvexOptions(Section):
    """Options of `embed.method: convex` (`embed.options.convex`)."""

    dim: int = Field(default=100, ge=2, description="size of the static vectors")
    window: int = Field(default=5, ge=1)
    epochs: int = Field(default=5, ge=1)
    min_count: int = Field(default=3, ge=1, description="tokens seen fewer times get no vector")
    neighbours: int = Field(default=50, ge=1, description="most similar shared tokens the weights range over")
    temperature: float = Field(default=0.1, gt=0, description="cosines are divided by it before sparsemax")
    blend: float = Field(default=1.0, ge=0, le=1, description="share of the convex row; the rest is the sub-token mean")
    max_documents: int = Field(default=100000, ge=1)
    workers: int = Field(default=1, ge=1, description="gensim threads (1 = reproducible)")


def sparsemax(scores: torch.Tensor) -> torch.Tensor:
    """Row-wise sparsemax (Martins & Astudillo 2016): the Euclidean projection onto the simplex."""
    ordered, _ = torch.sort(scores, dim=-1, descending=True)
    k = torch.arange(1, scores.shape[-1] + 1, dtype=scores.dtype)
    cumulative = ordered.cumsum(-1)
    support = (1 + k * ordered) > cumulative
    size = support.sum(-1, keepdim=True)
    tau = (cumulative.gather(-1, size - 1) - 1) / size.to(scores.dtype)
    return (scores - tau).clamp_min(0)


def token_vectors(inputs: InitInputs, options: ConvexOptions) -> dict[int, np.ndarray]:
    """Unit vectors of the new tokenizer's ids that occur at least `min_count` times in the corpus."""
    from gensim.models import Word2Vec

    assert inputs.texts is not None and inputs.new_tokenizer is not None
    documents = [t for t in islice(inputs.texts(), options.max_documents) if t]
    sentences = []
    for start in range(0, len(documents), 512):
        for ids in inputs.new_tokenizer(documents[start:start + 512], add_special_tokens=False)["input_ids"]:
            sentences.append([str(i) for i in ids])
    counts: dict[str, int] = {}
    for sentence in sentences:
        for token in sentence:
            counts[token] = counts.get(token, 0) + 1
    if not any(c >= options.min_count for c in counts.values()):
        return {}
    seed = int(torch.randint(0, 2**31, (1,), generator=inputs.generator))
    w2v = Word2Vec(sentences=sentences, vector_size=options.dim, window=options.window, min_count=options.min_count,
                   workers=options.workers, epochs=options.epochs, sg=1, seed=seed)
    vectors = w2v.wv.get_normed_vectors()
    return {int(token): vectors[index] for index, token in enumerate(w2v.wv.index_to_key)}


def convex_weights(new_vectors: torch.Tensor, shared_vectors: torch.Tensor, neighbours: int,
                   temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights, indices into the shared tokens), one row per new token: sparsemax over the top cosines."""
    cosine = new_vectors @ shared_vectors.T
    top, index = cosine.topk(min(neighbours, shared_vectors.shape[0]), dim=-1)
    return sparsemax(top.double() / temperature), index


@init_method("convex", options=ConvexOptions, needs_corpus=True)
def convex_init(inputs: InitInputs, options: ConvexOptions) -> InitResult:
    """sparse convex combination of shared tokens' rows, by similarity of corpus-trained token vectors"""
    inputs.need("convex", "texts", "new_tokenizer")
    mean = get_method("mean")(inputs)
    token_map = inputs.token_map
    vectors = token_vectors(inputs, options)
    shared = [i for i in vectors if token_map.old_ids[i] >= 0]
    if vectors and not shared:
        raise LangadaptError(
            "embed method 'convex': no token the old and new vocabularies share occurs in the corpus, so there is "
            "nothing to combine — use method mean or distill (or a tokenizer that keeps old tokens)"
        )
    fresh = inputs.new_ids
    informed = [row for row, new in enumerate(fresh) if new in vectors]
    rows = {name: r.clone() for name, r in mean.rows.items()}
    weights_report: dict[str, float] = {}
    if informed:
        shared_vectors = torch.from_numpy(np.stack([vectors[i] for i in shared]))
        new_vectors = torch.from_numpy(np.stack([vectors[fresh[row]] for row in informed]))
        weights, index = convex_weights(new_vectors, shared_vectors, options.neighbours, options.temperature)
        old_index = torch.tensor([token_map.old_ids[i] for i in shared])[index]  # informed × k old ids
        for name in rows:
            base = inputs.base_rows(name).double()
            combined = torch.einsum("nk,nkd->nd", weights, base[old_index])
            target = torch.tensor(informed)
            rows[name][target] = (options.blend * combined
                                  + (1 - options.blend) * rows[name][target].double()).to(rows[name].dtype)
        support = (weights > 0).sum(-1).double()
        weights_report = {
            "mean_support": round(float(support.mean()), 3),
            "max_weight_mean": round(float(weights.max(-1).values.mean()), 4),
        }
    fallback = len(fresh) - len(informed)
    if fallback:
        log.warning("convex: %d of %d new tokens occur fewer than %d times in the corpus (or not at all) — they "
                    "get the sub-token mean", fallback, len(fresh), options.min_count)
    return InitResult(rows, fallback, {"vectors": len(vectors), "shared_tokens": len(shared), **weights_report})
