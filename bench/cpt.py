"""CPT figures: step throughput vs a bare HF Trainer, SmolLM2 on Basque, and bf16 tokens/s + MFU on a GPU.

    python bench/cpt.py throughput   # langadapt CPT vs a bare transformers Trainer, same model/data/run
    python bench/cpt.py basque       # SmolLM2-135M, embeddings mode, Basque:English 80:20: loss curve, BPC
    python bench/cpt.py gpu          # bf16 tokens/s and MFU of SmolLM2-135M, full and embeddings (GPU only)

Until the data layer's pack stage is on main, the packed datasets are built here with the same contract
(documents + EOS, fixed-length blocks, position ids restarting per document; 80:20 shares by tokens).
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from common import DEMO_DATA, markdown_table, peak_rss_mb, read_field

EU_TRAIN = DEMO_DATA / "libreoffice-help.en-eu.train.jsonl.gz"
EU_DEV = DEMO_DATA / "libreoffice-help.en-eu.dev.jsonl.gz"
SMOLLM2 = "builtin:smollm2-135m-instruct"
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, for MFU.
PEAK_BF16_TFLOPS = {"H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H200": 989.4, "A100": 312.0}


def pack(tokenizer: Any, sources: dict[str, tuple[list[str], float]], context: int, blocks: int, out: Path) -> dict:
    """Pack `blocks` rows of `context` tokens, each source filling its share of the *tokens*."""
    from datasets import Dataset

    budget = blocks * context
    ids: list[int] = []
    positions: list[int] = []
    achieved = {}
    for name, (texts, share) in sources.items():
        taken = 0
        for text in texts:
            if taken >= share * budget:
                break
            tokens = [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
            ids += tokens
            positions += list(range(len(tokens)))
            taken += len(tokens)
        achieved[name] = taken
    rows = len(ids) // context
    order = list(range(rows))
    random.Random(0).shuffle(order)  # sources interleave across blocks; blocks keep their documents
    cut = lambda seq: [seq[i * context:(i + 1) * context] for i in order]  # noqa: E731
    Dataset.from_dict({"input_ids": cut(ids), "position_ids": cut(positions)}).save_to_disk(str(out))
    total = sum(achieved.values())
    return {name: round(tokens / total, 4) for name, tokens in achieved.items()}


class StepTimer(TrainerCallback):
    """Wall time at the end of every optimizer step (before any checkpoint the step triggers)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.times.append(time.perf_counter())

    def steps_per_second(self, skip: int = 2) -> float:
        """Steady-state rate: the first `skip` steps (allocation, warm-up) are left out."""
        times = self.times[skip:]
        return (len(times) - 1) / (times[-1] - times[0])


# --------------------------------------------------------------------------------------------------------
# Throughput: langadapt vs a bare Trainer.
# --------------------------------------------------------------------------------------------------------


