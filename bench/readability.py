"""Can the model read its new tokens at step 0? Copying held-out Basque under init variants (issues 13, 14).

The adapted models copy Basque far worse than the original. This bench isolates why, at step 0 (no
training), on the real SmolLM2-135M-Instruct with the Basque Extended tokenizer of `bench/init.py`
(10,504 new tokens, mean init): 40 held-out dev sentences copied with an English instruction (exact rate,
character similarity), and bits/char on 32 dev documents per side. Variants:

- `original`: the original model and tokenizer (the target);
- `mean`, `mean, old-token outputs only`: the new tokens' logits masked — if copying is unchanged, the
  failure is *reading* the prompt's new tokens, not writing them;
- `resized, old tokenizer`: the mean-init model reading and writing old tokens only;
- `mean × s` (tied rows rescaled to the old rows' norm), `mean + a·z` (z ~ the old rows' fitted normal:
  distinct rows for the copy circuit), `lexicon map k`: untied input rows = a ridge map from the layer-k
  state after [BOS, sub-tokens] to input rows, fitted on the old tokens (the "inner lexicon" idea);
- `distill on the copy sentences` (LEAKS the eval sentences — an upper bound of in-context distillation,
  not a method): tied (reading + likelihood) and untied (reading only), 60 steps at LR 1e-2.

    OMP_NUM_THREADS=2 flock /tmp/langadapt-cpu.lock .venv/bin/python bench/readability.py
"""

from __future__ import annotations

import json
import time

import torch

from common import markdown_table, read_field
from init import CACHE, MODEL, copy_sentences, copy_similarity, files, tokenizer_folder


def untie(model) -> None:
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone(), requires_grad=False)
    model.config.tie_word_embeddings = False


def set_rows(model, fresh: torch.Tensor, start: torch.Tensor, inp: torch.Tensor, out: torch.Tensor | None) -> None:
    """New rows: `inp` for the input side, `out` for an untied head (None: tied, the same rows)."""
    weight = start.clone()
    weight[fresh] = inp
    model.get_input_embeddings().weight = torch.nn.Parameter(weight, requires_grad=False)
    if out is None:
        model.lm_head.weight = model.get_input_embeddings().weight
        model.config.tie_word_embeddings = True
    else:
        head = start.clone()
        head[fresh] = out
        model.lm_head.weight = torch.nn.Parameter(head, requires_grad=False)
        model.config.tie_word_embeddings = False


class OldTokensOnly(torch.nn.Module):
    """The LM head with the new tokens' logits masked: the model can only write old tokens."""

    def __init__(self, head: torch.nn.Module, fresh: torch.Tensor) -> None:
        super().__init__()
        self.head, self.fresh, self.weight = head, fresh, head.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(x)
        logits[..., self.fresh] = -1e4
        return logits


def score(model, tokenizer, base: int, copies: list[str], dev: list[str], english: list[str]) -> dict[str, object]:
    from langadapt.evaluate.bpc import bits_per_character
    from langadapt.evaluate.darucopy import copy_task

    model.eval()
    result = copy_task(model, tokenizer, copies, kind="sentence", language="en", max_new_tokens=48, batch_size=20)
    outputs = [tokenizer(i["prediction"], add_special_tokens=False)["input_ids"] for i in result.items]
    written = sum(len(o) for o in outputs)
    return {
        "exact": round(result.exact, 3),
        "similarity": round(copy_similarity(result.items), 3),
        "new_share": round(sum(t >= base for o in outputs for t in o) / max(written, 1), 3),
        "eu": round(bits_per_character(model, tokenizer, dev, max_length=512).bits_per_char, 3),
        "en": round(bits_per_character(model, tokenizer, english, max_length=512).bits_per_char, 3),
        "example": result.items[0]["prediction"][:60],
    }


