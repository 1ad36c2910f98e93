"""The whole LEP flow on tiny models: the instruct sibling's chat pattern survives a new tokenizer.

tiny base → tiny instruct sibling → vocab Extended → mean init → embeddings-only training of the base (a
plain torch loop standing in for CPT) → LEP conversion → the result still answers like the instruct
sibling, through the new tokenizer.

The sibling here is made the way LEP assumes instruct tuning works (paper §4.1: I = I_base·D ... U·O_base):
its body is fine-tuned while its embeddings change by a d×d linear map. The session fixture's sibling
(`tiny_instruct_pair.instruct`) is fine-tuned in every weight at lr 3e-3 from a random init, so its rows move
by several times their own scale, non-linearly: no linear map fits it (relative residual 0.45 on
embed_tokens, 0.87 on lm_head), and no LEP variant — not even with an untrained donor — keeps its pattern.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from langadapt.embeddings.surgery import embed_model
from langadapt.lep.propagate import lep_model
from langadapt.vocab.base import BaseTokenizer
from langadapt.vocab.build import build_vocabulary, save_vocabulary
from langadapt.vocab.token_map import TokenMap
from tests import tiny


def make_linear_instruct_sibling(base_dir: Path, out: Path, reply: str, steps: int = 80) -> Path:
    """Fine-tune the body to answer `reply`, with embed_tokens = E_B·R_E and lm_head = H_B·R_H, R trained."""
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    embed, head = (model.get_input_embeddings().weight.detach().clone(),
                   model.get_output_embeddings().weight.detach().clone())
    maps = [torch.eye(embed.shape[1], requires_grad=True) for _ in range(2)]
    body = [p for name, p in model.model.named_parameters() if "embed_tokens" not in name]
    optimizer = torch.optim.AdamW([{"params": body}, {"params": maps, "lr": 1e-2}], lr=3e-3)
    examples = tiny.chat_examples(tokenizer, reply)
    torch.manual_seed(0)
    model.train()
    for step in range(steps):
        batch = tiny.padded_batch([examples[(step * 8 + i) % len(examples)] for i in range(8)], tokenizer.pad_token_id)
        inputs = F.embedding(batch["input_ids"], embed @ maps[0])
        hidden = model.model(inputs_embeds=inputs, attention_mask=batch["attention_mask"]).last_hidden_state
        logits = hidden[:, :-1] @ (head @ maps[1]).T
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(embed @ maps[0])
        model.get_output_embeddings().weight.copy_(head @ maps[1])
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def train_embeddings_only(
    model_dir: Path, out: Path, texts: list[str], steps: int = 30, lr: float = 1e-3
) -> list[float]:
    """A few AdamW steps on `embed_tokens` and `lm_head` only; returns the losses."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trained = [model.get_input_embeddings().weight, model.get_output_embeddings().weight]
    for parameter in model.parameters():
        parameter.requires_grad_(any(parameter is weight for weight in trained))
    optimizer = torch.optim.AdamW(trained, lr=lr, weight_decay=0.0)
    losses = []
    model.train()
    for step in range(steps):
        batch = tokenizer(texts[step * 8 : step * 8 + 8], truncation=True, max_length=48, padding=True,
                          return_tensors="pt")
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return losses


@pytest.fixture(scope="module")
def adapted(tiny_instruct_pair, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """B, the linear sibling I, and D = B Extended + mean init + embeddings-only training."""
    root = tmp_path_factory.mktemp("lep_flow")
    base_dir = tiny_instruct_pair.base
    instruct = make_linear_instruct_sibling(base_dir, root / "instruct", tiny_instruct_pair.reply)
    base = BaseTokenizer.load(str(base_dir))
    vocabulary = build_vocabulary(base, iter(tiny.texts("eu")), method="extended", vocab_size=1200)
    save_vocabulary(vocabulary, base, root / "vocab")
    embed_model(base_dir, root / "vocab", root / "embed", "mean")
    losses = train_embeddings_only(root / "embed", root / "cpt", tiny.texts("eu", limit=240))
    assert losses[-1] < losses[0] - 0.3
    return {"base": base_dir, "instruct": instruct, "embed": root / "embed", "donor": root / "cpt", "root": root}


PROMPTS = [text[:60] for text in tiny.texts("eu", path=tiny.EU_DEV, limit=6)[2:6]]  # seen by no model


def test_lep_conversion_keeps_the_instruct_chat_pattern_with_the_new_tokenizer(adapted, tiny_instruct_pair) -> None:
    reply = tiny_instruct_pair.reply
    assert all(tiny.greedy_reply(adapted["instruct"], prompt) == reply for prompt in PROMPTS)
    assert tiny.greedy_reply(adapted["donor"], PROMPTS[0]) != reply
    before = AutoModelForCausalLM.from_pretrained(adapted["embed"]).get_input_embeddings().weight
    after = AutoModelForCausalLM.from_pretrained(adapted["donor"]).get_input_embeddings().weight
    assert not torch.equal(before, after)  # the donor's rows really moved

    out = adapted["root"] / "lep-conversion"
    # The CPT folder carries no token map: LEP takes the embed stage's, as the lep stage does.
    metrics = lep_model(adapted["base"], adapted["instruct"], adapted["donor"], out, "conversion",
                        token_map_path=adapted["embed"])

    token_map = TokenMap.load(adapted["embed"])
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert len(tokenizer) == token_map.vocab_size == metrics["vocab_size"] > token_map.base_vocab_size
    for prompt in PROMPTS:
        assert max(tokenizer(prompt, add_special_tokens=False)["input_ids"]) >= token_map.base_vocab_size
        assert tiny.greedy_reply(out, prompt) == reply
    special = sum(token.special for token in tokenizer.added_tokens_decoder.values())
    for fit in metrics["maps"].values():  # every row with sub-tokens but the special ones, which are copied
        assert fit["fit_rows"] == token_map.vocab_size - metrics["fallback_rows"] - special
        assert fit["residual"] < 1e-5 and fit["identity_deviation"] > 0.1


def test_swap_loses_the_pattern_the_map_keeps(adapted, tiny_instruct_pair) -> None:
    out = adapted["root"] / "lep-swap"
    lep_model(adapted["base"], adapted["instruct"], adapted["donor"], out, "swap", token_map_path=adapted["embed"])
    assert all(tiny.greedy_reply(out, prompt) != tiny_instruct_pair.reply for prompt in PROMPTS)
