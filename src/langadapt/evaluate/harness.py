"""The lm-evaluation-harness bridge: run installed lm-eval tasks on a model, and export our local MC tasks
as lm-eval tasks (so `basque_bench`, `belebele_*`, `global_mmlu_full_lt`, ... run where their data is).

lm-eval is an optional dependency (`pip install langadapt[eval]`) and imported only here, lazily.
Exported tasks carry the fully rendered prompt (few-shot examples and chat template included), so lm-eval
scores exactly the strings our own MC scorer scores (`doc_to_text: "{{prompt}}"`, zero lm-eval shots).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from langadapt.errors import LangadaptError
from langadapt.evaluate.mc import McFormat, McItem
from langadapt.evaluate.tasks import EvalModel, EvalTask, TaskOutput, eval_task
from langadapt.schema import InputPath, Section

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langadapt.config import RunConfig

INSTALL_HINT = "lm-eval is not installed — pip install langadapt[eval]"


def require_lm_eval() -> Any:
    try:
        import lm_eval
    except ImportError:
        raise LangadaptError(INSTALL_HINT) from None
    return lm_eval


def export_mc_task(
    items: list[McItem], out_dir: str | Path, name: str, *, fmt: McFormat, shots: Sequence[McItem] = (),
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> Path:
    """Write `<out_dir>/<name>.yaml` + `<name>.jsonl`, a local lm-eval multiple_choice task; returns the YAML."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / f"{name}.jsonl"
    with data.open("w", encoding="utf-8") as handle:
        for item in items:
            record = {"prompt": fmt.prompt(item, list(shots), tokenizer), "choices": fmt.answers(item),
                      "answer": item.answer}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    # YAML is a superset of JSON: writing JSON avoids quoting surprises in the Jinja templates.
    spec = {
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{prompt}}",
        "doc_to_choice": "{{choices}}", "doc_to_target": "answer", "target_delimiter": " ",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
                        {"metric": "acc_mutual_info", "aggregation": "mean", "higher_is_better": True}],
    }
    path = out_dir / f"{name}.yaml"
    path.write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def run_lm_eval(
    model: PreTrainedModel | str | Path,
    tokenizer: PreTrainedTokenizerBase | None,
    tasks: list[str],
    *,
    include_path: str | Path | None = None,
    num_fewshot: int | None = None,
    limit: float | None = None,
    batch_size: int = 1,
    apply_chat_template: bool = False,
    device: str | None = None,
    log_samples: bool = False,
) -> dict[str, Any]:
    """Run lm-eval tasks with its HF backend; returns {task: {metric: value}} (plus `samples` if asked).

    Offline by default (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE unless already set): local tasks need no hub,
    and hub-backed tasks must already be in the datasets cache.
    """
    require_lm_eval()
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(variable, "1")
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise LangadaptError(f"lm-eval knows no task(s) {', '.join(unknown)} — check the names (`lm_eval ls tasks`) "
                             "or point eval.lm_eval.include_path at the folder holding their YAML")
    if isinstance(model, str | Path):
        lm = HFLM(pretrained=str(model), device=device or "cpu", batch_size=batch_size, dtype="float32")
    else:
        device = device or str(next(model.parameters()).device)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, device=device, batch_size=batch_size)
    try:
        output = simple_evaluate(model=lm, tasks=tasks, num_fewshot=num_fewshot, limit=limit, task_manager=manager,
                                 apply_chat_template=apply_chat_template, log_samples=log_samples,
                                 bootstrap_iters=0)
    except (FileNotFoundError, ConnectionError, OSError) as exc:
        raise LangadaptError(f"lm-eval could not load a task's data offline ({type(exc).__name__}: "
                             f"{str(exc)[:120]}) — download it where you are online first") from None
    results = {task: {key.split(",")[0]: value for key, value in metrics.items() if not key.endswith("_stderr,none")
                      and isinstance(value, int | float)}
               for task, metrics in output["results"].items()}
    if log_samples:
        results["samples"] = output["samples"]
    return results


# --------------------------------------------------------------------------------------------------------
# The eval task: lm-eval tasks run on every evaluated model.
# --------------------------------------------------------------------------------------------------------


class LmEvalConfig(Section):
    """lm-evaluation-harness tasks run on every evaluated model (needs `pip install langadapt[eval]`)."""

    tasks: list[str] = Field(min_length=1)
    include_path: InputPath | None = None
    num_fewshot: int | None = Field(default=None, ge=0)
    limit: float | None = Field(default=None, gt=0)
    batch_size: int = Field(default=1, ge=1)
    apply_chat_template: bool | Literal["auto"] = "auto"


@eval_task
class LmEvalTask(EvalTask[LmEvalConfig, None]):
    key = "lm_eval"
    annotation = LmEvalConfig | None
    default = Field(default=None)

    def preflight(self, setting: LmEvalConfig, cfg: RunConfig) -> None:
        require_lm_eval()

    def read_inputs(self, setting: LmEvalConfig, cfg: RunConfig, data_dir: Path) -> None:
        return None

    def run(self, setting: LmEvalConfig, inputs: None, model: EvalModel) -> TaskOutput:
        results = run_lm_eval(model.model, model.tokenizer, setting.tasks, include_path=setting.include_path,
                              num_fewshot=setting.num_fewshot, limit=setting.limit, batch_size=setting.batch_size,
                              apply_chat_template=model.chat(setting.apply_chat_template))
        out = TaskOutput(results)
        for task_name, metrics in results.items():
            for metric in ("acc", "acc_norm", "exact_match"):
                if isinstance(metrics.get(metric), float):
                    out.headline[f"lm-eval:{task_name} {metric}"] = round(metrics[metric], 4)
        return out
