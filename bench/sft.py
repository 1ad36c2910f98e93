"""Copy-task calibration of the real SmolLM2-135M-Instruct on Basque: DaruCopy before and after.

LEP (arXiv 2412.21140 §5) calibrates with a copy task so that a model repeats target-language text verbatim.
This script trains the builtin SmolLM2 with LoRA on copy-task conversations drawn from the Basque training
corpus (LibreOffice help, all modules but Chart) and scores copying of held-out sentences and paragraphs of
the Chart module (the dev split) before and after, with the evaluation issue's DaruCopy metrics (sentence
`len`, paragraph `lcs`) plus exact match. The baseline is the same model in the same run.

    .venv/bin/python bench/sft.py                       # defaults below; ~10-20 min on 2 CPU cores
    .venv/bin/python bench/sft.py --steps 40 --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
from pathlib import Path

from common import DEMO_DATA, markdown_table, peak_rss_mb, timed


def held_out_texts(count_sentences: int, count_paragraphs: int, seed: int) -> tuple[list[str], list[str]]:
    """Sentences (30-120 characters) and short paragraphs (2+ sentences, <= 260 characters) of the dev split."""
    from langadapt.data.config import SourceConfig
    from langadapt.data.sources import iter_documents
    from langadapt.train.copy_task import split_sentences

    source = SourceConfig(path=str(DEMO_DATA / "libreoffice-help.en-eu.dev.jsonl.gz"), text_field="eu")
    documents = [d.strip() for d in iter_documents(source, "dev")]
    sentences = sorted({s for d in documents for s in split_sentences(d) if 30 <= len(s) <= 120})
    paragraphs = sorted({d for d in documents if len(d) <= 260 and len(split_sentences(d)) > 1})
    rng = random.Random(seed)
    return rng.sample(sentences, count_sentences), rng.sample(paragraphs, count_paragraphs)


def score(model_dir: Path, sentences: list[str], paragraphs: list[str]) -> dict[str, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from langadapt.evaluate.darucopy import copy_task

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    sentence = copy_task(model, tokenizer, sentences, kind="sentence", language="eu", max_new_tokens=96, batch_size=8)
    paragraph = copy_task(model, tokenizer, paragraphs, kind="paragraph", language="eu", max_new_tokens=192,
                          batch_size=4)
    return {
        "sentence len": sentence.score, "sentence exact": sentence.exact,
        "paragraph lcs": paragraph.score, "paragraph exact": paragraph.exact,
        "chars per generated token": sentence.chars_per_generated_token,
        "example": sentence.items[0]["prediction"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--examples", type=int, default=160, help="copy-task training conversations")
    parser.add_argument("--sentences", type=int, default=24)
    parser.add_argument("--paragraphs", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from langadapt.data.config import SourceConfig
    from langadapt.data.sources import iter_documents
    from langadapt.models import resolve
    from langadapt.train.config import SftConfig
    from langadapt.train.copy_task import copy_task_conversations
    from langadapt.train.sft import run_sft
    from langadapt.train.tuning import TuningJob

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("langadapt").setLevel(logging.INFO)  # training progress
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = resolve("builtin:smollm2-135m-instruct")
    sentences, paragraphs = held_out_texts(args.sentences, args.paragraphs, args.seed)
    train_source = SourceConfig(path=str(DEMO_DATA / "libreoffice-help.en-eu.train.jsonl.gz"), text_field="eu")
    held_out = set(sentences) | set(paragraphs)
    conversations, stats = copy_task_conversations(
        (t for t in iter_documents(train_source, "train") if t.strip() not in held_out), count=args.examples,
        sentence_share=0.75, language="eu", seed=args.seed, max_sentence_chars=120, max_paragraph_chars=260,
    )
    print(f"copy-task training set: {stats}; held out: {len(sentences)} sentences, {len(paragraphs)} paragraphs")

    times: dict[str, float] = {}
    with timed("score before", times):
        before = score(model_dir, sentences, paragraphs)
    settings = SftConfig(copy_task={"count": args.examples}, max_steps=args.steps, batch_size=args.batch_size,
                         learning_rate=args.learning_rate, max_length=192, logging_steps=5, warmup_steps=2,
                         lora={"r": 16, "alpha": 32, "dropout": 0.0})
    with tempfile.TemporaryDirectory() as tmp:
        job = TuningJob(model=str(model_dir), tokenizer=str(model_dir), original_tokenizer=str(model_dir),
                        out=Path(tmp) / "out", work=Path(tmp) / "work", seed=args.seed)
        with timed("calibration (LoRA SFT)", times):
            metrics = run_sft(job, settings, conversations)
        with timed("score after", times):
            after = score(Path(tmp) / "out" / "model", sentences, paragraphs)

    rows = [[name, before[name], after[name], after[name] / before[name] if before[name] else float("nan")]
            for name in ("sentence len", "sentence exact", "paragraph lcs", "paragraph exact",
                         "chars per generated token")]
    print(markdown_table(["metric", "before", "after", "after / before"], rows))
    tokens = metrics["data"]["tokens"] * args.steps * args.batch_size / metrics["data"]["examples"]
    print(
        f"training: {args.steps} steps × {args.batch_size}, ~{tokens:.0f} tokens, "
        f"{times['calibration (LoRA SFT)']:.0f} s, "
        f"loss {metrics['first_loss']:.3f} → {metrics['last_loss']:.3f}; peak RSS {peak_rss_mb():.0f} MiB"
    )
    print("example before:", json.dumps(before["example"], ensure_ascii=False)[:200])
    print("example after: ", json.dumps(after["example"], ensure_ascii=False)[:200])
    print("reference:     ", json.dumps(sentences[0], ensure_ascii=False)[:200])


if __name__ == "__main__":
    main()
