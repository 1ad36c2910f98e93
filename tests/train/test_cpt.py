"""CPT core: packed data, document isolation, the three modes, embedding_lr, exact resume, guard rails."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, TrainerCallback

from langadapt.errors import LangadaptError
from langadapt.train.common import COMPLETE_MARKER
from langadapt.train.cpt import CptJob, PackedCollator, load_packed, run_cpt
from tests.train.conftest import CONTEXT, fast_settings, pack_documents


def train(tmp_path: Path, model: Path, data: Path, *, name: str = "run", callbacks=(), **settings) -> tuple[dict, Path]:
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    job = CptJob(
        settings=fast_settings(**settings), model=str(model), data=data, out=out, work=tmp_path / f"{name}.work"
    )
    return run_cpt(job, callbacks=callbacks), out


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


# --------------------------------------------------------------------------------------------------------
# The packed dataset and the collator.
# --------------------------------------------------------------------------------------------------------


def test_pack_helper_follows_the_contract() -> None:
    packed = pack_documents([[5, 6, 7], [8, 9], [10, 11, 12, 13]], context_length=4, eos_id=1)
    assert packed["input_ids"] == [[5, 6, 7, 1], [8, 9, 1, 10], [11, 12, 13, 1]]
    assert packed["position_ids"] == [[0, 1, 2, 3], [0, 1, 2, 0], [0, 1, 2, 3]]


def test_load_packed_reads_the_context_length(packed_eu: Path, tmp_path: Path) -> None:
    data = load_packed(packed_eu, vocab_size=600, max_positions=512)
    assert data.context_length == CONTEXT and data.blocks > 100
    assert data.dataset.column_names == ["input_ids", "position_ids"]
    assert data.dataset[0]["input_ids"].shape == (CONTEXT,)
    padded = _save(tmp_path / "padded", input_ids=[[5, 6, 0]], position_ids=[[0, 1, 0]], labels=[[5, 6, -100]],
                   source_ids=[[0, 0, -1]])
    assert load_packed(padded, vocab_size=600).dataset.column_names == ["input_ids", "position_ids", "labels"]


def _save(path: Path, **columns: list) -> Path:
    from datasets import Dataset

    Dataset.from_dict(columns).save_to_disk(str(path))
    return path


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing", "does not exist"),
        ("not_a_dataset", "is not a datasets.save_to_disk folder"),
        ("no_position_ids", "lacks column(s) position_ids (it has input_ids, text)"),
        ("ragged", "rows of different lengths"),
        ("foreign_vocab", "token ids 3..900 but the model has 600 embedding rows"),
        ("long_positions", "position ids 0..3 but the model handles positions < 3"),
        ("empty", "has no rows"),
    ],
)
def test_bad_packed_data_is_one_clear_line(tmp_path: Path, case: str, needle: str) -> None:
    path = tmp_path / "data"
    if case == "not_a_dataset":
        path.mkdir()
        (path / "x.txt").write_text("hi")
    elif case == "no_position_ids":
        _save(path, input_ids=[[1, 2]], text=["a"])
    elif case == "ragged":
        _save(path, input_ids=[[1, 2], [1, 2, 3]], position_ids=[[0, 1], [0, 1, 2]])
    elif case == "foreign_vocab":
        _save(path, input_ids=[[3, 900]], position_ids=[[0, 1]])
    elif case == "long_positions":
        _save(path, input_ids=[[3, 4, 5, 6]], position_ids=[[0, 1, 2, 3]])
    elif case == "empty":
        from datasets import Dataset

        empty = Dataset.from_dict({"input_ids": [[1, 2]], "position_ids": [[0, 1]]}).filter(lambda row: False)
        empty.save_to_disk(str(path), num_shards=1)
    with pytest.raises(LangadaptError) as info:
        load_packed(path, vocab_size=600, max_positions=3 if case == "long_positions" else None)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_collator_masks_document_starts_and_flattens_with_exact_boundaries() -> None:
    rows = [
        {"input_ids": torch.tensor([5, 6, 1, 7]), "position_ids": torch.tensor([0, 1, 2, 0])},
        {"input_ids": torch.tensor([8, 9, 1, 4]), "position_ids": torch.tensor([1, 2, 3, 0])},  # starts mid-document
    ]
    batch = PackedCollator()(rows)
    assert batch["labels"].tolist() == [[-100, 6, 1, -100], [8, 9, 1, -100]]
    assert "attention_mask" not in batch  # a mask would switch off transformers' packed-sequence detection
    padded = [{**rows[0], "labels": torch.tensor([5, 6, 1, -100])}]  # best_fit packing: padding has no label
    assert PackedCollator()(padded)["labels"].tolist() == [[-100, 6, 1, -100]]
    flat = PackedCollator(flatten=True)(rows)
    assert flat["input_ids"].tolist() == [[5, 6, 1, 7, 8, 9, 1, 4]]
    assert flat["cu_seq_lens_q"].tolist() == [0, 3, 4, 7, 8]  # row starts are boundaries even mid-document
    assert flat["max_length_q"] == 3
    assert flat["labels"].tolist() == [[-100, 6, 1, -100, -100, 9, 1, -100]]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_documents_do_not_see_each_other(tiny_llama: Path, packed_eu: Path, attention: str) -> None:
    """A packed row's loss equals the loss of its documents run one by one (to float precision)."""
    from langadapt.train.common import load_model_for_training

    model = load_model_for_training(tiny_llama, attention=attention).eval()
    data = load_packed(packed_eu, vocab_size=600)
    row = next(r for r in data.dataset if int((r["position_ids"] == 0).sum()) >= 2)
    batch = PackedCollator()([row])
    with torch.no_grad():
        packed_loss = model(**batch).loss
        starts = [0, *torch.nonzero(row["position_ids"] == 0).flatten().tolist(), CONTEXT]
        total, count = 0.0, 0
        for begin, end in itertools.pairwise(starts):
            if end - begin < 2:
                continue
            ids = row["input_ids"][begin:end].unsqueeze(0)
            logits = model(input_ids=ids, position_ids=row["position_ids"][begin:end].unsqueeze(0)).logits
            total += torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum").item()
            count += end - begin - 1
    assert packed_loss.item() == pytest.approx(total / count, rel=1e-5)
    with torch.no_grad():  # and the isolation is real: the same row with no position_ids scores differently
        plain = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
    assert abs(plain.item() - packed_loss.item()) > 1e-3


