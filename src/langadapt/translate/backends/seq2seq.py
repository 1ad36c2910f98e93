"""A transformers encoder-decoder MT model as a translator: Marian/opus-mt, NLLB, M2M100, MADLAD-400.

Each family names languages its own way; config codes are ISO 639 and are mapped here, checked against the
tokenizer's own vocabulary (so an unknown code is one line naming what the model does know):

| family | source | target |
|---|---|---|
| marian | fixed by the model | fixed, or a `>>xxx<<` token first in the source (multi-target models) |
| nllb | `tokenizer.src_lang = eng_Latn` | forced first token `eus_Latn` |
| m2m100 | `tokenizer.src_lang = en` | forced first token `__eu__` |
| madlad | any | a `<2eu>` token first in the source |

Segments are sorted by length and batched (little padding), decoded greedily or with beams.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from langadapt.errors import LangadaptError
from langadapt.translate.backends import Backend
from langadapt.translate.config import Seq2SeqBackendConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# NLLB (FLORES-200) uses individual languages where ISO 639-1 names a macrolanguage.
NLLB_OVERRIDES = {"lav": "lvs", "msa": "zsm", "fas": "pes", "ara": "arb", "sqi": "als", "aze": "azj", "uzb": "uzn",
                  "mon": "khk", "swa": "swh", "nor": "nob", "zho": "zho_Hans", "est": "est", "yid": "ydd"}
_MARIAN_TARGET = re.compile(r"^>>\w+<<$")
NLLB_CODE = r"([a-z]{3}_[A-Z][a-z]{3})"


@dataclass(frozen=True)
class LanguageSetup:
    prefix: str = ""  # put before each source text (Marian multi-target, MADLAD)
    src_lang: str | None = None  # the tokenizer's source language (NLLB, M2M100)
    forced_bos_token_id: int | None = None  # the decoder's first token (NLLB, M2M100)


def iso639_3(code: str) -> str | None:
    from langadapt.data.langid import lingua_language

    if len(code) == 3:
        return code
    try:
        return lingua_language(code).iso_code_639_3.name.lower()
    except LangadaptError:
        return None


def same_language(a: str, b: str) -> bool:
    return a == b or (iso639_3(a) or a) == (iso639_3(b) or b)


class Seq2SeqBackend(Backend):
    kind = "seq2seq"
    settings: Seq2SeqBackendConfig

    @cached_property
    def folder(self) -> str:
        from langadapt.models import resolve

        return str(resolve(self.settings.model))

    @cached_property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.folder)

    @cached_property
    def family(self) -> str:
        if self.settings.family != "auto":
            return self.settings.family
        from transformers import AutoConfig

        model_type = AutoConfig.from_pretrained(self.folder).model_type
        vocab = self.tokenizer.get_vocab()
        if model_type == "marian":
            return "marian"
        if model_type == "m2m_100":
            return "nllb" if "eng_Latn" in vocab else "m2m100"
        if model_type == "t5" and "<2en>" in vocab:
            return "madlad"
        raise LangadaptError(
            f"translate.backend: cannot tell how '{self.settings.model}' (model type {model_type}) takes language "
            "codes — set family: marian, nllb, m2m100 or madlad"
        )

    @cached_property
    def model(self) -> PreTrainedModel:
        import torch
        from transformers import AutoModelForSeq2SeqLM

        device = "cuda" if self.settings.device == "auto" and torch.cuda.is_available() else self.settings.device
        device = "cpu" if device == "auto" else device
        dtype = self.settings.dtype
        if dtype == "auto":
            dtype = "bfloat16" if device == "cuda" and torch.cuda.is_bf16_supported() else "float32"
        model = AutoModelForSeq2SeqLM.from_pretrained(self.folder, dtype=getattr(torch, dtype), use_safetensors=True)
        return model.to(device).eval()

    def check_languages(self, source: str, target: str) -> None:
        self.setup(source, target)

    def setup(self, source: str, target: str) -> LanguageSetup:
        # M2M100's tokenizer keeps its language tokens outside get_vocab().
        vocab = {**self.tokenizer.get_vocab(), **getattr(self.tokenizer, "lang_token_to_id", {})}
        family = self.family
        if family == "marian":
            return self._marian(vocab, source, target)
        if family == "madlad":
            return LanguageSetup(prefix=self._known(vocab, [f"<2{target}>"], target, r"<2(\w+)>") + " ")
        if family == "nllb":
            return LanguageSetup(src_lang=self._nllb_code(vocab, source),
                                 forced_bos_token_id=vocab[self._nllb_code(vocab, target)])
        src = self._known(vocab, [f"__{source}__"], source, r"__(\w+)__")
        tgt = self._known(vocab, [f"__{target}__"], target, r"__(\w+)__")
        return LanguageSetup(src_lang=src.strip("_"), forced_bos_token_id=vocab[tgt])

    def _known(self, vocab: dict[str, int], candidates: list[str], code: str, listing: str) -> str:
        """The first candidate token in the vocabulary, else an error listing the codes `listing` finds there."""
        for token in candidates:
            if token in vocab:
                return token
        pattern = re.compile(f"^{listing}$")
        known = sorted(m.group(1) for token in vocab if (m := pattern.match(token)))
        shown = ", ".join(known[:40]) + (" ..." if len(known) > 40 else "")
        raise LangadaptError(
            f"translate.backend: the {self.family} model '{self.settings.model}' has no language '{code}' — it knows: "
            f"{shown or 'none'}; choose another model or language code"
        )

    def _nllb_code(self, vocab: dict[str, int], code: str) -> str:
        if "_" in code:
            return self._known(vocab, [code], code, NLLB_CODE)
        base = iso639_3(code) or code
        base = NLLB_OVERRIDES.get(base, base)
        matches = [token for token in vocab if token == base or token.startswith(base + "_")]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise LangadaptError(f"translate.backend: '{code}' is ambiguous for NLLB ({', '.join(sorted(matches))}) — "
                                 "write the full code as the language, e.g. zho_Hans")
        return self._known(vocab, [], code, NLLB_CODE)

    def _marian(self, vocab: dict[str, int], source: str, target: str) -> LanguageSetup:
        targets = [token for token in vocab if _MARIAN_TARGET.match(token)]
        if targets:  # a multi-target model: the target language is a token before the text
            codes = [f">>{c}<<" for c in (target, iso639_3(target)) if c]
            return LanguageSetup(prefix=self._known(vocab, codes, target, r">>(\w+)<<") + " ")
        pair = self._marian_pair()
        if pair is not None and not (same_language(pair[0], source) and same_language(pair[1], target)):
            raise LangadaptError(
                f"translate.backend: the Marian model '{self.settings.model}' translates {pair[0]} -> {pair[1]}, not "
                f"{source} -> {target} — choose the opus-mt model of that pair"
            )
        return LanguageSetup()

    def _marian_pair(self) -> tuple[str, str] | None:
        """(source, target) a single-pair Marian model declares (tokenizer config, else an opus-mt-xx-yy name)."""
        kwargs = self.tokenizer.init_kwargs
        if kwargs.get("source_lang") and kwargs.get("target_lang"):
            return str(kwargs["source_lang"]), str(kwargs["target_lang"])
        named = re.search(r"opus-mt-([a-z]{2,3})-([a-z]{2,3})$", str(self.settings.model))
        return (named.group(1), named.group(2)) if named else None

    @property
    def max_input_tokens(self) -> int:
        limits = [self.tokenizer.model_max_length, getattr(self.model.config, "max_position_embeddings", None), 1024]
        return min(int(limit) for limit in limits if limit)

    def translate(self, texts: list[str], source: str, target: str) -> Iterator[tuple[int, str]]:
        import torch

        setup = self.setup(source, target)
        tokenizer, model = self.tokenizer, self.model
        if setup.src_lang is not None:
            tokenizer.src_lang = setup.src_lang
        pad = tokenizer.pad_token_id
        generation: dict[str, Any] = {"num_beams": self.settings.num_beams, "do_sample": False,
                                      "max_new_tokens": self.settings.max_new_tokens}
        if setup.forced_bos_token_id is not None:
            generation["forced_bos_token_id"] = setup.forced_bos_token_id
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        for start in range(0, len(order), self.settings.batch_size):
            batch = order[start : start + self.settings.batch_size]
            inputs = tokenizer([setup.prefix + texts[i] for i in batch], return_tensors="pt", padding=True,
                               truncation=True, max_length=self.max_input_tokens).to(model.device)
            with torch.inference_mode():
                output = model.generate(**inputs, **generation)
            self.usage.calls += 1
            self.usage.tokens_in += int(inputs["attention_mask"].sum())
            self.usage.tokens_out += int((output[:, 1:] != pad).sum()) if pad is not None else output[:, 1:].numel()
            for index, text in zip(batch, tokenizer.batch_decode(output, skip_special_tokens=True), strict=True):
                yield index, text.strip()


BACKEND = Seq2SeqBackend
