"""Training verbs: `langadapt cpt`, `sft`, `dpo` (outside a run) and `langadapt check MODEL`.

    langadapt cpt --model runs/x/embed/model --data runs/x/pack/dataset --out runs/cpt-a --set max_steps=200
    torchrun --nproc_per_node 8 -m langadapt.cli cpt --model ... --data ... --out ... --config run.yaml
    accelerate launch --config_file configs/accelerate/deepspeed-zero2.yaml -m langadapt.cli cpt ...
    langadapt sft --model runs/x/lep/model --config run.yaml --out runs/sft-a --set max_steps=200
    langadapt dpo --model runs/sft-a/model --data prefs.jsonl --out runs/dpo-a
    langadapt check runs/x/sft/model

`--config` is a run config (its `cpt:`/`sft:`/`dpo:` section, `seed`, `target_language` and `models` are used)
or a YAML holding just the section. OUT receives model/ (merged, checked), adapter/ (LoRA) and metrics.json
through a temporary folder beside it; checkpoints live in OUT.work (cpt: or `--work`), so running the same
command again resumes. Under torchrun every cpt process trains and rank 0 writes OUT.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel

from langadapt.errors import LangadaptError

if TYPE_CHECKING:
    from langadapt.train.config import DpoConfig, SftConfig
    from langadapt.train.tuning import TuningJob

ModelOption = Annotated[str, typer.Option("--model", help="Model folder or reference to train.")]
OutOption = Annotated[Path, typer.Option("--out", help="Output folder; must not exist yet.")]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="Run config, or a YAML with the section.")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a key, e.g. --set max_steps=100.")]
DataOption = Annotated[list[Path] | None, typer.Option("--data", help="Training file (repeatable; adds to data).")]


def register(app: typer.Typer) -> None:
    app.command("cpt")(cpt)
    app.command("sft")(sft)
    app.command("dpo")(dpo)
    app.command("check")(check)


def cpt(
    model: Annotated[str, typer.Option("--model", help="Model folder or reference (e.g. the embed stage's model).")],
    data: Annotated[Path, typer.Option("--data", help="Packed dataset folder (input_ids + position_ids).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder; must not exist yet.")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="YAML/JSON whose `cpt:` section (and `seed`, `models.trust_remote_code`) to use."
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a cpt key, e.g. --set max_steps=100 (repeatable).")
    ] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="Tokenizer to save with the model.")] = None,
    work: Annotated[Path | None, typer.Option("--work", help="Checkpoint folder (default: OUT.work).")] = None,
) -> None:
    """Continued pre-training of a model on a packed dataset (full, embeddings-only or LoRA)."""
    from langadapt.train.config import CptConfig
    from langadapt.train.cpt import CptJob, run_cpt

    settings, run = section_from(config, "cpt", CptConfig, overrides or [])
    out = out.resolve()
    work = (work or out.with_name(out.name + ".work")).resolve()

    def train(tmp: Path) -> dict[str, Any]:
        return run_cpt(CptJob(
            settings=settings, model=model, data=data.resolve(), out=tmp, work=work, tokenizer=tokenizer,
            seed=run.seed, trust_remote_code=run.trust_remote_code,
        ))

    _train_into(out, work, train, "cpt")


def sft(
    model: ModelOption,
    out: OutOption,
    config: ConfigOption = None,
    overrides: SetOption = None,
    data: DataOption = None,
    corpus: Annotated[
        Path | None, typer.Option("--corpus", help="Texts for the copy task (jsonl/txt/parquet).")
    ] = None,
    language: Annotated[str | None, typer.Option("--language", help="Target language (default: the config's).")] = None,
) -> None:
    """Instruction tuning / calibration of a model (LoRA or full), ending in a merged, checked model folder."""
    from langadapt.data.config import SourceConfig
    from langadapt.data.sources import iter_documents
    from langadapt.train.config import SftConfig
    from langadapt.train.sft import train_sft

    settings, run = section_from(config, "sft", SftConfig, overrides or [], data or [])
    corpus_texts = (lambda: iter_documents(SourceConfig(path=str(corpus.resolve())), "corpus")) if corpus else None

    def train(job: TuningJob) -> dict[str, Any]:
        return train_sft(job, settings, language=language or run.language, corpus_texts=corpus_texts,
                         original_model=run.instruct or model)

    _run_job(model, out, run, train, "sft", settings, corpus)


def dpo(model: ModelOption, out: OutOption, config: ConfigOption = None, overrides: SetOption = None,
        data: DataOption = None) -> None:
    """Preference alignment (DPO / IPO) of a model, ending in a merged, checked model folder."""
    from langadapt.train.config import DpoConfig
    from langadapt.train.dpo import train_dpo

    settings, run = section_from(config, "dpo", DpoConfig, overrides or [], data or [])
    _run_job(model, out, run, lambda job: train_dpo(job, settings), "dpo", settings)


def check(
    model: Annotated[str, typer.Argument(help="Model folder (or builtin:NAME / hub id).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    chat: Annotated[bool, typer.Option("--chat", help="Require a chat template.")] = False,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Allow custom model code.")] = False,
) -> None:
    """Check that a model folder is complete and consistent (vocab sizes, special tokens, EOS, chat template)."""
    from langadapt.models import resolve
    from langadapt.train.check import check_model_folder

    # A local folder is checked as it is (resolve would stop at its first problem); references are fetched.
    folder = Path(model) if Path(model).exists() else resolve(model, trust_remote_code=trust_remote_code)
    report = check_model_folder(folder, trust_remote_code=trust_remote_code, require_chat_template=chat)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for key, value in report.facts.items():
            typer.echo(f"  {key}: {value}")
        for message in report.errors:
            typer.echo(f"✗ {message}", err=True)
        typer.echo(f"ok: {model}" if report.ok else f"{len(report.errors)} problem(s) in {model}")
    if not report.ok:
        raise typer.Exit(1)


@dataclass(frozen=True)
class RunValues:
    """The run-level values a training verb takes from its --config (defaults without one)."""

    seed: int = 42
    language: str = "en"
    instruct: str | None = None  # models.instruct, else models.base: answers self-calibration prompts
    original_tokenizer: str | None = None  # models.tokenizer, else models.base: the vocabulary before adaptation
    trust_remote_code: bool = False


SectionT = TypeVar("SectionT", bound=BaseModel)


def section_from(
    config: Path | None, section: str, schema: type[SectionT], overrides: list[str], data: list[Path] | None = None
) -> tuple[SectionT, RunValues]:
    """The validated section (from a run config or a bare section file, with --set overrides and --data files)
    and the run-level values the verbs use: seed, target language, models."""
    import yaml
    from pydantic import TypeAdapter, ValidationError

    from langadapt.config import describe_errors, read_yaml
    from langadapt.schema import ModelRef

    loaded: dict[str, Any] = {}
    base_dir = Path.cwd()
    if config is not None:
        if not config.is_file():
            raise LangadaptError(
                f"--config '{config}' is not a file — pass a run config or a YAML with a {section}: section"
            )
        loaded = read_yaml(config)
        if not isinstance(loaded, dict):
            raise LangadaptError(f"--config '{config}' must be a mapping with a {section}: section")
        base_dir = config.resolve().parent
    values = dict(loaded.get(section) or {})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LangadaptError(f"--set '{item}' is not KEY=VALUE — e.g. --set max_steps=100")
        target = values
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = yaml.safe_load(value)
    if data:
        values["data"] = [*values.get("data", []), *(str(p.resolve()) for p in data)]
    try:
        settings = schema.model_validate(values, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise LangadaptError(f"{section} settings: " + "; ".join(describe_errors(exc, schema))) from None
    # Model references resolve as in a run config: a relative folder is taken from the config's folder.
    model_ref = TypeAdapter(ModelRef)
    models = {key: model_ref.validate_python(value, context={"base_dir": base_dir}) if isinstance(value, str) else value
              for key, value in (loaded.get("models") or {}).items()}
    run = RunValues(
        seed=int(loaded.get("seed", 42)),
        language=loaded.get("target_language", "en"),
        instruct=models.get("instruct") or models.get("base"),
        original_tokenizer=models.get("tokenizer") or models.get("base"),
        trust_remote_code=bool(models.get("trust_remote_code", False)),
    )
    return settings, run


def _run_job(model: str, out: Path, run: RunValues, train: Callable[[TuningJob], dict[str, Any]], name: str,
             settings: SftConfig | DpoConfig, *inputs: Path | None) -> None:
    """An sft/dpo job on `model` whose outputs go to OUT. Its checkpoints (OUT.work) are keyed by everything
    that shapes the weights, so a re-run with other settings, data or model starts over instead of resuming."""
    from langadapt.runstore import fingerprint_path, keyed_dir, stable_hash
    from langadapt.train.tuning import TuningJob

    out = out.resolve()
    work = out.with_name(out.name + ".work")
    files = [Path(p) for p in (*settings.data, *inputs) if p is not None]
    key = stable_hash({
        "verb": name, "settings": settings.model_dump(mode="json"), "seed": run.seed, "model": str(model),
        "inputs": [fingerprint_path(p) for p in (Path(model), *files) if p.exists()],
    })
    _train_into(out, work, lambda tmp: train(TuningJob(
        model=model, tokenizer=model, original_tokenizer=run.original_tokenizer or model, out=tmp,
        work=keyed_dir(work, key), seed=run.seed, trust_remote_code=run.trust_remote_code,
    )), name)


def _train_into(out: Path, work: Path, train: Callable[[Path], dict[str, Any]], name: str) -> None:
    """Train into a temporary folder beside OUT, renamed into place only when complete; the checkpoints in
    `work` are kept on failure (a re-run resumes) and removed on success. Under torchrun every rank trains
    and rank 0 writes."""
    from langadapt.runstore import staged_output

    if int(os.environ.get("RANK", "0")) != 0:
        train(out.with_name(f".tmp-{out.name}-rank{os.environ['RANK']}"))  # never written to
        return
    with staged_output(out) as tmp:
        metrics = train(tmp)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    summary = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics["summary"].items())
    typer.echo(f"{name} done: {out / 'model'}  {summary}")
