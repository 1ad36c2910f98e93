"""Translation backends behind one small interface; each kind is one module of this package.

A backend turns a list of segments (single lines, masked, within its `max_segment_chars`) into their
translations, yielding `(index, text)` as they are ready so the caller can cache each one at once. Models
load on the first call: a run that finds every segment in the cache never loads one. `identity` names
everything that changes the output (it keys the cache); `usage` counts model calls and tokens.
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from langadapt.errors import LangadaptError

MODULES = {"seq2seq": "seq2seq", "endpoint": "endpoint", "causal_lm": "causal"}  # config kind -> module


@dataclass
class BackendUsage:
    calls: int = 0  # generate() calls or HTTP requests sent (retries included)
    tokens_in: int = 0
    tokens_out: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class Backend(ABC):
    kind: ClassVar[str]

    def __init__(self, settings: Any):
        self.settings = settings
        self.usage = BackendUsage()

    @property
    def max_segment_chars(self) -> int:
        return int(self.settings.max_segment_chars)

    @property
    def model_name(self) -> str:
        return str(self.settings.model)

    def identity(self) -> dict[str, Any]:
        """What changes a translation: every setting except how fast or where it runs."""
        ignored = {"batch_size", "device", "concurrency", "timeout_seconds", "max_retries", "backoff_seconds",
                   "max_backoff_seconds", "url", "api_key_env", "max_segment_chars", "trust_remote_code"}
        return {k: v for k, v in self.settings.model_dump(mode="json").items() if k not in ignored}

    def check_languages(self, source: str, target: str) -> None:
        """Raise a one-line error when the backend cannot translate source -> target (codes it does not know);
        prompted backends take any language by name."""
        return None

    @abstractmethod
    def translate(self, texts: list[str], source: str, target: str) -> Iterator[tuple[int, str]]:
        """(index into texts, translation) of every text, in any order."""

    def metrics(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model_name, **self.usage.to_dict()}

    def close(self) -> None:
        """Release what the backend holds (an HTTP pool); models go with the backend object."""
        return None


def make_backend(settings: Any) -> Backend:
    module = MODULES.get(settings.kind)
    if module is None:
        raise LangadaptError(f"unknown translation backend '{settings.kind}' — use one of: {', '.join(MODULES)}")
    backend_class: type[Backend] = importlib.import_module(f"langadapt.translate.backends.{module}").BACKEND
    return backend_class(settings)


def fill(template: str, **values: str) -> str:
    """`template` with `{name}` replaced for the given names only, in one pass (other braces are left alone)."""
    slots = re.compile(r"\{(" + "|".join(map(re.escape, values)) + r")\}")
    return slots.sub(lambda match: values[match.group(1)], template)
