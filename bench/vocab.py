"""Vocabulary adaptation figures: SmolLM2's tokenizer vs Extended / Optimized / BPE / Unigram, per language.

For Basque, Russian and Lithuanian (../shared/data, train → dev): characters/token on the target dev text and
on its English side, relative to the original tokenizer measured in the same run, plus the share of English
word occurrences the new tokenizer splits into MORE pieces than the original (what costs English when new
merges take priority). Then the time and peak memory of training a 32k BPE on the Basque train split, against
one plain streaming pass over the same corpus, and with the corpus streamed 4 times (memory must not grow).

    .venv/bin/python bench/vocab.py [--langs eu ru lt] [--vocab-size 16000] [--keep 24576]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from common import SHARED_DATA, iter_field, markdown_table

FILES = {
    "eu": ("eu/libreoffice-help.en-eu.train.jsonl.gz", "eu/libreoffice-help.en-eu.dev.jsonl.gz"),
    "ru": ("ru/libreoffice-help.en-ru.train.jsonl.gz", "ru/libreoffice-help.en-ru.dev.jsonl.gz"),
    "lt": ("lt/ui-strings.en-lt.train.jsonl.gz", "lt/ui-strings.en-lt.dev.jsonl.gz"),
}
BAR = {"target_ratio": 2.0, "english_loss": 0.005}  # the bar for Extended on Basque


def resplit_share(base, tokenizer, texts: list[str]) -> float:
    """Share of English word occurrences the tokenizer's model splits into more pieces than the base's."""
    from collections import Counter

    splitter = base.word_splitter().pre_tokenizer
    words = Counter(w for text in texts for w, _ in splitter.pre_tokenize_str(text))
    old, new = base.parts.model, tokenizer.backend_tokenizer.model
    worse = sum(n for w, n in words.items() if len(new.tokenize(w)) > len(old.tokenize(w)))
    return worse / sum(words.values())


def language_table(lang: str, vocab_size: int, keep: int, out_dir: Path) -> tuple[str, dict]:
    from langadapt.models import load_tokenizer
    from langadapt.vocab.base import BaseTokenizer
    from langadapt.vocab.build import build_vocabulary, save_vocabulary
    from langadapt.vocab.metrics import count_tokens

    train, dev = (SHARED_DATA / name for name in FILES[lang])
    base = BaseTokenizer.from_hf(load_tokenizer("builtin:smollm2-135m-instruct"))
    dev_target, dev_english = list(iter_field(dev, lang)), list(iter_field(dev, "en"))
    variants = {
        "Extended, target merges first (paper)": dict(method="extended", merges="prepend"),
        "Extended, target merges after": dict(method="extended", merges="append"),
        "Extended, continued merges (default)": dict(method="extended", merges="continue"),
        f"Optimized (keep {keep}, continued)": dict(method="optimized", keep=keep, merges="continue"),
        f"BPE replace ({vocab_size})": dict(method="bpe"),
        f"Unigram replace ({vocab_size})": dict(method="unigram"),
    }
    original = {
        "target": count_tokens(base.hf, dev_target).summary(),
        "en": count_tokens(base.hf, dev_english).summary(),
    }
    rows = [["original SmolLM2", len(base.hf), original["target"]["chars_per_token"], 1.0,
             original["target"]["tokens_per_word"], original["en"]["chars_per_token"], "—", "—", ""]]
    figures = {"original": original}
    for label, options in variants.items():
        started = time.perf_counter()
        english = iter_field(train, "en") if options["method"] == "optimized" else None
        vocabulary = build_vocabulary(base, iter_field(train, lang), vocab_size=vocab_size, english=english, **options)
        seconds = time.perf_counter() - started
        tokenizer = save_vocabulary(
            vocabulary, base, out_dir / f"{lang}-{options['method']}-{options.get('merges', '')}"
        )
        target = count_tokens(tokenizer, dev_target).summary()
        english_stats = count_tokens(tokenizer, dev_english).summary()
        ratio = target["chars_per_token"] / original["target"]["chars_per_token"]
        english_change = english_stats["chars_per_token"] / original["en"]["chars_per_token"] - 1
        resplit = resplit_share(base, tokenizer, dev_english)
        rows.append([label, len(tokenizer), target["chars_per_token"], round(ratio, 3), target["tokens_per_word"],
                     english_stats["chars_per_token"], f"{english_change:+.2%}", f"{resplit:.2%}", f"{seconds:.1f}"])
        figures[label] = {"vocab_size": len(tokenizer), "target": target, "en": english_stats, "ratio": ratio,
                          "english_change": english_change, "english_resplit_share": resplit, "seconds": seconds}
        print(f"  {lang} {label}: ×{ratio:.3f}, English {english_change:+.2%}, {seconds:.1f} s", flush=True)
    header = ["tokenizer", "vocab", f"{lang} chars/tok", "× original", f"{lang} tok/word", "en chars/tok",
              "en chars/tok vs original", "en words re-split", "build s"]
    return markdown_table(header, rows), figures


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def reset_peak_rss() -> float:
    """Restart the peak-RSS count (Linux: clear_refs 5), so a peak is the measured block's own; returns RSS now."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def training_cost(repeat: int) -> dict:
    """Run in a child process so peak memory is this job's own: a 32k BPE on the Basque train split."""
    from langadapt.models import load_tokenizer
    from langadapt.vocab.base import BaseTokenizer
    from langadapt.vocab.tokenizer_training import count_words, train_target

    train = SHARED_DATA / FILES["eu"][0]
    base = BaseTokenizer.from_hf(load_tokenizer("builtin:smollm2-135m-instruct"))

    def corpus() -> Iterator[str]:
        for _ in range(repeat):
            yield from iter_field(train, "eu")

    rss_before = reset_peak_rss()
    started = time.perf_counter()
    # min_frequency 1: with 29k distinct words the default 2 stops at ~27k tokens; 1 reaches 32k on x1 and x4 alike
    target = train_target(base, corpus(), kind="bpe", vocab_size=32000, min_frequency=1)
    train_seconds = time.perf_counter() - started
    rss_peak = _status_mb("VmHWM")
    started = time.perf_counter()
    distinct_words = len(count_words(base, corpus()))  # baseline: one streamed pass, pre-tokenize + count words
    read_seconds = time.perf_counter() - started
    return {"repeat": repeat, "documents": target.stats.documents, "characters": target.stats.characters,
            "distinct_words": distinct_words,
            "read_seconds": read_seconds, "train_seconds": train_seconds, "vocab_size": target.vocab_size,
            "rss_before_mb": rss_before, "rss_peak_mb": rss_peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--langs", nargs="+", default=["eu", "ru", "lt"], choices=list(FILES))
    parser.add_argument("--vocab-size", type=int, default=16000)
    parser.add_argument("--keep", type=int, default=24576, help="Optimized: original tokens kept (half of 49,152)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/langadapt-bench-vocab"))
    parser.add_argument("--training-cost", type=int, default=0, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.training_cost:
        print(json.dumps(training_cost(args.training_cost)))
        return

    all_figures = {}
    for lang in args.langs:
        print(f"== {lang}: SmolLM2 tokenizer vs a {args.vocab_size}-token {lang} vocabulary (train → dev)", flush=True)
        table, all_figures[lang] = language_table(lang, args.vocab_size, args.keep, args.out)
        print(table, flush=True)
    if "eu" in all_figures:
        extended = all_figures["eu"]["Extended, continued merges (default)"]
        passed = extended["ratio"] >= BAR["target_ratio"] and extended["english_change"] >= -BAR["english_loss"]
        print(f"bar (Extended ≥ {BAR['target_ratio']}× on Basque, English within {BAR['english_loss']:.1%}): "
              f"×{extended['ratio']:.3f}, English {extended['english_change']:+.2%} → {'PASS' if passed else 'FAIL'}")

    rows = []
    for repeat in (1, 4):
        child = subprocess.run([sys.executable, __file__, "--training-cost", str(repeat)], capture_output=True,
                               text=True, check=True)
        cost = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append([f"eu train ×{repeat} ({cost['documents']} docs, {cost['characters'] / 1e6:.1f}M chars, "
                     f"{cost['distinct_words']} distinct words)",
                     round(cost["read_seconds"], 2), round(cost["train_seconds"], 2),
                     round(cost["train_seconds"] / cost["read_seconds"], 2), cost["vocab_size"],
                     round(cost["rss_before_mb"]), round(cost["rss_peak_mb"]),
                     round(cost["rss_peak_mb"] - cost["rss_before_mb"])])
    print("== 32k BPE training on the Basque train split (HF tokenizers, streamed)")
    print(markdown_table(["corpus", "one pass s (baseline)", "train 32k s", "× pass", "vocab", "RSS before MiB",
                          "peak RSS in training MiB", "training adds MiB"], rows))


if __name__ == "__main__":
    main()
