"""Why does the adapted model lose cloze accuracy by `loglik_norm` but not by `loglik` or `mutual_info`?

For every model the run's eval stage evaluated (`eval/<model>.json`), on the run's cloze task: accuracy by
each scoring with its 95 % interval and the paired change against the original, plus two diagnostics:

- **prior only**: the choice with the highest per-character log-likelihood *without the prompt* (after BOS,
  else EOS) — how much a scoring can gain or lose from the model's taste for the answer strings alone;
- **context gain**: the mean per-character log-likelihood the prompt adds, to the true continuation and to the
  distractors (nats/char) — how much the model reads the prompt.

`loglik_norm` = prompt-conditional per-character log-likelihood = (prior per char) + (context gain per char),
so a model whose prior prefers distractors can lose `loglik_norm` while reading the prompt as well or better;
`mutual_info` (lm-eval's `acc_mutual_info`) scores the context gain alone.

    python bench/cloze_scorings.py                    # after `make demo`; ~1.5 min on 2 cores
    python bench/cloze_scorings.py --task cloze --models base cpt dpo
"""

from __future__ import annotations

import argparse
from pathlib import Path
from statistics import fmean

import common
from common import markdown_table
from langadapt.config import load_config
from langadapt.evaluate.intervals import ItemScores, interval, paired_change
from langadapt.evaluate.mc import SCORINGS, McFormat, evaluate_mc, read_mc_file
from langadapt.models import load_model, load_tokenizer
from langadapt.runstore import read_json


def measure(ref: str, items: list, fmt: McFormat) -> dict[str, list[float]]:
    """Per item: correct (0/1) per scoring and for the prior alone; the context gain of gold and distractors."""
    model, tokenizer = load_model(ref).eval(), load_tokenizer(ref)
    result = evaluate_mc(model, tokenizer, items, fmt=fmt)  # all SCORINGS, so mutual_info's priors are scored
    out: dict[str, list[float]] = {s: [float(r[s]["correct"]) for r in result.items] for s in SCORINGS}
    out["prior only"], out["gain gold"], out["gain distractors"] = [], [], []
    for item, record in zip(items, result.items, strict=True):
        lengths = [len(" " + c) for c in item.choices]  # what encode_unconditional counts
        gain = record["mutual_info"]["scores"]  # loglik with the prompt minus without it
        prior = [c - g for c, g in zip(record["loglik"]["scores"], gain, strict=True)]
        per_char = [p / n for p, n in zip(prior, lengths, strict=True)]
        out["prior only"].append(float(max(range(len(per_char)), key=per_char.__getitem__) == item.answer))
        gains = [g / n for g, n in zip(gain, lengths, strict=True)]
        out["gain gold"].append(gains[item.answer])
        out["gain distractors"].append(fmean(g for k, g in enumerate(gains) if k != item.answer))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=common.REPO / "examples" / "demo-eu.yaml")
    parser.add_argument("--task", default="cloze", help="the eval.mc task")
    parser.add_argument("--models", nargs="+", help="labels of eval.models (default: all evaluated)")
    args = parser.parse_args()

    cfg = load_config(args.config)
    run = Path(cfg.output_dir)
    task = cfg.section("eval").mc[args.task]
    items = read_mc_file(task.path, args.task)[: task.max_items]
    fmt = McFormat(language=task.language or cfg.target_language, answer_format=task.answer_format)
    labels = args.models or [p.stem for p in sorted(run.glob("eval/*.json")) if p.stem != "manifest"]
    labels = sorted(labels, key=lambda m: (m != "base", cfg.section("eval").models.index(m)))
    refs = {label: read_json(run / "eval" / f"{label}.json")["ref"] for label in labels}
    refs["base"] = cfg.models.base  # the report holds the resolved folder; the builtin name resolves offline
    figures = {label: measure(ref, items, fmt) for label, ref in refs.items()}

    rates = [*SCORINGS, "prior only"]
    rows = []
    for label, values in figures.items():
        cells: list[object] = [label]
        for rate in rates:
            scores = ItemScores.successes(values[rate])
            low, high = interval(scores) or (float("nan"), float("nan"))
            cell = f"{scores.estimate:.2f} [{low:.2f}, {high:.2f}]"
            if label != "base":
                change = paired_change(ItemScores.successes(figures["base"][rate]), scores)
                cell += f" (Δ {scores.estimate - fmean(figures['base'][rate]):+.2f}"
                cell += f" [{change[0]:+.2f}, {change[1]:+.2f}])" if change else ")"
            cells.append(cell)
        gold, other = fmean(values["gain gold"]), fmean(values["gain distractors"])
        cells += [round(gold, 3), round(other, 3), round(gold - other, 3)]
        rows.append(cells)
    print(f"{args.task}: {len(items)} items, {len(items[0].choices)} choices")
    print(markdown_table(["model", *rates, "context gain gold (nats/char)", "distractors", "margin"], rows))


if __name__ == "__main__":
    main()
