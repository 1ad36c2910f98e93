"""`langadapt eval ...`: measure one model outside a run, compare reports, bridge to lm-eval."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from langadapt.evaluate.darucopy import CopyKind  # option choices are the config schema's own Literals
from langadapt.evaluate.mc import AnswerFormat

eval_app = typer.Typer(help="Evaluate models: bits/char, multiple choice, copy, generation, lm-eval; compare reports.",
                       no_args_is_help=True)

ModelArg = Annotated[str, typer.Argument(help="Model folder, builtin:NAME or hub id.", show_default=False)]
ChatOpt = Annotated[bool, typer.Option("--chat/--no-chat", help="Prompt through the model's chat template.")]


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")


def _load(ref: str, dtype: str = "float32") -> tuple[Any, Any]:
    from langadapt.models import load_model, load_tokenizer

    return load_model(ref, dtype=dtype).eval(), load_tokenizer(ref)


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


@eval_app.command("bpc")
def bpc_command(
    model: ModelArg,
    texts: Annotated[Path, typer.Argument(help="Text file: .jsonl[.gz], .txt[.gz], .parquet.", show_default=False)],
    field: Annotated[str, typer.Option(help="JSON field / column holding the text.")] = "text",
    language: Annotated[
        str | None, typer.Option(help="Declared language: warns when the texts read otherwise.")
    ] = None,
    max_texts: Annotated[int | None, typer.Option(help="Score the first N texts.")] = None,
    max_length: Annotated[int, typer.Option(help="Window length in tokens.")] = 1024,
    stride: Annotated[int | None, typer.Option(help="New tokens per window (default max_length/2).")] = None,
) -> None:
    """Bits per character / byte and token perplexity of MODEL on TEXTS."""
    from langadapt.evaluate.bpc import bits_per_character
    from langadapt.evaluate.langid import warn_if_not
    from langadapt.evaluate.runner import read_text_file

    documents = read_text_file(texts, field, max_texts)
    if language:
        warn_if_not(documents, language, f"'{texts}'")
    lm, tokenizer = _load(model)
    _print(bits_per_character(lm, tokenizer, documents, max_length=max_length, stride=stride).to_dict())


@eval_app.command("mc")
def mc_command(
    model: ModelArg,
    task: Annotated[
        Path, typer.Argument(help="JSONL: question, choices, answer, optional context.", show_default=False)
    ],
    fewshot: Annotated[Path | None, typer.Option(help="Few-shot examples (same format).")] = None,
    num_fewshot: Annotated[int, typer.Option(help="How many few-shot examples precede each item.")] = 0,
    language: Annotated[str, typer.Option(help="Prompt language (question/answer words).")] = "en",
    answer_format: Annotated[
        AnswerFormat, typer.Option(help="letter (A/B/C/D), text (the choice itself) or continuation (a cloze).")
    ] = "letter",
    chat: ChatOpt = False,
    max_items: Annotated[int | None, typer.Option(help="Evaluate the first N items.")] = None,
    items: Annotated[bool, typer.Option("--items", help="Also print per-item scores.")] = False,
) -> None:
    """Multiple-choice accuracy with loglik, loglik_norm, first_token and mutual_info scoring."""
    from langadapt.evaluate.mc import McFormat, evaluate_mc, read_mc_file

    questions = read_mc_file(task, task.stem)[:max_items]
    shots = read_mc_file(fewshot, "few-shot")[:num_fewshot] if fewshot and num_fewshot else []
    lm, tokenizer = _load(model)
    fmt = McFormat(language=language, answer_format=answer_format, chat_template=chat)
    _print(evaluate_mc(lm, tokenizer, questions, fmt=fmt, shots=shots, task=task.stem).to_dict(with_items=items))


@eval_app.command("copy")
def copy_command(
    model: ModelArg,
    texts: Annotated[Path, typer.Argument(help="Texts to copy (.jsonl[.gz] / .txt).", show_default=False)],
    kind: Annotated[CopyKind, typer.Option(help="sentence (len score) or paragraph (lcs score).")] = "sentence",
    field: Annotated[str, typer.Option(help="JSON field holding the text.")] = "text",
    language: Annotated[str, typer.Option(help="Language of the copy instruction.")] = "en",
    max_items: Annotated[int, typer.Option(help="Copy the first N texts.")] = 20,
    chat: ChatOpt = True,
) -> None:
    """DaruCopy: greedy copies of TEXTS scored with Darumeru's len / lcs metrics."""
    from langadapt.evaluate.darucopy import copy_task
    from langadapt.evaluate.runner import read_text_file

    documents = read_text_file(texts, field, max_items)
    lm, tokenizer = _load(model)
    _print(copy_task(lm, tokenizer, documents, kind=kind, language=language, chat_template=chat).to_dict())


