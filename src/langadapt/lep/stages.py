"""The `lep` pipeline stage: the adapted base's embeddings propagated into the instruct model.

B = `models.base`, I = `models.instruct`, D = the `cpt` model when that stage runs, else the `embed` model.
The token map comes from D's folder, else from the embed stage's (a CPT folder need not carry it).
Output: `<run>/lep/model/`, an HF model folder with I's body, D's tokenizer plus I's chat tokens, and I's
chat template. Metrics: per matrix the rows fitted on, the fit's relative residual and how far the map is
from identity; counts of propagated / new / fallback / chat rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langadapt.config import RunConfig
from langadapt.errors import LangadaptError
from langadapt.lep.config import LepConfig
from langadapt.pipeline import StageContext, stage
from langadapt.train.config import CptConfig


def _preflight(cfg: RunConfig) -> None:
    if cfg.models.instruct is None:
        raise LangadaptError(
            "the lep stage needs models.instruct, the instruct sibling of models.base to propagate into — set it, "
            "or remove the lep section"
        )
    cpt = cfg.section("cpt")
    assert cfg.lep is not None
    if isinstance(cpt, CptConfig) and cpt.mode != "embeddings" and not cfg.lep.allow_trained_body:
        raise LangadaptError(
            f"lep after cpt.mode {cpt.mode}: LEP propagates only the donor's embeddings and would drop the body cpt "
            "trains (it assumes the donor has the base's body) — use cpt.mode: embeddings, remove the lep section, or "
            "set lep.allow_trained_body: true to accept it"
        )


SAME_MODEL = ("models.instruct is models.base: the LEP map is the identity, so the result is the donor's rows in "
              "the base's body — set models.instruct to the base's instruct sibling for a real propagation")


def _same_model(base: str, instruct: str, trust_remote_code: bool) -> bool:
    from langadapt.models import resolve

    if base == instruct:
        return True
    return Path(resolve(base, trust_remote_code=trust_remote_code)).resolve() == \
        Path(resolve(instruct, trust_remote_code=trust_remote_code)).resolve()


def _models(cfg: RunConfig) -> list[str]:
    return [ref for ref in (cfg.models.base, cfg.models.instruct) if ref is not None]


@stage("lep", config=LepConfig, needs=("embed",), after=("cpt",), produces=("model",), chat=True,
       preflight=_preflight, external_inputs=_models,
       uses=("models.base", "models.instruct", "models.tokenizer", "models.trust_remote_code"))
def lep_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    from langadapt.lep.propagate import lep_model

    assert cfg.lep is not None and cfg.models.instruct is not None  # the preflight said so
    donor = Path(ctx.upstream_model())  # the cpt model, else the embed model
    token_map = ctx.inputs["embed"] / "model"  # the embed stage's tokenizer map; cpt keeps that tokenizer
    ctx.log.info("LEP %s: base %s, instruct %s, donor %s", cfg.lep.method, cfg.models.base, cfg.models.instruct,
                 donor)
    same = _same_model(cfg.models.base, cfg.models.instruct, cfg.models.trust_remote_code)
    if same:
        ctx.log.warning(SAME_MODEL)
    metrics = lep_model(
        cfg.models.base, cfg.models.instruct, donor, ctx.out / "model", cfg.lep.method,
        token_map_path=token_map, base_tokenizer=ctx.tokenizer_for(cfg.models.base),
        trust_remote_code=cfg.models.trust_remote_code,
    )
    metrics["donor_stage"] = donor.parent.name
    metrics["same_model"] = same
    metrics["warnings"] = [SAME_MODEL] if same else []
    metrics["summary"] = {f"{name} residual": fit["residual"] for name, fit in metrics["maps"].items()}
    metrics["summary"]["chat rows"] = metrics["chat_rows_copied"]
    return metrics
