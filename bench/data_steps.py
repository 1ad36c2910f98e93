"""The step-level sections of bench/data.py: language ID per backend, tokenising for `pack` with 1 and 2
workers, token-exact mixing, and reading a large gzip file in pieces."""

from __future__ import annotations

import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import OOD_FILES, TRAIN_FILES, markdown_table, peak_rss_mb

ENTRY = Path(__file__).with_name("data.py")  # what the child processes run (`--tokenize`)


def cleaned(path: Path, field: str) -> list[str]:
    from langadapt.data.clean import Cleaner
    from langadapt.data.config import CleanConfig

    cleaner = Cleaner(CleanConfig())
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        texts = [cleaner.normalize(json.loads(line)[field]) for line in handle]
    return [t for t in texts if cleaner.rejection(t) is None]


def langid() -> str:
    from langadapt.data.langid import LanguageIdentifier

    codes = ["en", "eu", "lt", "ru"]
    backends = {"lingua": ("lingua", {}), "fasttext": ("fasttext", {}),
                "cascade, fastText first (lingua below 20 chars)": (
                    "cascade", {"first_pass": ("fasttext",), "lingua_below_chars": 20}),
                "cascade, fastText first": ("cascade", {"first_pass": ("fasttext",)}),
                "cascade (default: CLD2, fastText)": ("cascade", {})}
    files = [(f"{lang} train", path, lang) for lang, path in TRAIN_FILES.items()] + [
        (f"{lang} ood", p, lang) for lang, p in OOD_FILES.items()
    ]
    rows = []
    for file_label, path, lang in files:
        target, english = cleaned(path, lang), cleaned(path, "en")
        recall_lingua = None
        for label, (backend, options) in backends.items():
            identifier = LanguageIdentifier(codes, backend, **options).load()
            start = time.perf_counter()
            found = identifier.identify(target)
            seconds = time.perf_counter() - start
            foreign = identifier.identify(english)
            kept = sum(code == lang and confidence >= 0.5 for code, confidence in found)
            wrong = sum(code == lang and confidence >= 0.5 for code, confidence in foreign)
            recall = kept / len(target)
            recall_lingua = recall if backend == "lingua" else recall_lingua
            lingua_share = identifier.decided_by["lingua"] / max(1, sum(identifier.decided_by.values()))
            rows.append([file_label, label, len(target), round(recall, 4), round(recall / recall_lingua, 4),
                         round(1 - wrong / len(english), 4), round(kept / max(1, kept + wrong), 4),
                         round(seconds / len(target) * 1e6, 1), round(lingua_share, 3)])
            print(rows[-1], flush=True)
    header = ["file", "backend", "target docs", "recall", "× lingua recall", "English rejected",
              "precision (50:50 mix)", "µs/doc (1 core)", "decided by lingua"]
    return markdown_table(header, rows)


def pack_figures(target_tokens: int = 10_000_000) -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from langadapt.data.config import PackConfig
    from langadapt.data.corpus import write_texts
    from langadapt.data.pack import pack_corpus

    texts = []
    for lang, path in TRAIN_FILES.items():
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle]
        texts += [record[field] for field in (lang, "en") for record in records]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=64_000, special_tokens=["<|endoftext|>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
        print(f"64k BPE trained in {time.perf_counter() - start:.0f} s ({len(tokenizer)} tokens)", flush=True)
        per_pass = (
            sum(len(ids) + 1 for ids in tokenizer(texts[:20000], add_special_tokens=False)["input_ids"])
            * len(texts)
            / 20000
        )
        repeats = max(1, round(target_tokens / per_pass))
        path = Path(tmp) / "corpus.jsonl.gz"
        write_texts(path, (t for _ in range(repeats) for t in texts))
        tokenizer.save_pretrained(Path(tmp) / "tok")
        for workers in (1, 2):
            args = [sys.executable, str(ENTRY), "--tokenize", str(path), str(Path(tmp) / "tok"), str(workers),
                    str(Path(tmp) / f"c{workers}")]
            result = json.loads(
                subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            )
            rows.append([workers, result["tokens"], round(result["seconds"], 1),
                         round(result["tokens"] / result["seconds"]), round(result["parent_mib"]),
                         round(result["worker_mib"])])
            print(rows[-1], flush=True)
        rows[1].append(round(rows[0][2] / rows[1][2], 2))
        rows[0].append(1.0)
        start = time.perf_counter()
        metrics = pack_corpus({"all": path}, tokenizer, PackConfig(context_length=2048), Path(tmp) / "packed", seed=1,
                              cache_dir=Path(tmp) / "c2")
        print(
            f"packing {metrics['blocks']} blocks of 2048 from the cache: {time.perf_counter() - start:.1f} s",
            flush=True,
        )
    header = ["workers", "tokens", "s", "tokens/s", "parent peak MiB", "worker peak MiB", "× 1 worker"]
    return markdown_table(header, rows)


def tokenize_child(path: str, tokenizer_dir: str, workers: int, cache: str) -> dict:
    from transformers import AutoTokenizer

    from langadapt.data.tokens import tokenize_corpus

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    corpus = tokenize_corpus(Path(path), tokenizer, add_bos=False, cache_dir=Path(cache), workers=workers)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "tokens": int(corpus.lengths.sum()),
        "seconds": corpus.seconds,
        "parent_mib": peak_rss_mb(),
        "worker_mib": children,
    }


