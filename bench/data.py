"""Data-layer figures on the real Basque, Russian and Lithuanian train files (../shared/data).

1. Throughput (MB/s of UTF-8 text) of the ingest steps — plain streaming read (the baseline), + cleaning,
   + language ID (lingua restricted to eu/ru/lt/en), + exact dedup, + MinHash LSH dedup — each measured in
   this run, with its ratio to the plain read; peak memory, and the memory growth when the input is
   doubled with new documents (each text again with its word order reversed: same words and language, no
   duplicate), each configuration in a fresh child process so peaks are its own.
2. An 80:20 Basque:English mixture by tokens (SmolLM2 tokenizer) packed at 1024 and 2048 tokens, concat and
   best-fit: achieved token shares and packing efficiency, against what peers do in the same run — an
   80:20 mixture by *documents* (`datasets.interleave_datasets(probabilities=[0.8, 0.2])`) and one padded
   document per block.

    .venv/bin/python bench/data.py [--skip-throughput] [--skip-mix]
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import SHARED_DATA, markdown_table, peak_rss_mb

TRAIN = {
    "eu": SHARED_DATA / "eu" / "libreoffice-help.en-eu.train.jsonl.gz",
    "ru": SHARED_DATA / "ru" / "libreoffice-help.en-ru.train.jsonl.gz",
    "lt": SHARED_DATA / "lt" / "ui-strings.en-lt.train.jsonl.gz",
}
STEPS = ("read", "clean", "langid", "exact", "minhash")


def data_config(step: str, copies: dict[str, Path] | None):
    """The target side of each train file as one source (plus its word-reversed copy when doubling);
    `step` says how much of the ingest runs."""
    from langadapt.data.config import DataConfig, DedupConfig

    sources = {lang: {"path": str(path), "text_field": lang, "language": lang} for lang, path in TRAIN.items()}
    for lang, path in (copies or {}).items():
        sources[f"{lang}-reversed"] = {"path": str(path), "text_field": lang, "language": lang}
    index = STEPS.index(step)
    return DataConfig(
        sources=sources,
        clean={} if index >= 1 else None,
        langid={} if index >= 2 else None,
        dedup=DedupConfig(exact=True, near=None, eval_overlap=False) if index == 3
        else (DedupConfig(eval_overlap=False) if index == 4 else None),
    )


def reversed_copies(folder: Path) -> dict[str, Path]:
    """Each train file with the word order of every text reversed: the same words, lengths and language,
    but new documents (no exact or n-gram overlap), so doubling the input also doubles what dedup keeps."""
    copies = {}
    for lang, path in TRAIN.items():
        copies[lang] = folder / f"{lang}-reversed.jsonl.gz"
        with gzip.open(path, "rt", encoding="utf-8") as src, gzip.open(copies[lang], "wt", encoding="utf-8") as dst:
            for line in src:
                record = json.loads(line)
                dst.write(json.dumps({lang: " ".join(reversed(record[lang].split(" ")))}, ensure_ascii=False) + "\n")
    return copies


def measure(step: str, copies_dir: str | None) -> dict:
    """In a child process: one timed pass of `step` (nothing written); the baseline just reads."""
    from langadapt.data.ingest import Ingestor
    from langadapt.data.sources import iter_documents

    copies = {lang: Path(copies_dir) / f"{lang}-reversed.jsonl.gz" for lang in TRAIN} if copies_dir else None
    cfg = data_config(step, copies)

    def read_all() -> int:
        return sum(len(t.encode("utf-8")) for name, s in cfg.sources.items() for t in iter_documents(s, name))

    size = read_all()  # untimed: the input size
    before = peak_rss_mb()
    start = time.perf_counter()
    kept = None
    if step == "read":
        read_all()
    else:
        ingest = Ingestor(cfg, seed=1, target_language="eu")
        kept = sum(ingest.source(name, source).kept.documents for name, source in cfg.sources.items())
    seconds = time.perf_counter() - start
    return {"mb": size / 1e6, "seconds": seconds, "kept": kept, "rss_before": before, "rss_peak": peak_rss_mb()}


def throughput() -> str:
    rows = []
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        reversed_copies(Path(tmp))
        for step in STEPS:
            for repeat, extra in ((1, []), (2, [tmp])):
                child = subprocess.run([sys.executable, __file__, "--measure", step, *extra], capture_output=True,
                                       text=True, check=True)
                results[step, repeat] = json.loads(child.stdout.strip().splitlines()[-1])
                print(step, repeat, results[step, repeat], flush=True)
    base = results["read", 1]["mb"] / results["read", 1]["seconds"]
    for step in STEPS:
        one, two = results[step, 1], results[step, 2]
        rate = one["mb"] / one["seconds"]
        rows.append(["plain read" if step == "read" else f"+ {step}",
                     round(one["mb"], 2), round(rate, 3), round(rate / base, 4), one["kept"] if one["kept"] else "",
                     round(one["rss_peak"]), round(one["rss_peak"] - one["rss_before"]),
                     round(two["rss_peak"] - two["rss_before"]), round(two["rss_peak"] - one["rss_peak"]),
                     round(two["kept"] or 0) or ""])
    header = ["steps (cumulative)", "input MB", "MB/s", "× plain read", "kept docs", "peak RSS MiB",
              "work RSS MiB (1×)", "work RSS MiB (2× input)", "growth MiB", "kept docs (2×)"]
    return markdown_table(header, rows)


def mix_figures() -> str:
    import numpy as np
    from datasets import Dataset, interleave_datasets

    from langadapt.data.config import DataConfig, PackConfig
    from langadapt.data.ingest import ingest_corpus
    from langadapt.data.pack import pack_corpus
    from langadapt.data.tokens import tokenize_corpus
    from langadapt.models import load_tokenizer

    tokenizer = load_tokenizer("builtin:smollm2-135m-instruct")
    path = str(TRAIN["eu"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        cfg = DataConfig(sources={"basque": {"path": path, "text_field": "eu", "language": "eu"},
                                  "english": {"path": path, "text_field": "en", "language": "en"}})
        ingest_corpus(cfg, seed=1, target_language="eu", tokenizer=None, out=out)
        corpus = {name: out / "corpus" / f"{name}.jsonl.gz" for name in ("basque", "english")}
        lengths = {n: tokenize_corpus(p, tokenizer, add_bos=False, cache_dir=Path(tmp) / "cache").lengths
                   for n, p in corpus.items()}
        # Peers' baseline: 80:20 by documents, interleaved until the first source runs out.
        marked = interleave_datasets(
            [Dataset.from_dict({"s": [i] * len(lengths[n]), "n": lengths[n].tolist()}) for i, n in enumerate(corpus)],
            probabilities=[0.8, 0.2], seed=1, stopping_strategy="first_exhausted",
        )
        source, picked = np.array(marked["s"]), np.array(marked["n"])
        n_basque = int(picked[source == 0].sum())
        doc_share = n_basque / int(picked.sum())
        print(f"by documents: Basque {doc_share:.4f} of tokens", flush=True)
        for context in (1024, 2048):
            padded = float(np.minimum(np.concatenate(list(lengths.values())), context).mean() / context)
            for strategy in ("concat", "best_fit"):
                start = time.perf_counter()
                pack = PackConfig(context_length=context, mix={"basque": 0.8, "english": 0.2}, strategy=strategy)
                metrics = pack_corpus(corpus, tokenizer, pack, Path(tmp) / f"pack-{context}-{strategy}", seed=1,
                                      cache_dir=Path(tmp) / "cache")
                seconds = time.perf_counter() - start
                share = metrics["mix"]["achieved_token_share"]
                rows.append([context, strategy, metrics["blocks"], metrics["tokens"], share["basque"],
                             share["english"], round(doc_share, 4), metrics["packing_efficiency"], round(padded, 4),
                             metrics["mix"]["repeats"]["basque"], metrics["mix"]["repeats"]["english"],
                             round(seconds, 1)])
                print(rows[-1], flush=True)
    header = ["context", "strategy", "blocks", "tokens", "Basque share", "English share",
              "Basque share if mixed by documents", "packing efficiency", "one padded doc per block",
              "Basque used ×", "English used ×", "pack s"]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", nargs="+", metavar="STEP [COPIES_DIR]", help=argparse.SUPPRESS)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-mix", action="store_true")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], args.measure[1] if len(args.measure) > 1 else None)))
        return
    if not args.skip_throughput:
        print(throughput(), flush=True)
    if not args.skip_mix:
        print(mix_figures(), flush=True)


if __name__ == "__main__":
    main()
