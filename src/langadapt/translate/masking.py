"""Masking: what a translator must not touch is replaced by numbered tags and restored byte for byte.

Fenced and inline code, math, URLs, e-mail addresses and placeholders (`{name}`, `{{var}}`, `%s`,
`%(name)s`, `${VAR}`) become `<m0>`, `<m1>`, ... before translation. Afterwards every tag must come back
exactly once (in any order: languages reorder words); a tag lost, duplicated or invented is a problem the
filters count, never a silent corruption. Text that already holds something shaped like a tag is masked
as well, so every tag in a masked text is one of ours.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

_PATTERNS = (
    r"(?:```|~~~)[\s\S]*?(?:```|~~~|\Z)",  # fenced code (an unclosed fence runs to the end)
    r"`[^`\n]+`",  # inline code
    r"\$\$[\s\S]+?\$\$",  # display math
    r"\\\[[\s\S]+?\\\]",
    r"\\\([\s\S]+?\\\)",
    r"\$(?=\S)[^$\n]*?(?<=\S)\$(?!\d)",  # inline math; "$5 and $10" is money, not math (pandoc's rule)
    r"(?:https?|ftp)://[^\s<>\"'`]+",  # URLs (trailing punctuation is given back, see _trim_url)
    r"www\.[\w-]+(?:\.[\w-]+)+[^\s<>\"'`]*",
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",  # e-mail addresses
    r"\{\{[^{}\n]*\}\}",  # {{var}} (Jinja, Mustache)
    r"\$\{[^{}\n]+\}",  # ${VAR}
    r"\{[\w.:!\[\]-]*\}",  # {name}, {0}, {}, {x:.2f}
    r"%(?:\(\w+\))?(?:\d+\$)?[-+0#]*\d*(?:\.\d+)?[sdifFgGeExXcru](?![A-Za-z])",  # printf: %s %d %(name)s %1$s
    r"<\s*[mM]\s*\d+\s*>",  # text that already looks like one of our tags
)
_MASKABLE = re.compile("|".join(f"(?:{p})" for p in _PATTERNS))
_URL_START = re.compile(r"(?:https?|ftp)://|www\.")
TAG = re.compile(r"<\s*[mM]\s*(\d+)\s*>")


@dataclass(frozen=True)
class Masked:
    text: str  # the text with tags
    spans: tuple[str, ...]  # what tag <mN> stands for, by N


def mask(text: str) -> Masked:
    spans: list[str] = []
    parts: list[str] = []
    at = 0
    for match in _MASKABLE.finditer(text):
        start, end = match.span()
        found = match.group()
        if _URL_START.match(found):
            found = _trim_url(found)
            end = start + len(found)
        parts.append(text[at:start])
        parts.append(f"<m{len(spans)}>")
        spans.append(found)
        at = end
    parts.append(text[at:])
    return Masked("".join(parts), tuple(spans))


def _trim_url(url: str) -> str:
    """A URL without the punctuation that ends the sentence around it; a closing bracket is kept when the URL
    opened it (Wikipedia links)."""
    while url and url[-1] in ".,;:!?'\")]}":
        if url[-1] in ")]}" and url.count({")": "(", "]": "[", "}": "{"}[url[-1]]) >= url.count(url[-1]):
            break
        url = url[:-1]
    return url


def unmask(text: str, spans: tuple[str, ...]) -> tuple[str, str | None]:
    """The translated text with its tags restored, and the problem if the tags did not come back exactly once
    each: `placeholder_lost` (a tag missing) or `placeholder_altered` (duplicated or unknown)."""
    found = Counter(int(n) for n in TAG.findall(text))
    problem = None
    if any(found[n] > 1 for n in found) or any(n >= len(spans) for n in found):
        problem = "placeholder_altered"
    elif len(found) < len(spans):
        problem = "placeholder_lost"

    def restore(match: re.Match[str]) -> str:
        number = int(match.group(1))
        return spans[number] if number < len(spans) else match.group()

    return TAG.sub(restore, text), problem


def strip_tags(text: str) -> str:
    """The text without its tags (what language ID and length checks should look at)."""
    return TAG.sub(" ", text)
