"""A throw-away plug-in: one eval task, one init method and one stage, each registered from this one file.

Importing the module is all it takes; `tests/test_plugins.py` runs them through `langadapt run`. Nothing in
`src/` names them: this file is the whole change a new task, method or stage costs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from langadapt.config import RunConfig
from langadapt.embeddings.registry import InitInputs, InitResult, init_method
from langadapt.embeddings.surgery import subtoken_mean
from langadapt.evaluate.tasks import EvalModel, EvalTask, TaskOutput, eval_task, eval_texts
from langadapt.pipeline import StageContext, stage
from langadapt.schema import Section


# An init method: half the sub-token mean (a deliberately odd choice, so its rows are recognisable).
@init_method("half_mean")
def half_mean(inputs: InitInputs, options: object) -> InitResult:
    rows = {name: subtoken_mean(inputs.base_rows(name), inputs.token_map, inputs.new_ids)[0] / 2
            for name in inputs.matrices}
    return InitResult(rows, 0, {"scale": 0.5})


# An eval task: how many tokens each model spends on the first text of an eval source.
class TokenCountConfig(Section):
    source: str
    limit: int = Field(default=1, ge=1)


@eval_task
class TokenCountTask(EvalTask[TokenCountConfig, list[str]]):
    key = "token_count"
    annotation = TokenCountConfig | None
    default = Field(default=None)

    def read_inputs(self, setting: TokenCountConfig, cfg: RunConfig, data_dir: Path) -> list[str]:
        return eval_texts(data_dir, setting.source, setting.limit)

    def run(self, setting: TokenCountConfig, inputs: list[str], model: EvalModel) -> TaskOutput:
        counts = [len(model.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in inputs]
        return TaskOutput({"counts": counts}, {"tokens": float(sum(counts))})


# A stage: after embed and before eval, it records the vocabulary size of the newest model.
class ShoutConfig(Section):
    word: str = "kaixo"


@stage("shout", config=ShoutConfig, after=("embed",), before=("eval",), produces=("shout",))
def shout_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, object]:
    from transformers import AutoTokenizer

    section = cfg.section("shout")
    assert isinstance(section, ShoutConfig)
    model = ctx.upstream_model()
    (ctx.out / "shout").mkdir()
    (ctx.out / "shout" / "word.txt").write_text(section.word.upper())
    return {"model": model, "vocab": len(AutoTokenizer.from_pretrained(ctx.tokenizer_for(model))),
            "inputs": list(ctx.inputs)}
