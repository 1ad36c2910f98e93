"""The model-folder invariants every training stage ends with (`langadapt check MODEL`).

A vocabulary-adapted model breaks in ways that only show up later, in someone else's code: a LoRA adapter
that will not load because the base was resized, `modules_to_save` weights vLLM refuses, a tokenizer longer
than the embedding matrix, a chat model that never stops because its end-of-turn token is not an EOS id of
the generation config (peer toolkits: LLaMA-Factory #2888, #7997, unsloth #3365, axolotl #227). This module
checks, from the files alone (safetensors headers, configs, tokenizer), that a folder is a complete,
standalone model whose parts agree:

- weights: safetensors only, no adapter files or adapter/`modules_to_save` keys left in, finite embeddings;
- shapes: `config.vocab_size` = input-embedding rows = LM-head rows (the head may be absent when tied);
- tokenizer: no id at or beyond the vocabulary size (padding rows beyond it are fine); the tokenizer's EOS
  is an EOS id of `generation_config`;
- chat template (when present): renders a user/assistant exchange with tokens inside the vocabulary, and
  the token that ends the assistant turn is a single special token that `generation_config` stops on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langadapt.errors import LangadaptError

PROBE_QUESTION = "langadapt probe question"
PROBE_ANSWER = "langadapt probe answer"
# Weight names that only an unmerged PEFT model has.
_ADAPTER_KEY_PARTS = ("lora_", ".modules_to_save.", "original_module", "base_model.model.")


@dataclass
class CheckReport:
    path: Path
    facts: dict[str, Any] = field(default_factory=dict)  # sizes and ids found, recorded in stage manifests
    errors: list[str] = field(default_factory=list)  # one line each: what is wrong and how to fix it

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, message: str) -> None:
        self.errors.append(message)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "facts": self.facts, "errors": self.errors}


def assert_model_folder(path: str | Path, **options: Any) -> CheckReport:
    """`check_model_folder`, raising one LangadaptError line when any invariant fails."""
    report = check_model_folder(path, **options)
    if not report.ok:
        more = f" (+{len(report.errors) - 1} more: run langadapt check {path})" if len(report.errors) > 1 else ""
        raise LangadaptError(f"model folder '{path}' is inconsistent: {report.errors[0]}{more}")
    return report


def check_model_folder(
    path: str | Path, *, trust_remote_code: bool = False, require_chat_template: bool = False
) -> CheckReport:
    """Check every invariant of the module docstring; never raises for a problem of the folder."""
    report = CheckReport(Path(path))
    folder = Path(path)
    if not (folder / "config.json").is_file():
        report.error(f"no config.json in '{folder}' — point at a Hugging Face model folder")
        return report
    _check_files(folder, report)
    config = _load_config(folder, trust_remote_code, report)
    if config is None:
        return report
    text_config = config.get_text_config()
    vocab_size = int(text_config.vocab_size)
    tied = bool(getattr(text_config, "tie_word_embeddings", False))
    report.facts.update(vocab_size=vocab_size, tie_word_embeddings=tied)
    shapes = _weight_shapes(folder, report)
    if shapes:
        _check_embeddings(folder, config, shapes, vocab_size, tied, report)
    tokenizer = _load_tokenizer(folder, trust_remote_code, report)
    eos_ids = _generation_eos_ids(folder, config, report)
    report.facts["generation_eos_token_id"] = sorted(eos_ids)
    for token_id in eos_ids:
        if not 0 <= token_id < vocab_size:
            report.error(f"generation_config eos id {token_id} is outside the vocabulary (0..{vocab_size - 1})")
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        for token_id in token_id_list(getattr(text_config, key, None)):
            if not 0 <= token_id < vocab_size:
                report.error(f"config.{key} {token_id} is outside the vocabulary (0..{vocab_size - 1})")
    if tokenizer is not None:
        _check_tokenizer(tokenizer, vocab_size, eos_ids, report)
        _check_chat_template(tokenizer, vocab_size, eos_ids, require_chat_template, report)
    return report


def _check_files(folder: Path, report: CheckReport) -> None:
    if (folder / "adapter_config.json").exists():
        report.error("the folder holds a PEFT adapter (adapter_config.json) — merge it into the model "
                     "(merge_and_unload) and save the full model; keep adapters in a folder of their own")
    pickles = sorted(p.name for pattern in ("*.bin", "*.pt", "*.pth", "*.pkl") for p in folder.glob(pattern))
    if pickles:
        report.error(f"pickled files {', '.join(pickles)} — a model folder holds safetensors only; re-save it")
    if not any(folder.glob("*.safetensors")):
        report.error("no *.safetensors weights — save the model with save_pretrained")


def _load_config(folder: Path, trust_remote_code: bool, report: CheckReport) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (ValueError, OSError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0][:160]
        report.error(f"config.json does not load with transformers ({reason})")
        return None


def _weight_shapes(folder: Path, report: CheckReport) -> dict[str, tuple[Path, list[int]]]:
    """name -> (file, shape) of every tensor, read from the safetensors headers only."""
    from safetensors import safe_open

    shapes: dict[str, tuple[Path, list[int]]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(file, "pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - safe_open handles are not mappings
                    shapes[key] = (file, list(handle.get_slice(key).get_shape()))
        except Exception as exc:  # safetensors raises its own error types for damaged files
            report.error(f"{file.name} is not a readable safetensors file ({type(exc).__name__}) — re-save the model")
    leftovers = sorted(k for k in shapes if any(part in k for part in _ADAPTER_KEY_PARTS))
    if leftovers:
        report.error(f"{len(leftovers)} adapter weights left in the model (e.g. {leftovers[0]}) — merge the adapter "
                     "(merge_and_unload) before saving; servers such as vLLM refuse modules_to_save adapters")
    return shapes


def _check_embeddings(
    folder: Path, config: Any, shapes: dict[str, tuple[Path, list[int]]], vocab_size: int, tied: bool,
    report: CheckReport,
) -> None:
    embed_name, head_name = _embedding_names(config)
    embed_key = _find_key(shapes, embed_name)
    head_key = _find_key(shapes, head_name) if head_name else None
    if embed_key is None:
        report.error(f"the input embeddings ({embed_name}) are missing from the weights — re-save the model")
        return
    embed_rows, hidden = shapes[embed_key][1][0], shapes[embed_key][1][-1]
    report.facts["embedding_rows"] = embed_rows
    if embed_rows != vocab_size:
        report.error(f"config.vocab_size is {vocab_size} but the input embeddings have {embed_rows} rows — set "
                     "config.vocab_size to the matrix size (resize_token_embeddings does both)")
    if head_key is not None:
        head_rows, head_hidden = shapes[head_key][1][0], shapes[head_key][1][-1]
        report.facts["head_rows"] = head_rows
        if head_rows != embed_rows or head_hidden != hidden:
            report.error(f"the LM head is {head_rows}×{head_hidden} but the input embeddings are {embed_rows}×{hidden} "
                         "— resize both together")
    elif head_name:
        report.error(f"the LM head ({head_name}) is missing from the weights and the config does not tie it to the "
                     "embeddings — re-save the model")
    for key in filter(None, (embed_key, head_key)):
        _check_finite(shapes[key][0], key, report)


def _embedding_names(config: Any) -> tuple[str, str | None]:
    """Parameter names of the input embeddings and (when untied) the LM head, from a weightless model."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    if head is None or head.weight is embed:
        return names[id(embed)][0], None
    return names[id(embed)][0], names[id(head.weight)][0]


