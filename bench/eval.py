"""Evaluation figures on the real SmolLM2-135M-Instruct, CPU, against lm-evaluation-harness in the same run.

1. BPC: our bits_per_character vs lm-eval's `loglikelihood_rolling` (HF backend) on the same Basque and
   English dev paragraphs — same total log-likelihood expected, throughput in chars/s.
2. MC: MMLU-style items with long shared contexts (a passage of Basque help paragraphs + a few-shot
   example, 4 English choices, see langadapt.evaluate.builders) scored by our MC scorer vs lm-eval's
   `loglikelihood` on the identical (context, continuation) strings; throughput ratio and the share of
   identical predictions (acc and acc_norm).

    .venv/bin/python bench/eval.py [--texts 200] [--mc-items 30] [--shots 1] [--lm-eval-batch 4]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import time

from common import DEMO_DATA, markdown_table, peak_rss_mb

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def read_pairs(path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def best_of(rounds: int, ours, theirs) -> tuple[tuple[object, float], tuple[object, float]]:
    """Run both sides `rounds` times, interleaved (the machine is shared and noisy); keep the best times."""
    best = [(None, float("inf")), (None, float("inf"))]
    for _ in range(rounds):
        for side, fn in enumerate((ours, theirs)):
            start = time.perf_counter()
            result = fn()
            seconds = time.perf_counter() - start
            print(f"  {'ours' if side == 0 else 'lm-eval'}: {seconds:.2f} s", flush=True)
            if seconds < best[side][1]:
                best[side] = (result, seconds)
    return best[0], best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=200, help="dev paragraphs per language for BPC")
    parser.add_argument("--mc-items", type=int, default=30)
    parser.add_argument("--shots", type=int, default=1, help="few-shot examples in every MC prompt")
    parser.add_argument("--lm-eval-batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the best time counts")
    parser.add_argument("--parts", default="bpc,mc", help="which figures: bpc, mc or both")
    args = parser.parse_args()

    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from langadapt.evaluate.bpc import bits_per_character
    from langadapt.models import load_model, load_tokenizer, resolve

    torch.set_num_threads(2)
    folder = resolve("builtin:smollm2-135m-instruct")
    model, tokenizer = load_model(folder).eval(), load_tokenizer(folder)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, device="cpu", batch_size=args.lm_eval_batch)
    dev = read_pairs(DEMO_DATA / "libreoffice-help.en-eu.dev.jsonl.gz")
    print(f"torch threads {torch.get_num_threads()}, lm-eval batch {args.lm_eval_batch}", flush=True)

    # ---- 1. bits per character --------------------------------------------------------------------------
    rows = []
    for language in ("eu", "en") if "bpc" in args.parts else ():
        texts = [pair[language] for pair in dev[: args.texts]]
        requests = [Instance("loglikelihood_rolling", {}, (text,), k) for k, text in enumerate(texts)]
        (ours, ours_s), (theirs, theirs_s) = best_of(
            args.rounds, lambda t=texts: bits_per_character(model, tokenizer, t),
            lambda r=requests: lm.loglikelihood_rolling(r, disable_tqdm=True))
        theirs_bpc = -sum(theirs) / math.log(2) / ours.characters
        rows.append([language, len(texts), ours.tokens, round(ours.bits_per_char, 5), round(theirs_bpc, 5),
                     round(ours.characters / ours_s), round(ours.characters / theirs_s), round(theirs_s / ours_s, 2)])
        print(rows[-1], flush=True)
    if rows:
        print(markdown_table(["lang", "texts", "tokens", "bpc (ours)", "bpc (lm-eval)", "chars/s ours",
                              "chars/s lm-eval", "speed-up"], rows))
    if "mc" in args.parts:
        bench_mc(args, model, tokenizer, lm, dev)
    print(f"peak RSS {peak_rss_mb():.0f} MiB")


def bench_mc(args: argparse.Namespace, model, tokenizer, lm, dev: list[dict[str, str]]) -> None:
    from lm_eval.api.instance import Instance

    from langadapt.evaluate.builders import translation_mc_items
    from langadapt.evaluate.mc import McFormat, encode_request, evaluate_mc

    train = read_pairs(DEMO_DATA / "libreoffice-help.en-eu.train.jsonl.gz")
    items = translation_mc_items(train, "eu", n=args.mc_items, seed=7)
    shots = translation_mc_items(dev, "eu", n=args.shots, seed=3, passage_paragraphs=3) if args.shots else []
    fmt = McFormat(language="eu", answer_format="text")
    prompt_tokens = [len(encode_request(tokenizer, fmt.prompt(i, shots), [" x"])[0]) for i in items]
    print(f"MC: {len(items)} items x 4 choices, {args.shots}-shot, prompt tokens mean "
          f"{sum(prompt_tokens) / len(items):.0f} (min {min(prompt_tokens)}, max {max(prompt_tokens)})", flush=True)

    requests = []
    for k, item in enumerate(items):
        prompt = fmt.prompt(item, shots)
        requests += [Instance("loglikelihood", {}, (prompt, " " + a), k * 4 + j)
                     for j, a in enumerate(fmt.answers(item))]
    (ours, ours_s), (answers, theirs_s) = best_of(
        args.rounds,
        lambda: evaluate_mc(model, tokenizer, items, fmt=fmt, shots=shots, scorings=("loglik", "loglik_norm")),
        lambda: lm.loglikelihood(requests, disable_tqdm=True),
    )
    scores = [ll for ll, _ in answers]
    print(f"ours: {ours_s:.1f} s, accuracy {ours.accuracy}", flush=True)

    same = total = 0
    max_diff = 0.0
    theirs_correct = {"loglik": 0, "loglik_norm": 0}
    for k, (item, record) in enumerate(zip(items, ours.items, strict=True)):
        lls = scores[k * 4 : k * 4 + 4]
        max_diff = max(max_diff, *(abs(a - b) for a, b in zip(lls, record["loglik"]["scores"], strict=True)))
        norm = [ll / len(c) for ll, c in zip(lls, item.choices, strict=True)]
        for scoring, values in (("loglik", lls), ("loglik_norm", norm)):
            prediction = max(range(4), key=lambda j, v=values: (v[j], -j))
            theirs_correct[scoring] += prediction == item.answer
            same += prediction == record[scoring]["prediction"]
            total += 1
    print(f"lm-eval: {theirs_s:.1f} s, accuracy { {s: c / len(items) for s, c in theirs_correct.items()} }")
    print(markdown_table(
        ["items", "prompt tokens (mean)", "ours s", "lm-eval s", "speed-up", "identical predictions",
         "max |Δ loglik|"],
        [[len(items), round(sum(prompt_tokens) / len(items)), round(ours_s, 1), round(theirs_s, 1),
          round(theirs_s / ours_s, 2), f"{same}/{total} ({100 * same / total:.1f} %)", f"{max_diff:.1e}"]]))


if __name__ == "__main__":
    main()
