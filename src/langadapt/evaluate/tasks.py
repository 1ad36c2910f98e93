"""The evaluation tasks: each measurement the eval stage runs on every model is one registered `EvalTask`.

A task brings its part of the `eval:` section (a key and its schema), the files it reads (fingerprinted),
a cheap preflight for `langadapt validate`, what it reads once per run, and `run`, which scores one loaded
model and returns its report and headline numbers. A new task is one module with an `@eval_task` class,
plus its name in `BUILTIN_TASK_MODULES` (or an import of the module, for a plug-in).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import create_model
from pydantic.fields import FieldInfo

from langadapt.errors import LangadaptError
from langadapt.evaluate.config import EvalConfig
from langadapt.evaluate.intervals import ItemScores
from langadapt.registry import Registry

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langadapt.config import RunConfig

# The modules holding the built-in tasks, in the order their results are reported.
BUILTIN_TASK_MODULES = (
    "langadapt.evaluate.bpc",
    "langadapt.evaluate.mc",
    "langadapt.evaluate.darucopy",
    "langadapt.evaluate.answers",
    "langadapt.evaluate.harness",
)

SettingT = TypeVar("SettingT")  # the task's part of the eval section
InputsT = TypeVar("InputsT")  # what the task reads once per run, for every model


@dataclass(frozen=True)
class ModelSpec:
    label: str
    ref: str  # a local folder (or builtin:/hub ref) loadable by langadapt.models
    chat: bool  # prompt through the chat template where a task says "auto"
    tokenizer: str | None = None  # default: the model's own


@dataclass(frozen=True)
class EvalModel:
    """The model under evaluation, loaded once for every task."""

    spec: ModelSpec
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    section: EvalConfig  # the whole eval section: dtype, batch_tokens, judge, ...
    target_language: str

    def chat(self, setting: bool | str = "auto") -> bool:
        """A task's `chat_template` setting: "auto" = the model is a chat model and has a template."""
        if setting == "auto":
            return self.spec.chat and bool(getattr(self.tokenizer, "chat_template", None))
        return bool(setting)


@dataclass(frozen=True)
class Sample:
    prompt: str  # what the model was asked (for a copy task: the text to copy)
    output: str


@dataclass
class TaskOutput:
    report: dict[str, Any]  # goes into <run>/eval/<model>.json under the task's key
    headline: dict[str, float] = field(default_factory=dict)  # label -> number, tabulated across models


class EvalTask(Generic[SettingT, InputsT]):
    """One kind of measurement. Subclasses set `key`, `annotation` and `default`, and implement `read_inputs`
    and `run`; `attribute` names the python field when the key clashes with a pydantic name (`copy`)."""

    key: ClassVar[str]
    attribute: ClassVar[str | None] = None  # with `default` carrying `alias=key`
    annotation: ClassVar[Any]
    default: ClassVar[FieldInfo]

    def active(self, setting: SettingT | None) -> bool:
        """Whether the section asks for this task (a null section or an empty mapping does not)."""
        return bool(setting) if isinstance(setting, dict) else setting is not None

    def input_files(self, setting: SettingT) -> Iterable[str]:
        """Files and model references the task reads (their fingerprints re-run the stage when they change)."""
        return ()

    def preflight(self, setting: SettingT, cfg: RunConfig) -> None:
        """Cheap checks `langadapt validate` runs: files exist and parse, names refer to eval sources."""

    def read_inputs(self, setting: SettingT, cfg: RunConfig, data_dir: Path) -> InputsT:
        raise NotImplementedError

    def run(self, setting: SettingT, inputs: InputsT, model: EvalModel) -> TaskOutput:
        raise NotImplementedError

    def item_scores(self, setting: SettingT, report: dict[str, Any]) -> dict[str, ItemScores]:
        """Headline label -> the per-item data behind it, read back from this task's part of a model's report
        (intervals, and paired ones between models, come from it). A task without per-item data: {}."""
        return {}

    def samples(self, setting: SettingT, report: dict[str, Any]) -> dict[str, list[Sample]]:
        """Generation tasks: name -> (prompt, output) per item, for the report's side-by-side view."""
        return {}


EVAL_TASKS: Registry[EvalTask[Any, Any]] = Registry("eval task", BUILTIN_TASK_MODULES,
                                                    module_of=lambda task: type(task).__module__)


def eval_task(cls: type[EvalTask[SettingT, InputsT]]) -> type[EvalTask[SettingT, InputsT]]:
    """Class decorator: register one instance of the task under its `key`."""
    EVAL_TASKS.add(cls.key, cls())
    return cls


def task_setting(section: EvalConfig, task: EvalTask[Any, Any]) -> Any:
    return getattr(section, task.attribute or task.key, None)


def active_tasks(section: EvalConfig) -> list[tuple[EvalTask[Any, Any], Any]]:
    """(task, its setting) for every registered task the section asks for, in registration order."""
    pairs = [(task, task_setting(section, task)) for task in EVAL_TASKS.items().values()]
    return [(task, setting) for task, setting in pairs if task.active(setting)]


def eval_config_schema() -> type[EvalConfig]:
    """EvalConfig with a field for every registered task."""
    return _schema(tuple(EVAL_TASKS.items().values()))


@lru_cache(maxsize=16)
def _schema(tasks: tuple[EvalTask[Any, Any], ...]) -> type[EvalConfig]:
    fields: dict[str, Any] = {}
    for task in tasks:
        fields[task.attribute or task.key] = (task.annotation, task.default)
    return create_model("EvalConfig", __base__=EvalConfig, __doc__=EvalConfig.__doc__, **fields)


def eval_texts(data_dir: Path, name: str, limit: int | None = None, *, language: str | None = None) -> list[str]:
    """The first `limit` held-out texts of the data stage's eval source `name`; a one-line error when the data
    stage did not write it, when it is empty, or when its texts read as another language than `language`."""
    from itertools import islice

    from langadapt.data.corpus import eval_file, read_texts

    path = eval_file(data_dir, name)
    if not path.is_file():
        raise LangadaptError(f"eval source '{name}': the data stage wrote no {path} — add it to data.eval_sources "
                             "and re-run the data stage (langadapt run CONFIG --force data)")
    texts = list(islice(read_texts(path), limit))
    if not any(texts):
        raise LangadaptError(f"eval source '{name}' is empty ({path}) — check data.eval_sources.{name}.path and "
                             "text_field")
    if language:
        check_language(texts, language, f"eval source '{name}'", f"data.eval_sources.{name}")
    return texts


def check_language(texts: list[str], language: str, what: str, key: str) -> None:
    """A one-line error when most of `texts` read as one other language than the declared one."""
    from langadapt.evaluate.langid import dominant_other_language

    found = dominant_other_language(texts, language)
    if found is not None:
        other, count, judged = found
        raise LangadaptError(f"{what} is declared '{language}' but reads as '{other}' ({count} of {judged} texts "
                             f"sampled) — fix {key}.language or its text_field")


def unknown_eval_source(cfg: RunConfig, name: str, key: str) -> str | None:
    """The one-line problem when `name` (set at config key `key`) is not one of data.eval_sources."""
    sources = cfg.data.eval_sources
    if name in sources:
        return None
    return (f"{key} '{name}' is not in data.eval_sources ({', '.join(sorted(sources)) or 'none'}) — "
            "add it there or fix the name")