def _find_key(shapes: dict[str, Any], name: str | None) -> str | None:
    """The weight key of a parameter, allowing for a checkpoint prefix that differs from the module path."""
    if name is None:
        return None
    if name in shapes:
        return name
    suffix = ".".join(name.split(".")[-2:])
    matches = [k for k in shapes if k.endswith("." + suffix) or k == suffix]
    return matches[0] if len(matches) == 1 else None


def _check_finite(file: Path, key: str, report: CheckReport) -> None:
    import torch
    from safetensors import safe_open

    with safe_open(file, "pt") as handle:
        tensor = handle.get_tensor(key)
    bad_rows = int((~torch.isfinite(tensor.float())).any(dim=-1).sum())
    if bad_rows:
        report.error(
            f"{bad_rows} rows of {key} hold NaN or inf — one such row turns every output NaN; re-initialise them"
        )


def _load_tokenizer(folder: Path, trust_remote_code: bool, report: CheckReport) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (ValueError, OSError, KeyError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        report.error(f"the tokenizer does not load from the folder ({reason}) — save the tokenizer with the model")
        return None


def _generation_eos_ids(folder: Path, config: Any, report: CheckReport) -> set[int]:
    path = folder / "generation_config.json"
    if path.exists():
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
        except json.JSONDecodeError:
            report.error("generation_config.json is not valid JSON — re-save the model")
            return set()
    else:
        value = getattr(config.get_text_config(), "eos_token_id", None)
    return set(token_id_list(value))


def token_id_list(value: Any) -> list[int]:
    """A config's token-id setting (an id, a list of ids or None) as a list of ints."""
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def _check_tokenizer(tokenizer: Any, vocab_size: int, eos_ids: set[int], report: CheckReport) -> None:
    length = len(tokenizer)
    highest = max(tokenizer.get_vocab().values(), default=-1)
    report.facts.update(tokenizer_length=length, padding_rows=vocab_size - length)
    if length > vocab_size or highest >= vocab_size:
        report.error(f"the tokenizer has {length} tokens (highest id {highest}) but the model only {vocab_size} "
                     "embedding rows — the model and tokenizer come from different vocabularies; resize the model")
    # transformers adds a special token the vocabulary lacks at load time, so the length check above covers it.
    specials = {
        name: tokenizer.convert_tokens_to_ids(token)
        for name in ("bos_token", "eos_token", "pad_token", "unk_token")
        if (token := getattr(tokenizer, name, None)) is not None
    }
    report.facts["special_token_ids"] = specials
    eos = specials.get("eos_token")
    if eos is not None and eos_ids and eos not in eos_ids:
        report.error(f"the tokenizer's EOS {tokenizer.eos_token!r} (id {eos}) is not among generation_config's eos "
                     f"ids {sorted(eos_ids)} — add it so generation stops")


def _check_chat_template(
    tokenizer: Any, vocab_size: int, eos_ids: set[int], required: bool, report: CheckReport
) -> None:
    if not getattr(tokenizer, "chat_template", None):
        report.facts["chat_template"] = False
        if required:
            report.error("no chat template — a chat model needs one; copy it from the instruct model's tokenizer")
        return
    report.facts["chat_template"] = True
    end = chat_end_token(tokenizer)
    if isinstance(end, str):
        report.error(end)
        return
    report.facts["chat_end_token"] = tokenizer.convert_ids_to_tokens(end)
    rendered = tokenizer.apply_chat_template(_probe_messages(), tokenize=False)
    outside = [i for i in tokenizer(rendered, add_special_tokens=False)["input_ids"] if i >= vocab_size]
    if outside:
        report.error(
            f"the chat template renders token ids {sorted(set(outside))[:5]} beyond the vocabulary — resize the model"
        )
    if end not in eos_ids:
        report.error(f"the chat template ends assistant turns with {report.facts['chat_end_token']!r} (id {end}), "
                     f"which is not among generation_config's eos ids {sorted(eos_ids)} — generation would run past "
                     "the answer; add it to generation_config.eos_token_id")


def _probe_messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": PROBE_QUESTION}, {"role": "assistant", "content": PROBE_ANSWER}]


def chat_end_token(tokenizer: Any) -> int | str:
    """The id of the token a chat template puts right after an assistant answer, or a problem description."""
    try:
        rendered = tokenizer.apply_chat_template(_probe_messages(), tokenize=False)
    except Exception as exc:  # jinja raises TemplateError (or anything the template raises itself)
        return f"the chat template cannot render a user/assistant exchange ({str(exc)[:120]}) — fix the template"
    after = rendered[rendered.rfind(PROBE_ANSWER) + len(PROBE_ANSWER) :]
    if not after.strip():
        return (
            "the chat template puts nothing after an assistant answer — a model cannot learn to stop; add an end token"
        )
    ids = tokenizer(after.lstrip(" "), add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    if not ids or ids[0] not in special:
        return (f"the chat template ends assistant turns with {after.strip()[:30]!r}, which is not a single special "
                "token, so generation cannot stop on it — add it to the tokenizer as a special token")
    return int(ids[0])