@eval_app.command("generate")
def generate_command(
    model: ModelArg,
    prompts: Annotated[Path, typer.Argument(help="JSONL with prompt (and optional reference).", show_default=False)],
    language: Annotated[str, typer.Option(help="Target language (ISO 639-1) of the answers.")] = "en",
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget per answer.")] = 128,
    max_items: Annotated[int | None, typer.Option(help="Answer the first N prompts.")] = None,
    chat: ChatOpt = True,
) -> None:
    """Answers to PROMPTS: target-language rate, ROUGE against references, words/s."""
    from langadapt.evaluate.answers import generate_task, read_prompt_file

    items = read_prompt_file(prompts)[:max_items]
    lm, tokenizer = _load(model)
    _print(generate_task(lm, tokenizer, items, language=language, chat_template=chat, max_new_tokens=max_new_tokens))


@eval_app.command("compare")
def compare_command(
    reports: Annotated[
        list[Path], typer.Argument(help="Per-model JSON reports (<run>/eval/*.json).", show_default=False)
    ],
    csv: Annotated[bool, typer.Option("--csv", help="CSV instead of markdown.")] = False,
    out: Annotated[Path | None, typer.Option(help="Write the table to this file instead of printing it.")] = None,
) -> None:
    """A table of the reports' headline numbers, one row per model."""
    from langadapt.evaluate.runner import comparison_csv, comparison_markdown, read_reports
    from langadapt.runstore import write_text_atomic

    loaded = read_reports([r for r in reports if r.name not in ("manifest.json",)])
    table = comparison_csv(loaded) if csv else comparison_markdown(loaded)
    if out is None:
        typer.echo(table, nl=False)
        return
    write_text_atomic(out, table)


@eval_app.command("lm-eval")
def lm_eval_command(
    model: ModelArg,
    tasks: Annotated[str, typer.Option(help="Comma-separated lm-eval task names.")] = "",
    include: Annotated[Path | None, typer.Option(help="Folder of extra lm-eval task YAMLs.")] = None,
    mc_task: Annotated[
        list[Path] | None, typer.Option(help="Our JSONL MC task(s), run as lm-eval tasks (repeatable).")
    ] = None,
    language: Annotated[str, typer.Option(help="Prompt language for --mc-task.")] = "en",
    num_fewshot: Annotated[int | None, typer.Option(help="lm-eval few-shot count.")] = None,
    limit: Annotated[float | None, typer.Option(help="Items per task (count, or fraction < 1).")] = None,
    batch_size: Annotated[int, typer.Option(help="lm-eval batch size.")] = 1,
    chat: ChatOpt = False,
) -> None:
    """Run lm-evaluation-harness tasks (HF backend, offline) on MODEL; prints {task: metrics}."""
    from langadapt.errors import LangadaptError
    from langadapt.evaluate.harness import export_mc_task, require_lm_eval, run_lm_eval
    from langadapt.evaluate.mc import McFormat, read_mc_file

    require_lm_eval()
    names = [t for t in tasks.split(",") if t]
    if not names and not mc_task:
        raise LangadaptError("name at least one task: --tasks a,b or --mc-task FILE")
    if mc_task and chat and names:
        raise LangadaptError("--chat with both --tasks and --mc-task: run them separately (an exported task already "
                             "holds its chat-rendered prompt)")
    lm, tokenizer = _load(model)
    workdir = Path(tempfile.mkdtemp(prefix="langadapt-lmeval-"))
    try:
        include_path = include
        if mc_task:
            if include:
                shutil.copytree(include, workdir, dirs_exist_ok=True)
            include_path = workdir
            fmt = McFormat(language=language, chat_template=chat)
            for path in mc_task:
                name = f"langadapt_{path.stem.replace('.', '_')}"
                export_mc_task(read_mc_file(path, path.stem), workdir, name, fmt=fmt, tokenizer=tokenizer)
                names.append(name)
        _print(run_lm_eval(lm, tokenizer, names, include_path=include_path, num_fewshot=num_fewshot, limit=limit,
                           batch_size=batch_size, apply_chat_template=chat and not mc_task))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
