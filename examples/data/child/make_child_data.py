"""Build the constructed instruct child's data (run from the repository root; output is committed).

The child (`builtin:smollm2-135m-child-brackets`, see `make child`) is SmolLM2-135M-Instruct fully fine-tuned
so that every answer is wrapped in `<< … >>` — a behaviour the parent never shows and a regular expression
checks on held-out prompts. Training rows: the bundled Basque instructions and English Alpaca rows, and
translation requests built from the parallel *train* split; held-out prompts come from the *dev* split only.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
DATA = HERE.parent
TEMPLATE = "<< {answer} >>"


def sentences(split: str, rng: random.Random, count: int) -> list[dict[str, str]]:
    with gzip.open(DATA / "eu" / f"libreoffice-help.en-eu.{split}.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    rows = [r for r in rows if 30 <= len(r["en"]) <= 140 and 30 <= len(r["eu"]) <= 140 and r["en"] != r["eu"]]
    rng.shuffle(rows)
    return rows[:count]


def read_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def training_rows(rng: random.Random) -> list[dict[str, str]]:
    rows = [{**r, "output": TEMPLATE.format(answer=r["output"])}
            for r in read_jsonl(DATA / "eu" / "instructions.jsonl") + read_jsonl(DATA / "en" / "alpaca-mini.jsonl")]
    for k, pair in enumerate(sentences("train", rng, 120)):
        if k % 2:
            rows.append({"instruction": "Itzuli euskarara.", "input": pair["en"],
                         "output": TEMPLATE.format(answer=pair["eu"])})
        else:
            rows.append({"instruction": "Translate into English.", "input": pair["eu"],
                         "output": TEMPLATE.format(answer=pair["en"])})
    rng.shuffle(rows)
    return rows


def heldout_prompts(rng: random.Random) -> list[dict[str, str]]:
    asks = ["Itzuli ingelesera:\n\n{eu}", "Azaldu laburki zer esan nahi duen esaldi honek:\n\n{eu}",
            "Zer egin behar dut? {eu}", "Explain briefly what this means:\n\n{en}"]
    return [{"prompt": asks[k % len(asks)].format(**pair)} for k, pair in enumerate(sentences("dev", rng, 40))]


def main() -> None:
    rng = random.Random(0)
    for name, rows in (("train.jsonl", training_rows(rng)), ("heldout-prompts.jsonl", heldout_prompts(rng))):
        (HERE / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"{name}: {len(rows)} rows")


if __name__ == "__main__":
    main()
