"""Greedy generation for the copy and generation tasks: batched, left-padded, chat template optional.

Outputs keep the generated token ids' count: the copy task's length score needs how many tokens the
model *chose* to spend (an adapted model that falls back to old fine-grained tokens spends more).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from langadapt.errors import LangadaptError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


PLAIN_STOP = "\n\n"  # where a plain (non-chat) answer ends


@dataclass(frozen=True)
class Generation:
    prompt: str
    text: str  # decoded without special tokens, stripped
    tokens: int  # generated tokens before the first end-of-sequence token
    stopped: bool  # ended with an end-of-sequence token (False: cut by max_new_tokens)


@dataclass(frozen=True)
class GenerationRun:
    """Outputs, wall seconds, and decode steps (each batch's generated width, summed over batches).

    Speeds are those of one stream — what a user watching one answer sees: `tokens_per_second` is decode
    steps per second *after the first token* (`prefill_seconds`, reading the prompt and choosing the first
    token, is kept apart: counted in, it made short answers look slow — an adapted model that copies a
    sentence in 10 tokens spent most of its time reading the prompt), `words_per_second` that times the words
    per generated token. Words over wall time would instead measure how early stops line up in a batch (a
    batch runs until its longest answer ends).
    """

    outputs: list[Generation]
    seconds: float
    steps: int = 0
    prefill_seconds: float = 0.0  # per batch, until its first token
    batches: int = 0

    @property
    def tokens_per_second(self) -> float:
        steps, seconds = self.steps - self.batches, self.seconds - self.prefill_seconds
        return steps / seconds if seconds > 0 and steps > 0 else float("nan")

    @property
    def words_per_second(self) -> float:
        words = sum(len(g.text.split()) for g in self.outputs)
        tokens = sum(g.tokens for g in self.outputs)
        return self.tokens_per_second * words / tokens if tokens else float("nan")


class FirstTokenClock:
    """A `generate` streamer that notes when the first new token arrives (its first `put` is the prompt)."""

    def __init__(self) -> None:
        self.puts, self.first = 0, None

    def put(self, value: object) -> None:
        self.puts += 1
        if self.puts == 2:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


def require_chat_template(tokenizer: PreTrainedTokenizerBase) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise LangadaptError(
            f"the model '{tokenizer.name_or_path}' has no chat template but the task asks for one — "
            "set chat_template: false for base models, or use a tokenizer folder that has one"
        )


def render_prompt(
    tokenizer: PreTrainedTokenizerBase, user: str, *, chat_template: bool, system: str | None = None
) -> str:
    """The text the model continues: the user turn in the chat template (generation prompt open), or the
    plain text followed by a blank line."""
    if not chat_template:
        return user + PLAIN_STOP
    require_chat_template(tokenizer)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    ids = model.generation_config.eos_token_id
    stops = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        stops.add(int(tokenizer.eos_token_id))
    return stops


def generate_greedy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    *,
    max_new_tokens: int,
    chat_template: bool,
    system: str | None = None,
    batch_size: int = 8,
) -> GenerationRun:
    """Greedy answers to `prompts` (user turns), batched by prompt length.

    Without a chat template nothing tells a base model where its answer ends, so a plain prompt's answer
    stops at the first blank line (its token count is then that of the kept text, re-encoded).
    """
    import torch

    rendered = [render_prompt(tokenizer, p, chat_template=chat_template, system=system) for p in prompts]
    # A chat template writes its own BOS; a plain prompt gets what the tokenizer adds by default.
    encoded = [tokenizer(text, add_special_tokens=not chat_template)["input_ids"] for text in rendered]
    stops = stop_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stops, default=0)
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
    outputs: dict[int, Generation] = {}
    steps, prefill, batches = 0, 0.0, 0
    started = time.perf_counter()
    with torch.inference_mode():
        for at in range(0, len(order), batch_size):
            rows = order[at : at + batch_size]
            width = max(len(encoded[i]) for i in rows)
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            attention = torch.zeros_like(input_ids)
            for row, i in enumerate(rows):  # left padding: every prompt ends where generation starts
                input_ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                attention[row, width - len(encoded[i]) :] = 1
            clock, batch_started = FirstTokenClock(), time.perf_counter()
            generated = model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), max_new_tokens=max_new_tokens,
                do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=pad,
                eos_token_id=sorted(stops) or None, streamer=clock,
                **({} if chat_template else {"stop_strings": [PLAIN_STOP], "tokenizer": tokenizer}),
            )[:, width:].tolist()
            steps += len(generated[0])
            prefill += (clock.first or time.perf_counter()) - batch_started
            batches += 1
            for row, i in enumerate(rows):
                new = generated[row]
                cut = next((k for k, t in enumerate(new) if t in stops), None)
                kept = new if cut is None else new[:cut]
                text = tokenizer.decode(kept, skip_special_tokens=True).strip()
                n_tokens, stopped = len(kept), cut is not None
                if not chat_template and PLAIN_STOP in text:
                    text = text.split(PLAIN_STOP)[0].strip()
                    n_tokens, stopped = len(tokenizer(text, add_special_tokens=False)["input_ids"]), True
                outputs[i] = Generation(prompts[i], text, n_tokens, stopped)
    return GenerationRun([outputs[i] for i in range(len(prompts))], time.perf_counter() - started, steps, prefill,
                         batches)