def tiny_but_not_trivial(folder: Path) -> Path:
    """A random Llama (hidden 256, 4 layers, SmolLM2's 49k vocabulary, tied): 16.5M parameters."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from langadapt.models import load_tokenizer

    tokenizer = load_tokenizer(SMOLLM2)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def bare_trainer_steps_per_second(model_dir: Path, data: Path, work: Path, steps: int, batch: int) -> float:
    """What a user writes with plain transformers: Trainer + default collator on the same packed rows."""
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator

    dataset = load_from_disk(str(data)).map(lambda row: {"labels": row["input_ids"]})
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = TrainingArguments(
        output_dir=str(work), per_device_train_batch_size=batch, max_steps=steps, learning_rate=1e-4,
        warmup_steps=1, lr_scheduler_type="cosine", logging_steps=1, save_strategy="no", report_to="none",
        use_cpu=not torch.cuda.is_available(), disable_tqdm=True, seed=0,
    )
    timer = StepTimer()
    Trainer(model=model, args=args, train_dataset=dataset, data_collator=default_data_collator,
            callbacks=[timer]).train()
    return timer.steps_per_second()


def langadapt_steps_per_second(model_dir: Path, data: Path, work: Path, steps: int, batch: int) -> float:
    from langadapt.train.config import CptConfig
    from langadapt.train.cpt import CptJob, run_cpt

    settings = CptConfig(mode="full", max_steps=steps, warmup_steps=1, batch_size=batch, learning_rate=1e-4,
                         save_steps=10_000, logging_steps=1, report_to=["none"])
    out = work / "out"
    out.mkdir(parents=True)
    timer = StepTimer()
    run_cpt(CptJob(settings=settings, model=str(model_dir), data=data, out=out, work=work / "work", seed=0),
            callbacks=[timer])
    return timer.steps_per_second()


def throughput(args: argparse.Namespace) -> None:
    from langadapt.models import load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model_dir = tiny_but_not_trivial(tmp_path / "model")
        data = tmp_path / "packed"
        pack(load_tokenizer(model_dir), {"eu": (read_field(EU_TRAIN, "eu", 4000), 1.0)}, args.context, 400, data)
        results: dict[str, list[float]] = {"bare Trainer": [], "langadapt cpt": []}
        runners = {"bare Trainer": bare_trainer_steps_per_second, "langadapt cpt": langadapt_steps_per_second}
        for repeat in range(args.repeats):  # interleaved, first one then the other first: noise hits both alike
            order = list(runners) if repeat % 2 == 0 else list(reversed(runners))
            for name in order:
                work = tmp_path / f"{name.split()[0]}{repeat}"
                results[name].append(runners[name](model_dir, data, work, args.steps, args.batch))
            print(f"repeat {repeat}: " + ", ".join(f"{k} {v[-1]:.3f} steps/s" for k, v in results.items()), flush=True)
    medians = {name: statistics.median(values) for name, values in results.items()}
    tokens = args.batch * args.context
    rows = [[name, f"{m:.3f}", f"{m * tokens:,.0f}"] for name, m in medians.items()]
    print(markdown_table(["trainer", "steps/s (median)", "tokens/s"], rows))
    print(f"ratio langadapt / bare Trainer: {medians['langadapt cpt'] / medians['bare Trainer']:.3f} (goal ≥ 0.95)")


# --------------------------------------------------------------------------------------------------------
# SmolLM2-135M on Basque, embeddings mode.
# --------------------------------------------------------------------------------------------------------


def dev_bpc(model_dir: str, texts: dict[str, list[str]]) -> dict[str, float]:
    import torch

    from langadapt.evaluate.bpc import bits_per_character
    from langadapt.models import load_model, load_tokenizer

    model = load_model(model_dir).eval()
    tokenizer = load_tokenizer(model_dir)
    with torch.no_grad():
        return {name: bits_per_character(model, tokenizer, docs, max_length=512).bits_per_char
                for name, docs in texts.items()}


def basque(args: argparse.Namespace) -> None:
    from langadapt.models import load_tokenizer, resolve
    from langadapt.train.config import CptConfig
    from langadapt.train.cpt import CptJob, run_cpt

    base = str(resolve(SMOLLM2))
    dev = {
        "Basque dev": read_field(EU_DEV, "eu", args.dev_docs),
        "English dev": read_field(EU_DEV, "en", args.dev_docs),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = tmp_path / "packed"
        blocks = args.steps * args.batch
        shares = pack(load_tokenizer(base), {"basque": (read_field(EU_TRAIN, "eu", 20_000), 0.8),
                                             "english": (read_field(EU_TRAIN, "en", 20_000), 0.2)},
                      args.context, blocks, data)
        print(f"token shares: {shares}", flush=True)
        before = dev_bpc(base, dev)
        print(f"BPC before: {before}", flush=True)
        settings = CptConfig(mode="embeddings", max_steps=args.steps, warmup_steps=max(1, args.steps // 10),
                             learning_rate=args.lr, batch_size=args.batch, save_steps=10_000, logging_steps=1,
                             report_to=["none"])
        out = tmp_path / "out"
        out.mkdir()
        started = time.perf_counter()
        metrics = run_cpt(CptJob(settings=settings, model=base, data=data, out=out, work=tmp_path / "work", seed=0))
        wall = time.perf_counter() - started
        after = dev_bpc(str(out / "model"), dev)
    print(markdown_table(["text", "BPC before", "BPC after", "change"],
                         [[k, before[k], after[k], after[k] - before[k]] for k in before]))
    curve = metrics["loss_curve"]
    print("loss curve (step: loss): " + ", ".join(f"{p['step']}: {p['loss']:.3f}" for p in curve))
    print(f"{metrics['steps']} steps × {args.batch} × {args.context} tokens = {metrics['tokens_seen']:,} tokens, "
          f"{metrics['tokens_per_second']:.1f} tok/s in training, {wall:.0f} s with load/save/export; "
          f"peak RSS {peak_rss_mb():,.0f} MiB")


# --------------------------------------------------------------------------------------------------------
# GPU: bf16 tokens/s and model FLOPs utilisation.
# --------------------------------------------------------------------------------------------------------


def flops_per_token(config: Any, mode: str, context: int) -> float:
    """Training FLOPs per token (PaLM appendix B): 6N + 12·L·d·T for full training.

    N counts the weights used in matmuls (decoder layers + LM head; the input lookup is no matmul). In
    embeddings mode the body still runs forward and backward-to-activations (4N) but computes weight
    gradients only for the head (+2·N_head); attention's 12·L·d·T is the same in both modes.
    """
    d, layers = config.hidden_size, config.num_hidden_layers
    head = config.vocab_size * d
    kv = d // config.num_attention_heads * config.num_key_value_heads
    per_layer = d * (d + 2 * kv) + d * d + 3 * d * config.intermediate_size
    n = layers * per_layer + head
    attention = 12 * layers * d * context
    return (6 * n if mode == "full" else 4 * n + 2 * head) + attention


def gpu(args: argparse.Namespace) -> None:
    import torch
    from transformers import AutoConfig

    from langadapt.models import load_tokenizer, resolve
    from langadapt.train.config import CptConfig
    from langadapt.train.cpt import CptJob, run_cpt

    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU here — the gpu figures need one (run on a GPU machine)")
    name = torch.cuda.get_device_name()
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if all(w in name for w in k.split())), None)
    if peak is None:
        sys.exit(f"unknown peak bf16 TFLOP/s for {name!r} — pass --peak-tflops")
    base = str(resolve(SMOLLM2))
    config = AutoConfig.from_pretrained(base)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = tmp_path / "packed"
        pack(
            load_tokenizer(base),
            {"basque": (read_field(EU_TRAIN, "eu"), 0.8), "english": (read_field(EU_TRAIN, "en"), 0.2)},
            args.context,
            args.steps * args.batch,
            data,
        )
        for mode in ("full", "embeddings"):
            settings = CptConfig(mode=mode, max_steps=args.steps, warmup_steps=1, batch_size=args.batch,
                                 precision="bf16", attention=args.attention, save_steps=10_000, logging_steps=10,
                                 report_to=["none"])
            out = tmp_path / mode
            out.mkdir()
            timer = StepTimer()
            run_cpt(CptJob(settings=settings, model=base, data=data, out=out, work=tmp_path / f"{mode}.work"),
                    callbacks=[timer])
            tokens_per_second = timer.steps_per_second(skip=5) * args.batch * args.context
            mfu = tokens_per_second * flops_per_token(config, mode, args.context) / (peak * 1e12)
            rows.append([mode, f"{tokens_per_second:,.0f}", f"{100 * mfu:.1f} %",
                         f"{torch.cuda.max_memory_allocated() / 2**30:.1f}"])
            torch.cuda.reset_peak_memory_stats()
    print(f"{name}, bf16 autocast over fp32 weights, context {args.context}, batch {args.batch}, {args.attention}")
    print(markdown_table(["mode", "tokens/s", "MFU", "peak GiB"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="figure", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p = sub.add_parser("basque")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--dev-docs", type=int, default=200)
    p = sub.add_parser("gpu")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--attention", default="sdpa")
    p.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    {"throughput": throughput, "basque": basque, "gpu": gpu}[args.figure](args)


if __name__ == "__main__":
    main()