def mix_figures() -> str:
    import numpy as np
    from datasets import Dataset, interleave_datasets

    from langadapt.data.config import DataConfig, PackConfig
    from langadapt.data.ingest import ingest_corpus
    from langadapt.data.pack import pack_corpus
    from langadapt.data.tokens import tokenize_corpus
    from langadapt.models import load_tokenizer

    tokenizer = load_tokenizer("builtin:smollm2-135m-instruct")
    path = str(TRAIN_FILES["eu"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data"
        cfg = DataConfig(sources={"basque": {"path": path, "text_field": "eu", "language": "eu"},
                                  "english": {"path": path, "text_field": "en", "language": "en"}})
        ingest_corpus(cfg, seed=1, target_language="eu", tokenizer=None, out=out)
        corpus = {name: out / "corpus" / f"{name}.jsonl.gz" for name in ("basque", "english")}
        lengths = {n: tokenize_corpus(p, tokenizer, add_bos=False, cache_dir=Path(tmp) / "cache").lengths
                   for n, p in corpus.items()}
        marked = interleave_datasets(
            [Dataset.from_dict({"s": [i] * len(lengths[n]), "n": lengths[n].tolist()}) for i, n in enumerate(corpus)],
            probabilities=[0.8, 0.2], seed=1, stopping_strategy="first_exhausted",
        )
        source, picked = np.array(marked["s"]), np.array(marked["n"])
        doc_share = int(picked[source == 0].sum()) / int(picked.sum())
        for context in (1024, 2048):
            padded = float(np.minimum(np.concatenate(list(lengths.values())), context).mean() / context)
            for strategy in ("concat", "best_fit"):
                start = time.perf_counter()
                pack = PackConfig(context_length=context, mix={"basque": 0.8, "english": 0.2}, strategy=strategy)
                metrics = pack_corpus(corpus, tokenizer, pack, Path(tmp) / f"pack-{context}-{strategy}", seed=1,
                                      cache_dir=Path(tmp) / "cache")
                share = metrics["mix"]["achieved_token_share"]
                rows.append([context, strategy, metrics["blocks"], metrics["tokens"], share["basque"], share["english"],
                             round(doc_share, 4), metrics["packing_efficiency"], round(padded, 4),
                             metrics["mix"]["repeats"]["basque"], metrics["mix"]["repeats"]["english"],
                             round(time.perf_counter() - start, 1)])
                print(rows[-1], flush=True)
    header = ["context", "strategy", "blocks", "tokens", "Basque share", "English share",
              "Basque share if mixed by documents", "packing efficiency", "one padded doc per block",
              "Basque used ×", "English used ×", "pack s"]
    return markdown_table(header, rows)


def gz_pieces(copies: int = 10, pieces: int = 32) -> str:
    """One large .jsonl.gz (the Basque train file `copies` times) read in `pieces` byte ranges, in order, as
    one worker reads a source's shards: readers parked between pieces against a fresh reader per piece
    (which decompresses everything before its start), and the whole file as one piece."""
    from langadapt.data import sources
    from langadapt.data.config import SourceConfig
    from langadapt.data.shards import Part, split_part

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jsonl.gz"
        with gzip.open(TRAIN_FILES["eu"], "rb") as src:
            raw = src.read()
        with gzip.open(path, "wb", compresslevel=6) as dst:
            for _ in range(copies):
                dst.write(raw)
        source, whole = SourceConfig(path=str(path), text_field="eu"), Part(str(path), "jsonl")
        for label, count, fresh in (("whole file", 1, False), (f"{pieces} pieces, parked", pieces, False),
                                    (f"{pieces} pieces, fresh reader each", pieces, True)):
            start, documents = time.perf_counter(), 0
            for piece in split_part(whole, len(raw) * copies, len(raw) * copies / count):
                if fresh:
                    sources.close_parked_readers()
                documents += sum(1 for _ in sources.read_part(piece, source, "big", sources.ReadStats()))
            seconds = time.perf_counter() - start
            rows.append([label, round(len(raw) * copies / 1e6, 1), documents, round(seconds, 2)])
    base = rows[0][3]
    return markdown_table(["read", "MB (decompressed)", "documents", "s", "× whole file"],
                          [[*row, round(row[3] / base, 2)] for row in rows])