# --------------------------------------------------------------------------------------------------------
# Modes.
# --------------------------------------------------------------------------------------------------------


def test_embeddings_mode_trains_only_embeddings_and_head(tmp_path: Path, tiny_model: Path, packed_eu: Path) -> None:
    metrics, out = train(tmp_path, tiny_model, packed_eu, mode="embeddings", max_steps=3)
    before, after = weights(tiny_model), weights(out / "model")
    assert before.keys() == after.keys()
    config = json.loads((out / "model" / "config.json").read_text())
    tied = config.get("tie_word_embeddings", False)
    trained = {"model.embed_tokens.weight"} | (set() if tied else {"lm_head.weight"})
    assert "lm_head.weight" not in after or not tied
    for name in before:
        changed = not torch.equal(before[name], after[name])
        assert changed == (name in trained), name
    seen = torch.unique(load_packed(packed_eu, vocab_size=600).dataset[:12]["input_ids"])
    delta = (after["model.embed_tokens.weight"] - before["model.embed_tokens.weight"]).norm(dim=1)
    assert (delta[seen] > 0).float().mean() > 0.9  # rows of tokens in the batches moved
    assert metrics["trainable_parameters"] == sum(before[n].numel() for n in trained)
    reloaded = AutoModelForCausalLM.from_pretrained(out / "model")
    assert reloaded.config.use_cache is True
    if tied:
        assert reloaded.get_input_embeddings().weight is reloaded.get_output_embeddings().weight