@torch.no_grad()
def last_states(model, weight: torch.Tensor, sequences: list[list[int]], prefix: int, layer: int) -> torch.Tensor:
    """The layer-`layer` residual state at the last position of [prefix, *sequence], per sequence."""
    out = []
    for start in range(0, len(sequences), 256):
        chunk = sequences[start:start + 256]
        ids = torch.zeros(len(chunk), max(map(len, chunk)) + 1, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, seq in enumerate(chunk):
            ids[row, : len(seq) + 1] = torch.tensor([prefix, *seq])
            mask[row, : len(seq) + 1] = 1
        states = model.model(inputs_embeds=torch.nn.functional.embedding(ids, weight), attention_mask=mask,
                             output_hidden_states=True).hidden_states[layer]
        out.append(states[torch.arange(len(chunk)), mask.sum(1) - 1])
    return torch.cat(out)


def lexicon_rows(model, weight: torch.Tensor, token_map, prefix: int, layer: int) -> torch.Tensor:
    """Ridge map (λ = 1) from the layer state after [BOS, token] to the token's input row, fitted on 8,000
    old tokens, applied to each new token's state after [BOS, *sub-tokens]."""
    from langadapt.embeddings.contexts import paths

    spelled = paths(token_map)
    kept = [i for i, old in enumerate(token_map.old_ids) if old >= 0]
    kept = [kept[j] for j in torch.randperm(len(kept), generator=torch.Generator().manual_seed(0))[:8000].tolist()]
    features = last_states(model, weight, [[i] for i in kept], prefix, layer)
    features = torch.cat([features, torch.ones(len(features), 1)], 1)
    solution = torch.linalg.solve(features.T @ features + torch.eye(features.shape[1]), features.T @ weight[kept])
    fresh = last_states(model, weight, [spelled[i] for i in token_map.new_ids()], prefix, layer)
    return torch.cat([fresh, torch.ones(len(fresh), 1)], 1) @ solution


def main() -> None:
    from langadapt.embeddings.config import EmbedConfig
    from langadapt.embeddings.registry import Corpus
    from langadapt.embeddings.surgery import resize_to_tokenizer
    from langadapt.models import load_model, load_tokenizer
    from langadapt.vocab.token_map import TokenMap

    torch.set_num_threads(2)
    folder = tokenizer_folder("eu", "extended", 12000)
    old, new, token_map = load_tokenizer(MODEL), load_tokenizer(str(folder)), TokenMap.load(str(folder))
    base, fresh = token_map.base_vocab_size, torch.tensor(token_map.new_ids())
    copies = copy_sentences("eu", 40)
    dev, english = read_field(files("eu")["dev"], "eu", 32), read_field(files("eu")["dev"], "en", 32)
    english_train = read_field(files("eu")["train"], "en", 2000)
    rows: list[dict[str, object]] = []

    def record(name: str, model, tokenizer=new, **extra: object) -> None:
        started = time.perf_counter()
        figures = score(model, tokenizer, base, copies, dev, english)
        rows.append({"variant": name, **figures, **extra, "score_s": round(time.perf_counter() - started)})
        print(json.dumps(rows[-1], ensure_ascii=False), flush=True)

    original = load_model(MODEL, dtype=torch.float32)
    record("original", original, old)
    del original
    model = load_model(MODEL, dtype=torch.float32)
    resize_to_tokenizer(model, old, new, token_map, EmbedConfig(method="mean"), seed=0, corpus=None)
    start = model.get_input_embeddings().weight.detach().clone()
    record("mean", model)
    head = model.lm_head
    model.lm_head = OldTokensOnly(head, fresh)
    record("mean, old-token outputs only", model)
    model.lm_head = head
    record("resized (mean), old tokenizer", model, old)
    for scale in (1.3, 2.0):
        set_rows(model, fresh, start, start[fresh] * scale, None)
        record(f"mean × {scale} (tied)", model)
    old_rows = start[:base]
    cholesky = torch.linalg.cholesky(torch.cov((old_rows - old_rows.mean(0)).T) + 1e-6 * torch.eye(start.shape[1]))
    noise = torch.randn(len(fresh), start.shape[1], generator=torch.Generator().manual_seed(0)) @ cholesky.T
    for amount in (0.3, 0.6, 1.0):
        set_rows(model, fresh, start, start[fresh] + amount * noise, None)
        record(f"mean + {amount}·z (tied)", model)
    prefix = new.bos_token_id if new.bos_token_id is not None else new.eos_token_id
    for layer in (1, 4, 8):
        set_rows(model, fresh, start, lexicon_rows(model, start, token_map, prefix, layer), start[fresh])
        record(f"lexicon map, layer {layer} (untied input; head = mean)", model)
    leaked = Corpus(lambda: iter(copies * 12), lambda: iter(english_train))
    for tied, options in ((True, {"likelihood_weight": 1.0, "english_batch_size": 2}),
                          (False, {"likelihood_weight": 0.0, "english_batch_size": 0, "english_weight": 0.0})):
        model = load_model(MODEL, dtype=torch.float32)
        if not tied:
            untie(model)
        options = {"steps": 60, "batch_size": 8, "length": 32, "max_documents": 480, "learning_rate": 0.01,
                   **options}
        started = time.perf_counter()
        resize_to_tokenizer(model, old, new, token_map, EmbedConfig(method="distill", options={"distill": options}),
                            seed=0, corpus=leaked)
        record(f"distill on the copy sentences ({'tied: reading + likelihood' if tied else 'untied: reading'})",
               model, init_s=round(time.perf_counter() - started))
    header = ["variant", "exact", "similarity", "new_share", "eu", "en", "init_s"]
    print(markdown_table(header, [[row.get(k, "") for k in header] for row in rows]))
    print(f"(tokenizer: {folder}; cache {CACHE})")


if __name__ == "__main__":
    main()
