"""A local causal LM prompted to translate: any instruct model with a prompt template.

Segments never hold a newline, so generation stops at the first token that holds one (and at end of turn):
a small model that goes on chatting after its translation is cut where the translation ends (the same
stop as transformers' `stop_strings=["\n"]`, measured equally fast, without a tokenizer in `generate`).
Prompts are sorted by length and left-padded in batches; decoding is greedy.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING

from langadapt.data.langid import language_name
from langadapt.translate.backends import Backend, fill
from langadapt.translate.config import CausalBackendConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class CausalBackend(Backend):
    kind = "causal_lm"
    settings: CausalBackendConfig

    @cached_property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        from langadapt.models import load_tokenizer

        return load_tokenizer(self.settings.model, trust_remote_code=self.settings.trust_remote_code)

    @cached_property
    def model(self) -> PreTrainedModel:
        import torch

        from langadapt.models import load_model

        device = "cuda" if self.settings.device == "auto" and torch.cuda.is_available() else self.settings.device
        model = load_model(self.settings.model, trust_remote_code=self.settings.trust_remote_code)
        return model.to("cpu" if device == "auto" else device).eval()

    @cached_property
    def newline_tokens(self) -> set[int]:
        """Ids of every token whose text holds a newline."""
        tokenizer = self.tokenizer
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        return {i for i, text in enumerate(texts) if "\n" in text}

    def render(self, text: str, source: str, target: str) -> str:
        from langadapt.evaluate.generation import render_prompt

        prompt = fill(self.settings.prompt, text=text, source_language=language_name(source),
                      target_language=language_name(target))
        return render_prompt(self.tokenizer, prompt, chat_template=self.settings.chat_template)

    def translate(self, texts: list[str], source: str, target: str) -> Iterator[tuple[int, str]]:
        import torch

        from langadapt.evaluate.generation import stop_token_ids

        tokenizer, model = self.tokenizer, self.model
        encoded = [
            tokenizer(self.render(t, source, target), add_special_tokens=not self.settings.chat_template)["input_ids"]
            for t in texts
        ]
        stops = stop_token_ids(model, tokenizer)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stops, default=0)
        ends = sorted(stops | self.newline_tokens)
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]), reverse=True)
        for start in range(0, len(order), self.settings.batch_size):
            rows = order[start : start + self.settings.batch_size]
            width = max(len(encoded[i]) for i in rows)
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            attention = torch.zeros_like(input_ids)
            for row, i in enumerate(rows):  # left padding: every prompt ends where generation starts
                input_ids[row, width - len(encoded[i]):] = torch.tensor(encoded[i])
                attention[row, width - len(encoded[i]):] = 1
            with torch.inference_mode():
                generated = model.generate(
                    input_ids=input_ids.to(model.device), attention_mask=attention.to(model.device),
                    max_new_tokens=self.settings.max_new_tokens, do_sample=False, temperature=None, top_p=None,
                    top_k=None, pad_token_id=pad, eos_token_id=ends or None,
                )[:, width:].tolist()
            self.usage.calls += 1
            for row, i in enumerate(rows):
                new = generated[row]
                cut = next((k for k, token in enumerate(new) if token in stops), len(new))
                cut = next((k + 1 for k, token in enumerate(new[:cut]) if token in self.newline_tokens), cut)
                self.usage.tokens_in += len(encoded[i])
                self.usage.tokens_out += cut
                text = tokenizer.decode(new[:cut], skip_special_tokens=True)
                yield i, text.strip().split("\n")[0].strip()


BACKEND = CausalBackend
