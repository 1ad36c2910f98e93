"""The init-method registry: how the rows of tokens new to a model are computed.

A method is one module under `langadapt.embeddings.methods` (or anywhere, e.g. a test file) holding a
function decorated with `@init_method("name", options=MyOptions)`. It gets an `InitInputs` and returns an
`InitResult` with one (new tokens × hidden) tensor per matrix; the surgery around it (kept rows copied
bit-for-bit, special tokens, tied heads, finite checks, installing, saving) is the same for every method.
Built-in modules are discovered with pkgutil, so adding a method is adding one file.
"""

from __future__ import annotations

import difflib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from pydantic import ValidationError

from langadapt.config import describe_errors
from langadapt.errors import LangadaptError
from langadapt.registry import Registry
from langadapt.schema import Section
from langadapt.vocab.token_map import TokenMap

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

AUTO = "auto"  # not a method: `embed.method: auto` probes several (langadapt.embeddings.probe)

Texts = Callable[[], Iterator[str]]  # a fresh iterator over documents on every call


@dataclass(frozen=True)
class ProbeTexts:
    """Held-out training documents `method: auto` scores on (never the eval sets)."""

    target: list[str]
    english: list[str]


@dataclass(frozen=True)
class Corpus:
    """The texts corpus-based methods read, and the probe's held-out slice (kept out of `texts`)."""

    texts: Texts | None = None
    english: Texts | None = None
    probe: ProbeTexts | None = None


class NoOptions(Section):
    """A method without options."""


@dataclass
class InitInputs:
    """Everything a method may read. `matrices` are the ORIGINAL model's (`embed_tokens`, plus `lm_head`
    when untied); `model` is the original model (body frozen), for methods that run it."""

    matrices: dict[str, torch.Tensor]
    token_map: TokenMap
    old_tokenizer: PreTrainedTokenizerBase | None = None
    new_tokenizer: PreTrainedTokenizerBase | None = None
    model: PreTrainedModel | None = None
    texts: Texts | None = None  # target-language training documents
    english: Texts | None = None  # English documents (regression guard), when the corpus has some
    generator: torch.Generator = field(default_factory=torch.Generator)
    init_std: float = 0.02

    @property
    def new_ids(self) -> list[int]:
        return self.token_map.new_ids()

    def base_rows(self, name: str) -> torch.Tensor:
        """The rows of the old tokenizer's tokens of a matrix (padding rows beyond it excluded), float32+."""
        old = self.matrices[name]
        return old[: self.token_map.base_vocab_size].to(torch.promote_types(old.dtype, torch.float32))

    def need(self, method: str, *what: str) -> None:
        """One-line error when an input the method needs is missing."""
        hints = {"model": "it runs the model", "texts": "it reads the target corpus — add a `data` stage "
                 "(or pass --corpus)", "old_tokenizer": "it tokenizes text", "new_tokenizer": "it tokenizes text"}
        for name in what:
            if getattr(self, name) is None:
                raise LangadaptError(f"embed method '{method}' needs {name.replace('_', ' ')}: {hints[name]}")


@dataclass
class InitResult:
    rows: dict[str, torch.Tensor]  # matrix name -> (len(token_map.new_ids()) × hidden)
    fallback_rows: int = 0  # new tokens the method could not inform (they got the sub-token mean)
    report: dict[str, Any] = field(default_factory=dict)  # JSON-able figures for the manifest


InitFn = Callable[[InitInputs, Any], InitResult]


@dataclass(frozen=True)
class InitMethod:
    name: str
    fn: InitFn
    options: type[Section]
    needs_corpus: bool
    doc: str

    def parse_options(self, raw: dict[str, Any] | Section | None) -> Section:
        if isinstance(raw, self.options):
            return raw
        try:
            return self.options.model_validate(raw or {})
        except ValidationError as exc:
            problems = "; ".join(describe_errors(exc, self.options))
            raise LangadaptError(f"embed.options.{self.name}: {problems}") from None

    def __call__(self, inputs: InitInputs, options: dict[str, Any] | Section | None = None) -> InitResult:
        result = self.fn(inputs, self.parse_options(options))
        n = len(inputs.new_ids)
        for name, rows in result.rows.items():
            if rows.shape != (n, inputs.matrices[name].shape[1]):
                raise ValueError(f"init method {self.name!r} returned {tuple(rows.shape)} rows for {name}, "
                                 f"expected {(n, inputs.matrices[name].shape[1])}")
        return result


def _method_modules() -> tuple[str, ...]:
    """Every module of `langadapt.embeddings.methods`: a new method is a new file there."""
    from langadapt.embeddings import methods

    return tuple(f"{methods.__name__}.{module.name}" for module in pkgutil.iter_modules(methods.__path__))


METHODS: Registry[InitMethod] = Registry("init method", _method_modules)


def init_method(
    name: str, *, options: type[Section] = NoOptions, needs_corpus: bool = False
) -> Callable[[InitFn], InitFn]:
    """Register `fn(inputs, options) -> InitResult` as `embed.method: name`."""
    if name == AUTO:
        raise ValueError(f"{AUTO!r} is reserved for the probe")

    def register(fn: InitFn) -> InitFn:
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        METHODS.add(name, InitMethod(name, fn, options, needs_corpus, doc))
        return fn

    return register


def unregister(name: str) -> None:
    METHODS.remove(name)


def registered_methods() -> dict[str, InitMethod]:
    """Every init method, the built-in modules imported first."""
    return METHODS.items()


def method_names(with_auto: bool = False) -> list[str]:
    return [*sorted(registered_methods()), *([AUTO] if with_auto else [])]


def get_method(name: str) -> InitMethod:
    methods = registered_methods()
    if name not in methods:
        raise LangadaptError(unknown_method_message(name, methods))
    return methods[name]


def unknown_method_message(name: str, known: Iterable[str] | None = None, what: str = "embed.method") -> str:
    known = sorted(known if known is not None else registered_methods())
    close = difflib.get_close_matches(name, [*known, AUTO], n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{what} '{name}' is not an init method — {hint}choose one of: {', '.join([*known, AUTO])}"