def test_full_mode_moves_every_weight_and_records_the_run(tmp_path: Path, tiny_llama: Path, packed_eu: Path) -> None:
    metrics, out = train(tmp_path, tiny_llama, packed_eu, mode="full", report_to=["tensorboard"])
    before, after = weights(tiny_llama), weights(out / "model")
    assert all(not torch.equal(before[n], after[n]) for n in before)
    assert metrics["steps"] == 6 and metrics["tokens_seen"] == 6 * 4 * CONTEXT
    assert metrics["tokens_per_second"] > 0 and metrics["train_seconds"] > 0
    assert [p["step"] for p in metrics["loss_curve"]] == [1, 2, 3, 4, 5, 6]
    assert metrics["final_loss"] < metrics["first_loss"]
    assert set(metrics["summary"]) == {"final loss", "tokens seen", "tok/s"}
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert (out / "model" / "chat_template.jinja").exists() and (out / "model" / "generation_config.json").exists()
    assert not (tmp_path / "run.work" / "final").exists()


@pytest.mark.parametrize("model_fixture", ["tiny_llama", "tiny_qwen2"])  # untied and tied
def test_lora_mode_merges_adapters_and_trained_embeddings(
    tmp_path: Path, request: pytest.FixtureRequest, model_fixture: str, packed_eu: Path
) -> None:
    from peft import PeftModel

    base = request.getfixturevalue(model_fixture)
    metrics, out = train(tmp_path, base, packed_eu, mode="lora", lora={"r": 4, "alpha": 8, "dropout": 0.0},
                         keep_checkpoint=True)
    merged = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out / "checkpoint").eval()
    ids = torch.tensor([[3, 50, 80, 120, 7]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-5)
    before, after = weights(base), weights(out / "model")
    assert not torch.equal(
        before["model.layers.0.self_attn.q_proj.weight"], after["model.layers.0.self_attn.q_proj.weight"]
    )
    assert not torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    assert torch.equal(before["model.norm.weight"], after["model.norm.weight"])  # not adapted, not trained
    if merged.config.tie_word_embeddings:
        assert merged.get_input_embeddings().weight is merged.get_output_embeddings().weight
    assert metrics["trainable_parameters"] < metrics["total_parameters"]


def test_embedding_lr_is_the_learning_rate_of_embeddings_and_head(
    tmp_path: Path, tiny_llama: Path, packed_eu: Path
) -> None:
    _, out = train(tmp_path, tiny_llama, packed_eu, mode="full", learning_rate=1e-9, embedding_lr=1e-2, max_steps=3)
    before, after = weights(tiny_llama), weights(out / "model")
    for name in before:
        change = (after[name] - before[name]).abs().max().item()
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert change > 1e-3, name
        else:
            assert change < 1e-7, name


def test_output_keeps_the_input_models_dtype(tmp_path: Path, tiny_llama: Path, packed_eu: Path) -> None:
    bf16 = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.bfloat16).save_pretrained(bf16)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny_llama / name).exists():
            (bf16 / name).write_bytes((tiny_llama / name).read_bytes())
    _, out = train(tmp_path, bf16, packed_eu, mode="embeddings", max_steps=2)
    assert {t.dtype for t in weights(out / "model").values()} == {torch.bfloat16}


# --------------------------------------------------------------------------------------------------------
# Exact resume.
# --------------------------------------------------------------------------------------------------------


class SimulatedCrash(Exception):
    pass


class CrashAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise SimulatedCrash


