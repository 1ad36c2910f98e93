"""Informed initialisation of new embeddings (issue 14): step-0 and after-CPT bits/char per init method.

For each language × vocabulary (Basque Extended, Russian Extended and Optimized; 16k target BPE, Optimized
keeps 32,000 old tokens), on the real SmolLM2-135M-Instruct (tied): the original model, then each init method
(`mean` is the baseline; `+cal` = with `embed.calibration`), each in its own child process so that its wall
time and peak RSS are its own. Figures: bits/char with a 95 % bootstrap interval over documents on the
in-domain dev text (help, Chart module), the out-of-domain UI strings and the English dev side, at step 0 and
after `--cpt-steps` embeddings-only CPT steps (AdamW 5e-4, 3 warm-up steps, 2 × 256-token blocks, 80:20
target:English; the same blocks for every method); for Basque also the copy task (chat template, English
instruction, 40 held-out dev sentences of 30-90 characters): exact-match rate, character similarity
(difflib ratio) and DaruCopy `len`. The methods train on the first `--documents` train documents per side.

    OMP_NUM_THREADS=2 flock /tmp/langadapt-cpu.lock .venv/bin/python bench/init.py [--runs eu-extended ...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import resource
import time
from pathlib import Path

from common import SHARED_DATA, markdown_table, read_field

MODEL = "builtin:smollm2-135m-instruct"
RUNS = {"eu-extended": ("eu", "extended"), "ru-extended": ("ru", "extended"), "ru-optimized": ("ru", "optimized")}
CACHE = Path("/tmp/langadapt-bench-init")


def files(lang: str) -> dict[str, Path]:
    return {"train": SHARED_DATA / lang / f"libreoffice-help.en-{lang}.train.jsonl.gz",
            "dev": SHARED_DATA / lang / f"libreoffice-help.en-{lang}.dev.jsonl.gz",
            "ood": SHARED_DATA / lang / f"ui-strings.en-{lang}.ood.jsonl.gz"}


def tokenizer_folder(lang: str, vocab: str, documents: int) -> Path:
    from langadapt.vocab.base import BaseTokenizer
    from langadapt.vocab.build import build_vocabulary, save_vocabulary

    out = CACHE / f"tok-{lang}-{vocab}-{documents}"
    if not (out / "token_map.json").exists():
        train = files(lang)["train"]
        base = BaseTokenizer.load(MODEL)
        extra = {"keep": 32000, "english": iter(read_field(train, "en", documents))} if vocab == "optimized" else {}
        built = build_vocabulary(
            base, iter(read_field(train, lang, documents)), method=vocab, vocab_size=16000, **extra
        )
        save_vocabulary(built, base, out)
    return out


def eval_sets(lang: str, args: argparse.Namespace) -> dict[str, list[str]]:
    f = files(lang)
    return {"dev": read_field(f["dev"], lang, args.dev_docs), "ood": read_field(f["ood"], lang, args.ood_docs),
            "en": read_field(f["dev"], "en", args.dev_docs)}


def copy_sentences(lang: str, count: int) -> list[str]:
    from langadapt.train.copy_task import split_sentences

    out: list[str] = []
    for document in read_field(files(lang)["dev"], lang)[200:]:  # not the first dev docs the bits/char use
        for sentence in split_sentences(document):
            if 30 <= len(sentence) <= 90 and sentence not in out:
                out.append(sentence)
        if len(out) >= count:
            break
    return out[:count]


def bpc_with_interval(model, tokenizer, texts: list[str], seed: int = 0) -> list[float]:
    """bits/char over all documents and a 95 % bootstrap interval (documents resampled, 1,000 times)."""
    import numpy as np

    from langadapt.evaluate.bpc import bits_per_character

    per_doc = [bits_per_character(model, tokenizer, [t], max_length=512) for t in texts if t]
    bits = np.array([r.bits for r in per_doc])
    chars = np.array([r.characters for r in per_doc])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(bits), (1000, len(bits)))
    boot = bits[draws].sum(1) / chars[draws].sum(1)
    return [round(float(bits.sum() / chars.sum()), 4), round(float(np.percentile(boot, 2.5)), 4),
            round(float(np.percentile(boot, 97.5)), 4)]


def copy_similarity(items: list[dict]) -> float:
    """Mean character similarity (difflib ratio) of copy outputs to their references."""
    import difflib
    from statistics import fmean

    return fmean(difflib.SequenceMatcher(None, i["prediction"], i["reference"], autojunk=False).ratio() for i in items)


def score(model, tokenizer, sets: dict[str, list[str]], copies: list[str]) -> dict[str, object]:
    from langadapt.evaluate.darucopy import copy_task

    out: dict[str, object] = {name: bpc_with_interval(model, tokenizer, texts) for name, texts in sets.items()}
    if copies:
        result = copy_task(model, tokenizer, copies, kind="sentence", language="en", max_new_tokens=48)
        out["copy"] = {
            "exact": round(result.exact, 3),
            "similarity": round(copy_similarity(result.items), 3),
            "len": round(result.score, 3),
            "example": result.items[1]["prediction"][:80],
        }
    return out


def cpt_blocks(tokenizer, lang: str, documents: int, steps: int, batch: int = 2, length: int = 256) -> list[list[int]]:
    """`steps × batch` packed blocks, 80:20 target:English by blocks, documents separated by EOS."""
    train = files(lang)["train"]
    rng = random.Random(0)
    blocks = {}
    for side in (lang, "en"):
        texts = read_field(train, side, documents)
        rng.shuffle(texts)
        stream: list[int] = []
        for start in range(0, len(texts), 256):  # tokenize only as much as the blocks need
            for ids in tokenizer(texts[start:start + 256], add_special_tokens=False)["input_ids"]:
                stream += [*ids, tokenizer.eos_token_id]
            if len(stream) > (steps * batch + 1) * length:
                break
        blocks[side] = [stream[i:i + length] for i in range(0, len(stream) - length, length)]
    n_en = round(0.2 * steps * batch)
    mixed = blocks[lang][: steps * batch - n_en] + blocks["en"][:n_en]
    rng.shuffle(mixed)
    return mixed


def train_embeddings(model, blocks: list[list[int]], steps: int, batch: int = 2) -> float:
    """Embeddings-only CPT (the tied matrix; + the head when untied), the demo's recipe."""
    import torch

    for p in model.parameters():
        p.requires_grad_(False)
    params = [model.get_input_embeddings().weight]
    if model.get_output_embeddings().weight is not params[0]:
        params.append(model.get_output_embeddings().weight)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.95), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 3) * max(0.0, 1 - s / steps))
    model.train()
    started = time.perf_counter()
    for step in range(steps):
        ids = torch.tensor(blocks[step * batch:(step + 1) * batch])
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    for p in params:
        p.requires_grad_(False)
    return time.perf_counter() - started


