"""Throughput of the translate stage's three paths, each against a baseline measured in the same run.

- seq2seq: a tiny random Marian model (d_model 32, built on the spot — no MT weights are reachable offline),
  so the figure is the *machinery's* cost (masking, splitting, cache writes, filters, language ID) against
  bare batched `model.generate` on the same segments: ratio = langadapt seg/s / bare seg/s.
- endpoint: a loopback OpenAI-compatible server answering each request after a fixed latency; baseline =
  the ideal concurrency / latency.
- causal_lm: the builtin SmolLM2-135M-Instruct on the bundled English Alpaca file; baseline = the same
  prompts through `generate_greedy` (no stop at the first newline), same batch size and max_new_tokens.

Every path also re-runs on its warm cache (no model call). Run under the CPU lock:

    flock /tmp/langadapt-cpu.lock .venv/bin/python bench/translate.py            # ~4 min on 2 cores
    flock /tmp/langadapt-cpu.lock .venv/bin/python bench/translate.py --no-causal
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, markdown_table, timed

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the tiny model builder and the loopback server of the tests

ALPACA = REPO / "examples" / "data" / "en" / "alpaca-mini.jsonl"


def libreoffice_alpaca(out: Path, rows: int) -> Path:
    """An alpaca file of real English help texts (instruction = one text, output = the next)."""
    from tests import tiny

    texts = [t for t in tiny.texts("en", limit=4 * rows) if 20 <= len(t) <= 400][: 2 * rows]
    with out.open("w", encoding="utf-8") as handle:
        for i in range(0, len(texts) - 1, 2):
            handle.write(json.dumps({"instruction": texts[i], "input": "", "output": texts[i + 1]}) + "\n")
    return out


def translate(backend: dict, data: Path, out: Path, cache: Path, **values: object) -> tuple[dict, float]:
    from langadapt.translate.config import TranslateConfig
    from langadapt.translate.core import run_translation

    out.mkdir(parents=True)
    settings = TranslateConfig.model_validate({"backend": backend, "datasets": {"d": str(data)}, **values})
    started = time.perf_counter()
    metrics = run_translation(settings, target="eu", out_dir=out, cache_path=cache, progress=False)
    return metrics, time.perf_counter() - started


def segments_of(data: Path, max_chars: int) -> list[str]:
    """The unique segments the stage sends for a file (what the baselines translate)."""
    from langadapt.data.instruct import read_records
    from langadapt.translate.masking import mask
    from langadapt.translate.segment import split_text

    texts = [v for _, r in read_records(data) for v in r.values() if isinstance(v, str) and v.strip()]
    pieces = (p for t in texts for p in split_text(mask(t).text, max_chars) if p.translate)
    return list(dict.fromkeys(p.text for p in pieces))


def bare_seq2seq(model_dir: Path, segments: list[str], batch_size: int, max_new_tokens: int) -> float:
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
    ordered = sorted(segments, key=len, reverse=True)
    started = time.perf_counter()
    for at in range(0, len(ordered), batch_size):
        inputs = tokenizer(ordered[at : at + batch_size], return_tensors="pt", padding=True, truncation=True,
                           max_length=model.config.max_position_embeddings)  # as the backend truncates
        with torch.inference_mode():
            tokenizer.batch_decode(model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens),
                                   skip_special_tokens=True)
    return len(segments) / (time.perf_counter() - started)


def bench_seq2seq(tmp: Path, rows: int) -> list[list[object]]:
    """Best of two alternating rounds each (the tiny model is fast enough for noise to matter)."""
    from tests.translate.conftest import make_tiny_marian

    model = make_tiny_marian(tmp / "marian")
    data = libreoffice_alpaca(tmp / "lo.jsonl", rows)
    backend = {"kind": "seq2seq", "model": str(model), "batch_size": 16, "max_new_tokens": 64}
    rates, bare = [], []
    for attempt in range(2):
        bare.append(bare_seq2seq(model, segments_of(data, 400), 16, 64))
        metrics, seconds = translate(backend, data, tmp / f"s{attempt}", tmp / f"s{attempt}.sqlite")
        rates.append(metrics["segments"]["translated"] / seconds)
    again, again_seconds = translate(backend, data, tmp / "again", tmp / "s0.sqlite")
    segments = metrics["segments"]["translated"]
    print("seq2seq drops:", metrics["dropped"], "| rerun calls:", again["backend"]["calls"])
    return [["seq2seq (tiny random Marian)", segments, round(max(rates), 2), round(max(bare), 2),
             round(max(rates) / max(bare), 3), round(again_seconds, 2), again["backend"]["calls"]]]


def bench_endpoint(tmp: Path, latency: float) -> list[list[object]]:
    from tests.openai_server import fake_server, last_user_text

    rows = []
    for concurrency in (1, 4, 16):
        cache = tmp / f"e{concurrency}.sqlite"
        with fake_server(reply=lambda body: "Itzulpena: " + last_user_text(body), delay_after=0,
                         delay_seconds=latency) as server:
            backend = {"kind": "endpoint", "url": server.url, "model": "mt", "concurrency": concurrency}
            metrics, seconds = translate(backend, ALPACA, tmp / f"e{concurrency}", cache,
                                         filters={"language": False})
        with fake_server() as idle:
            again, again_seconds = translate({**backend, "url": idle.url}, ALPACA, tmp / f"e{concurrency}b", cache)
        segments = metrics["segments"]["translated"]
        ideal = concurrency / latency
        rows.append([f"endpoint, {latency * 1000:.0f} ms/request, concurrency {concurrency}", segments,
                     round(segments / seconds, 2), round(ideal, 2), round(segments / seconds / ideal, 3),
                     round(again_seconds, 2), again["backend"]["requests"]])
    return rows


def bench_causal(tmp: Path) -> list[list[object]]:
    from langadapt.evaluate.generation import generate_greedy
    from langadapt.translate.backends import fill, make_backend
    from langadapt.translate.config import TranslateConfig

    backend = {"kind": "causal_lm", "model": "builtin:smollm2-135m-instruct", "max_new_tokens": 48, "batch_size": 8}
    metrics, seconds = translate(backend, ALPACA, tmp / "c1", tmp / "c.sqlite")
    again, again_seconds = translate(backend, ALPACA, tmp / "c2", tmp / "c.sqlite")
    causal = make_backend(TranslateConfig.model_validate({"backend": backend}).backend)
    prompts = [fill(causal.settings.prompt, text=s, source_language="English", target_language="Basque")
               for s in segments_of(ALPACA, 300)]
    started = time.perf_counter()
    run = generate_greedy(causal.model, causal.tokenizer, prompts, max_new_tokens=48, chat_template=True, batch_size=8)
    bare = len(run.outputs) / (time.perf_counter() - started)
    segments = metrics["segments"]["translated"]
    print("causal drops:", metrics["dropped"], "| kept", metrics["summary"]["rows out"], "of 50 | rerun calls:",
          again["backend"]["calls"])
    return [["causal_lm (SmolLM2-135M, builtin)", segments, round(segments / seconds, 2), round(bare, 2),
             round(segments / seconds / bare, 3), round(again_seconds, 2), again["backend"]["calls"]]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200, help="alpaca rows of real English text for seq2seq")
    parser.add_argument("--latency", type=float, default=0.05, help="endpoint seconds per request")
    parser.add_argument("--no-causal", action="store_true", help="skip the SmolLM2 path (~2-3 min)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        with timed("seq2seq"):
            rows += bench_seq2seq(tmp, args.rows)
        with timed("endpoint"):
            rows += bench_endpoint(tmp, args.latency)
        if not args.no_causal:
            with timed("causal_lm"):
                rows += bench_causal(tmp)
    print(markdown_table(["path", "segments", "seg/s", "baseline seg/s", "ratio", "rerun s (cached)",
                          "rerun model calls"], rows))


if __name__ == "__main__":
    main()
