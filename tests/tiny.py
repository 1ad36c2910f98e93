"""Tiny, offline stand-ins for real models and tokenizers, built on the spot from the repo's Basque text.

- `train_byte_level_bpe`: a GPT-2/Llama-3/SmolLM-style byte-level BPE (HF `tokenizers`).
- `train_sentencepiece_bpe`: a real SentencePiece BPE with byte fallback, converted the way transformers
  converts Llama-2/Mistral tokenizers (Metaspace pre-tokenizer, byte-fallback decoder).
- `make_tiny_model`: a random Llama- or Qwen2-style causal LM (hidden 64, 2 layers), tied or untied.
- `make_instruct_sibling`: the base fine-tuned to always answer one fixed chat reply, like an instruct model.

Everything is saved as a standard HF folder, exactly like the real artifacts the pipeline passes around.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
EU_TRAIN = REPO / "examples" / "data" / "eu" / "libreoffice-help.en-eu.train.jsonl.gz"
EU_DEV = REPO / "examples" / "data" / "eu" / "libreoffice-help.en-eu.dev.jsonl.gz"

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# SentencePiece-style (Llama-2) models mark turns with [INST] and end answers with </s>.
INST_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ ' ' + message['content'] + eos_token }}"
    "{% endif %}{% endfor %}"
)


def read_pairs(path: Path = EU_TRAIN, limit: int | None = None) -> list[dict[str, str]]:
    pairs = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            pairs.append(json.loads(line))
            if limit is not None and len(pairs) >= limit:
                break
    return pairs


def texts(language: str, path: Path = EU_TRAIN, limit: int | None = 2000) -> list[str]:
    return [pair[language] for pair in read_pairs(path, limit)]


def train_byte_level_bpe(out: Path, vocab_size: int = 600, corpus: list[str] | None = None) -> Path:
    """A byte-level BPE with ChatML special tokens (ids 0-2), saved as an HF tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = corpus if corpus is not None else texts("eu") + texts("en", limit=500)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|im_start|>", eos_token="<|im_end|>",
        unk_token="<|endoftext|>", pad_token="<|im_end|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(out)
    return Path(out)


def train_sentencepiece_bpe(out: Path, vocab_size: int = 600, corpus: list[str] | None = None) -> Path:
    """A real SentencePiece BPE (byte fallback), converted to an HF fast tokenizer like Llama-2's."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    corpus = corpus if corpus is not None else texts("eu") + texts("en", limit=500)
    out = Path(out)
    work = out.with_name(out.name + "-spm")
    work.mkdir(parents=True, exist_ok=True)
    (work / "corpus.txt").write_text("\n".join(corpus), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(work / "corpus.txt"), model_prefix=str(work / "sp"), vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        minloglevel=2,
    )
    shutil.copy(work / "sp.model", work / "tokenizer.model")
    tokenizer = LlamaTokenizer.from_pretrained(work)
    tokenizer.chat_template = INST_TEMPLATE
    tokenizer.save_pretrained(out)
    shutil.rmtree(work)
    return out


def make_tiny_model(
    tokenizer_dir: Path, out: Path, *, arch: str = "llama", tied: bool = False, seed: int = 0
) -> Path:
    """A random causal LM sized to the tokenizer, saved with it as an HF folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, Qwen2Config

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    common = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=tied,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    config = LlamaConfig(**common) if arch == "llama" else Qwen2Config(**common, use_sliding_window=False)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = common["pad_token_id"]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Path(out)


def chat_examples(tokenizer, reply: str, limit: int = 64) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) of one-turn chats answered with `reply`; the loss falls on the reply only."""
    examples = []
    for prompt in texts("eu", limit=limit):
        messages = [{"role": "user", "content": prompt[:80]}]
        prefix = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": reply}], tokenize=False)
        prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        labels = [-100] * len(prefix_ids) + full_ids[len(prefix_ids):]
        examples.append((full_ids, labels))
    return examples


def padded_batch(examples: list[tuple[list[int], list[int]]], pad: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in examples)
    return {
        "input_ids": torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in examples]),
        "labels": torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in examples]),
        "attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in examples]),
    }


def make_instruct_sibling(base_dir: Path, out: Path, reply: str, *, steps: int = 150, seed: int = 0) -> Path:
    """Fine-tune every weight of `base_dir` so that it answers any user turn with `reply` (loss on the reply)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    examples = chat_examples(tokenizer, reply)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        batch = padded_batch([examples[(step * 8 + i) % len(examples)] for i in range(8)], tokenizer.pad_token_id)
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Path(out)


def greedy_reply(model_dir: Path, prompt: str, max_new_tokens: int = 20) -> str:
    """The model's greedy chat answer to one user turn, decoded without special tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