def run_method(job: dict) -> dict:
    """One child process: load, init with `job['method']`, score, CPT, score again."""
    import torch

    from langadapt.embeddings.config import CalibrationConfig, EmbedConfig
    from langadapt.embeddings.registry import Corpus
    from langadapt.embeddings.surgery import resize_to_tokenizer
    from langadapt.models import load_model, load_tokenizer
    from langadapt.vocab.token_map import TokenMap

    torch.set_num_threads(job["threads"])
    lang, method = job["lang"], job["method"]
    old = load_tokenizer(MODEL)
    model = load_model(MODEL, dtype=torch.float32)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sets, copies = job["sets"], job["copies"]
    if method == "original":
        return {"method": method, "step0": score(model, old, sets, copies)}
    train = files(lang)["train"]
    target, english = read_field(train, lang, job["documents"]), read_field(train, "en", job["documents"])
    corpus = Corpus(lambda: iter(target), lambda: iter(english))
    name, _, calibrate = method.partition("+")
    calibration = CalibrationConfig(**job["calibration"]) if calibrate else None
    config = EmbedConfig(method=name, options=job["options"], calibration=calibration)
    new = load_tokenizer(job["tokenizer"])
    started = time.perf_counter()
    metrics = resize_to_tokenizer(model, old, new, TokenMap.load(job["tokenizer"]), config, seed=0, corpus=corpus)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"method": method, "init_s": round(seconds, 1), "rss_loaded_mb": round(rss_loaded),
           "peak_rss_mb": round(peak), "fallback_rows": metrics["fallback_rows"], "new_rows": metrics["new_rows"],
           "init": metrics["init"], "calibration": metrics.get("calibration"),
           "step0": score(model, new, sets, copies)}
    if job["cpt_steps"]:
        blocks = cpt_blocks(new, lang, job["documents"], job["cpt_steps"])
        out["cpt_s"] = round(train_embeddings(model, blocks, job["cpt_steps"]), 1)
        out["cpt"] = score(model, new, sets, copies)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--methods", default="original,mean,convex,distill,distill+cal")
    parser.add_argument("--options", default="{}", help="per-method options, JSON")
    parser.add_argument("--calibration", default="{}", help="embed.calibration for the +cal methods, JSON")
    parser.add_argument("--documents", type=int, default=12000, help="train documents per side")
    parser.add_argument("--dev-docs", type=int, default=64)
    parser.add_argument("--ood-docs", type=int, default=200)
    parser.add_argument("--copy", type=int, default=40, help="copy-task sentences (Basque only; 0 = none)")
    parser.add_argument("--cpt-steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="write all results as JSON")
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    results = []
    context = mp.get_context("spawn")
    for run in args.runs:
        lang, vocab = RUNS[run]
        folder = tokenizer_folder(lang, vocab, args.documents)
        sets = eval_sets(lang, args)
        copies = copy_sentences(lang, args.copy) if lang == "eu" else []
        for method in args.methods.split(","):
            job = {"lang": lang, "method": method, "tokenizer": str(folder), "sets": sets, "copies": copies,
                   "documents": args.documents, "cpt_steps": args.cpt_steps, "threads": args.threads,
                   "options": json.loads(args.options), "calibration": json.loads(args.calibration)}
            with context.Pool(1) as pool:
                result = pool.apply(run_method, (job,))
            result["run"] = run
            results.append(result)
            print(json.dumps(result, ensure_ascii=False), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    report(results)


def report(results: list[dict]) -> None:
    def cell(value) -> str:
        return f"{value[0]:.3f} [{value[1]:.3f}, {value[2]:.3f}]" if value else ""

    rows = []
    for r in results:
        for phase in ("step0", "cpt"):
            if phase not in r:
                continue
            s = r[phase]
            copy = s.get("copy", {})
            rows.append([r["run"], r["method"], "0" if phase == "step0" else "CPT",
                         cell(s["dev"]), cell(s["ood"]), cell(s["en"]),
                         copy.get("exact", ""), copy.get("similarity", ""), copy.get("len", ""),
                         r.get("init_s", "") if phase == "step0" else "",
                         r.get("peak_rss_mb", "") if phase == "step0" else "",
                         r.get("fallback_rows", "") if phase == "step0" else ""])
    print(markdown_table(["run", "method", "step", "dev bits/char", "OOD bits/char", "English bits/char", "copy exact",
                          "copy similarity", "copy len", "init s", "peak RSS MiB", "fallback rows"], rows))


if __name__ == "__main__":
    main()