@pytest.mark.parametrize("mode", ["full", "embeddings", "lora"])
def test_interrupted_and_resumed_run_is_bit_identical(
    tmp_path: Path, tiny_llama: Path, packed_eu: Path, mode: str
) -> None:
    # dropout: RNG state must resume too
    extra = {"lora": {"r": 4, "alpha": 8, "dropout": 0.1}} if mode == "lora" else {}
    straight, straight_out = train(tmp_path, tiny_llama, packed_eu, name="straight", mode=mode, max_steps=8, **extra)

    with pytest.raises(SimulatedCrash):
        train(tmp_path, tiny_llama, packed_eu, name="resumed", mode=mode, max_steps=8, callbacks=[CrashAt(5)], **extra)
    checkpoints = tmp_path / "resumed.work" / "checkpoints"
    assert (checkpoints / "checkpoint-4" / COMPLETE_MARKER).exists()
    if mode == "embeddings":  # the frozen body is not copied into every checkpoint
        saved = load_file(str(checkpoints / "checkpoint-4" / "model.safetensors"))
        assert set(saved) == {"model.embed_tokens.weight", "lm_head.weight"}
    (checkpoints / "checkpoint-6").mkdir()  # what kill -9 in the middle of a save leaves: no marker
    (checkpoints / "checkpoint-6" / "trainer_state.json").write_text("{")

    resumed, resumed_out = train(tmp_path, tiny_llama, packed_eu, name="resumed", mode=mode, max_steps=8, **extra)
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == 8
    a, b = weights(straight_out / "model"), weights(resumed_out / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["loss_curve"] == straight["loss_curve"]


def test_changed_settings_start_over_instead_of_resuming(tmp_path: Path, tiny_llama: Path, packed_eu: Path) -> None:
    with pytest.raises(SimulatedCrash):
        train(tmp_path, tiny_llama, packed_eu, callbacks=[CrashAt(3)])
    metrics, _ = train(tmp_path, tiny_llama, packed_eu, learning_rate=5e-3)
    assert metrics["resumed_from_step"] == 0


# --------------------------------------------------------------------------------------------------------
# Guard rails.
# --------------------------------------------------------------------------------------------------------


class PoisonAfter(TrainerCallback):
    """Turn one weight into inf after `step`, as a diverging run would."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                model.get_input_embeddings().weight[:, 0] = math.inf


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, tiny_llama: Path, packed_eu: Path
) -> None:
    with pytest.raises(LangadaptError) as info:
        train(tmp_path, tiny_llama, packed_eu, callbacks=[PoisonAfter(3)])
    message = str(info.value)
    checkpoints = tmp_path / "run.work" / "checkpoints"
    assert "loss became nan at step 4" in message and "last good checkpoint is step 2" in message
    assert str(checkpoints / "checkpoint-2") in message and "lower learning_rate" in message
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-2"]
    good = load_file(str(checkpoints / "checkpoint-2" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in good.values())
    assert not (tmp_path / "run" / "model").exists()


class OutOfMemoryAt(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_names_the_knobs(tmp_path: Path, tiny_llama: Path, packed_eu: Path) -> None:
    with pytest.raises(LangadaptError) as info:
        train(tmp_path, tiny_llama, packed_eu, batch_size=4, gradient_accumulation_steps=2, callbacks=[OutOfMemoryAt()])
    message = str(info.value)
    assert message.startswith("out of memory at batch_size 4 × context 64 in mode full")
    assert "batch_size 2 with gradient_accumulation_steps 4 (same global batch)" in message
    assert "gradient_checkpointing: true" in message and "mode: lora or embeddings" in message


def test_too_little_data_for_one_step(tmp_path: Path, tiny_llama: Path, packed_eu: Path) -> None:
    with pytest.raises(LangadaptError, match=r"one step needs 4096 .* lower batch_size or add data"):
        train(tmp_path, tiny_llama, packed_eu, batch_size=4096)


def test_warmup_longer_than_the_run_is_refused(tmp_path: Path, tiny_llama: Path, packed_eu: Path) -> None:
    with pytest.raises(LangadaptError, match=r"warmup_steps \(100\) ≥ total steps \(6\)"):
        train(tmp_path, tiny_llama, packed_eu, warmup_steps=100)


def test_gradient_checkpointing_gives_the_same_weights(tmp_path: Path, tiny_llama: Path, packed_eu: Path) -> None:
    _, plain = train(tmp_path, tiny_llama, packed_eu, name="plain", mode="embeddings", max_steps=2)
    _, checkpointed = train(tmp_path, tiny_llama, packed_eu, name="ckpt", mode="embeddings", max_steps=2,
                            gradient_checkpointing=True)
    a, b = weights(plain / "model"), weights(checkpointed / "model")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
