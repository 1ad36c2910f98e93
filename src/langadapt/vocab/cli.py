"""`langadapt vocab train` and `langadapt vocab stats`: the vocabulary stage's core, without a run config."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

vocab_app = typer.Typer(
    help="Train target-language tokenizers (BPE, Unigram, Extended, Optimized) and compare tokenizers.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(vocab_app, name="vocab")


def _documents(path: str, text_field: str, limit: int | None = None, what: str = "corpus") -> tuple[Any, Any]:
    """Stream a source the data layer reads (jsonl/txt/parquet/datasets folder), with its skip counts."""
    from langadapt.data.config import SourceConfig
    from langadapt.data.sources import ReadStats, iter_documents

    local = Path(path).expanduser()
    source = SourceConfig(path=str(local.resolve()) if local.exists() else path, text_field=text_field,
                          max_documents=limit)
    stats = ReadStats()
    return iter_documents(source, what, stats), stats


@vocab_app.command("train")
def train(
    base: Annotated[str, typer.Option("--base", help="Base model or tokenizer: builtin:NAME, a folder or a hub id.")],
    corpus: Annotated[
        str, typer.Option("--corpus", help="Target-language text: jsonl[.gz], txt[.gz], parquet, a folder or glob.")
    ],
    vocab_size: Annotated[
        int, typer.Option("--vocab-size", help="Size of the target tokenizer trained on the corpus.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output tokenizer folder (must not exist yet).")],
    method: Annotated[str, typer.Option("--method", help="bpe | unigram | extended | optimized.")] = "extended",
    text_field: Annotated[str, typer.Option("--text-field", help="JSON field / column holding the text.")] = "text",
    keep: Annotated[int | None, typer.Option("--keep", help="optimized: original tokens to keep.")] = None,
    merges: Annotated[
        str, typer.Option("--merges", help="extended/optimized: continue | append | prepend.")
    ] = "continue",
    english: Annotated[
        str | None, typer.Option("--english", help="optimized: English text for the frequency sample.")
    ] = None,
    english_field: Annotated[str, typer.Option("--english-field", help="Text field of --english.")] = "text",
    english_documents: Annotated[
        int, typer.Option("--english-documents", help="Documents of the English sample.")
    ] = 20000,
    min_frequency: Annotated[int, typer.Option("--min-frequency", help="Minimum count of a merge.")] = 2,
    max_documents: Annotated[
        int | None, typer.Option("--max-documents", help="Train on at most this many documents.")
    ] = None,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="Allow a base with custom code.")
    ] = False,
) -> None:
    """Build a tokenizer folder (AutoTokenizer loads it) with token_map.json and manifest.json inside."""
    import logging

    from langadapt.runstore import MANIFEST, library_versions, staged_output, write_json
    from langadapt.vocab.base import BaseTokenizer
    from langadapt.vocab.build import build_vocabulary, save_vocabulary

    log = logging.getLogger("langadapt.vocab")
    out = out.expanduser().resolve()
    with staged_output(out) as tmp:
        started = time.perf_counter()
        base_tokenizer = BaseTokenizer.load(base, trust_remote_code=trust_remote_code)
        texts, read = _documents(corpus, text_field, max_documents)
        english_texts, english_read = (
            _documents(english, english_field, english_documents, "english") if english else (None, None)
        )
        vocabulary = build_vocabulary(
            base_tokenizer, texts, method=method, vocab_size=vocab_size, keep=keep, english=english_texts,
            merges=merges, min_frequency=min_frequency,
        )
        if read.invalid_utf8 or read.invalid_json:
            log.warning(
                "skipped %d non-UTF-8 and %d malformed lines of %s", read.invalid_utf8, read.invalid_json, corpus
            )
        save_vocabulary(vocabulary, base_tokenizer, tmp)
        write_json(tmp / MANIFEST, {
            "command": "vocab train", "base": base, "corpus": corpus, "text_field": text_field,
            "english": english, "method": method, "vocab_size": vocab_size, "keep": keep, "merges": merges,
            "min_frequency": min_frequency, "family": base_tokenizer.family, "build": vocabulary.info,
            "read": {"documents": read.documents, "invalid_utf8": read.invalid_utf8,
                     "invalid_json": read.invalid_json, "missing_field": read.missing_field,
                     **({"english_documents": english_read.documents} if english_read else {})},
            "versions": library_versions(), "wall_seconds": round(time.perf_counter() - started, 3),
        })
    info = vocabulary.info
    typer.echo(f"{method}: {info['vocab_size']} tokens ({info['new_tokens']} new) → {out}")


@vocab_app.command("stats")
def stats(
    tokenizer: Annotated[
        list[str],
        typer.Option(
            "--tokenizer",
            help="A tokenizer (folder, builtin:NAME, hub id), or NAME=REF; repeatable. The first is the reference.",
        ),
    ],
    text: Annotated[
        list[str], typer.Option("--text", help="A text source (jsonl[.gz], txt, parquet, ...); repeatable.")
    ],
    field: Annotated[str, typer.Option("--field", help="JSON field / column holding the text.")] = "text",
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON here.")] = None,
    max_documents: Annotated[
        int | None, typer.Option("--max-documents", help="Use at most this many documents per text.")
    ] = None,
) -> None:
    """Characters/token, bytes/token, tokens/word, split-word share, unknown rate, vocabulary overlap."""
    from rich.console import Console
    from rich.table import Table

    from langadapt.errors import LangadaptError
    from langadapt.models import load_tokenizer
    from langadapt.vocab.metrics import compare_tokenizers

    tokenizers = {}
    for item in tokenizer:
        name, _, ref = item.partition("=") if "=" in item and not Path(item).exists() else (item, "", item)
        loaded = load_tokenizer(ref)
        if not getattr(loaded, "is_fast", False):
            raise LangadaptError(
                f"tokenizer '{ref}' is not a fast (tokenizers-backed) tokenizer — save it with a tokenizer.json"
            )
        tokenizers[name] = loaded
    texts = {}
    for path in text:
        documents, _ = _documents(path, field, max_documents, "text")
        texts[Path(path).name] = list(documents)
        if not texts[Path(path).name]:
            raise LangadaptError(f"--text '{path}' holds no documents — check the path and --field")
    result = compare_tokenizers(tokenizers, texts)

    table = Table(title=f"reference: {result['reference']}", title_justify="left")
    for column in ("tokenizer", "text", "vocab", "chars/tok", "bytes/tok", "tok/word", "split words", "unknown",
                   "shared"):
        table.add_column(column, justify="left" if column in ("tokenizer", "text") else "right")
    for name, entry in result["tokenizers"].items():
        for text_name, row in entry["texts"].items():
            shared = row.get("shared_token_share")
            table.add_row(name, text_name, str(entry["vocab_size"]), f"{row['chars_per_token']:.3f}",
                          f"{row['bytes_per_token']:.3f}", f"{row['tokens_per_word']:.3f}",
                          f"{row['split_word_share']:.1%}", f"{row['unknown_rate']:.2%}",
                          "" if shared is None else f"{shared:.1%}")
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
