"""SFT: exact assistant-only masking, no truncated answer, and the LoRA lifecycle on a resized vocabulary
(merge → reload gives the unmerged model's logits, tied embeddings stay tied and new tokens get generated)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from langadapt.errors import LangadaptError
from langadapt.train.check import check_model_folder
from langadapt.train.sft import IGNORE, build_sft_dataset, fit_to_length, tokenize_conversation
from langadapt.train.tuning import ensure_chat_template, render
from tests.train.conftest import NEW_TOKENS, greeting_conversations, train_sft

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONVERSATION = [
    {"role": "system", "content": "Laguntzaile atsegina zara."},
    {"role": "user", "content": "Zer da Calc?"},
    {"role": "assistant", "content": "Kalkulu-orriak egiteko programa da."},
    {"role": "user", "content": "Eta Writer?"},
    {"role": "assistant", "content": "Testu-prozesadorea."},
]


def labelled_runs(labels: list[int]) -> list[list[int]]:
    """Positions of each maximal run of labelled (non-ignored) tokens."""
    runs: list[list[int]] = []
    for k, label in enumerate(labels):
        if label == IGNORE:
            continue
        if runs and runs[-1][-1] == k - 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    return runs


@pytest.mark.parametrize("fixture, end", [("tiny_llama", "<|im_end|>"), ("tiny_llama_sp", "</s>")])
def test_loss_falls_exactly_on_each_answer_and_its_end_token(request, fixture, end) -> None:
    tokenizer = AutoTokenizer.from_pretrained(request.getfixturevalue(fixture))
    messages = CONVERSATION if fixture == "tiny_llama" else CONVERSATION[1:]  # the [INST] template has no system
    example = tokenize_conversation(tokenizer, messages)
    assert example.input_ids == tokenizer(render(tokenizer, messages), add_special_tokens=False)["input_ids"]
    runs = labelled_runs(example.labels)
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    assert len(runs) == len(answers)
    for run, answer in zip(runs, answers, strict=True):
        assert [example.labels[k] for k in run] == [example.input_ids[k] for k in run]
        assert tokenizer.decode([example.input_ids[k] for k in run]).strip() == answer + end
    assert example.answer_ends == [run[-1] + 1 for run in runs]
    # Everything outside the answers (system, questions, role headers) carries no loss.
    prompt_ids = [i for i, label in zip(example.input_ids, example.labels, strict=True) if label == IGNORE]
    assert "Zer da Calc?" in tokenizer.decode(prompt_ids) and "Testu" not in tokenizer.decode(prompt_ids)


def test_long_conversations_are_cut_after_a_whole_answer_or_dropped(tiny_llama) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    example = tokenize_conversation(tokenizer, CONVERSATION)
    first_end, second_end = example.answer_ends
    kept = fit_to_length(example, second_end - 1)  # the second answer does not fit: cut after the first
    assert kept is not None and kept[0] == example.input_ids[:first_end]
    assert tokenizer.decode([kept[0][-1]]) == "<|im_end|>"
    assert fit_to_length(example, first_end - 1) is None  # not even the first answer fits
    assert fit_to_length(example, len(example.input_ids)) == (example.input_ids, example.labels)

    single = CONVERSATION[:3]
    dataset, counts = build_sft_dataset(tokenizer, [CONVERSATION, single, single], max_length=second_end - 1)
    assert counts["shortened_to_last_fitting_answer"] == 1 and counts["examples"] == 3
    short = [{"role": "user", "content": "Kaixo"}, {"role": "assistant", "content": "Bai."}]
    dataset, counts = build_sft_dataset(tokenizer, [CONVERSATION, short], max_length=first_end - 5)
    assert counts["dropped_too_long"] == 1 and dataset["input_ids"] == [
        tokenize_conversation(tokenizer, short).input_ids
    ]
    with pytest.raises(LangadaptError, match="no conversation fits max_length"):
        build_sft_dataset(tokenizer, [CONVERSATION], max_length=first_end - 5)


def test_a_template_that_rewrites_earlier_turns_is_refused(tiny_llama) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    tokenizer.chat_template = (  # marks the last message, like templates that strip reasoning from old turns
        "{% for m in messages %}{{ m['role'] }}{% if loop.last %}*{% endif %}: {{ m['content'] }}<|im_end|>"
        "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(LangadaptError, match="renders earlier turns differently"):
        tokenize_conversation(tokenizer, CONVERSATION[1:3])


@pytest.mark.parametrize("run", ["lora_run_tied", "lora_run_untied"])
def test_lora_on_a_resized_vocabulary_merges_to_the_unmerged_models_logits(request, run) -> None:
    from peft import PeftModel

    trained = request.getfixturevalue(run)
    model_dir, adapter_dir = trained.out / "model", trained.out / "adapter"
    assert check_model_folder(model_dir, require_chat_template=True).ok
    assert trained.metrics["train_embeddings"] and trained.metrics["new_tokens"] == len(NEW_TOKENS)
    tied = run == "lora_run_tied"
    # Every head row moves (softmax); an untied input row moves only when its token is in the data (2 of 3).
    assert trained.metrics["new_head_rows_changed"] == 1.0
    assert trained.metrics["new_embed_rows_changed"] == pytest.approx(1.0 if tied else 2 / 3)

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = tokenizer(render(tokenizer, greeting_conversations(2)[1]), return_tensors="pt")["input_ids"]
    merged = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(trained.start, dtype=torch.float32)
    unmerged = PeftModel.from_pretrained(base, adapter_dir).eval()  # the adapter loads onto its base folder
    with torch.no_grad():
        expected, got = unmerged(input_ids=ids).logits, merged(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert merged.config.vocab_size == len(tokenizer) == base.config.vocab_size

    assert merged.config.tie_word_embeddings is tied
    assert (merged.get_output_embeddings().weight is merged.get_input_embeddings().weight) is tied
    with safe_open(model_dir / "model.safetensors", "pt") as weights:
        keys = set(weights.keys())
    assert ("lm_head.weight" in keys) is not tied
    assert not any("lora" in k or "modules_to_save" in k for k in keys)
    note = json.loads((adapter_dir / "LANGADAPT.json").read_text())
    assert note["base_model"] == str(trained.start) and note["vocab_size"] == len(tokenizer)


def test_a_new_token_is_generated_after_training_with_tied_embeddings(lora_run_tied) -> None:
    from langadapt.evaluate.generation import generate_greedy

    model_dir = lora_run_tied.out / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    new_id = tokenizer.convert_tokens_to_ids("kaixomundua")
    run = generate_greedy(model, tokenizer, ["Agurtu 99 aldiz, mesedez."], max_new_tokens=8, chat_template=True)
    prompt = render(tokenizer, [{"role": "user", "content": "Agurtu 99 aldiz, mesedez."}], add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        first = model(input_ids=ids).logits[0, -1].argmax().item()
    assert first == new_id  # the new row is the argmax, not a detour through old sub-tokens
    assert run.outputs[0].text == "kaixomundua eta egunon" and run.outputs[0].stopped


def test_full_fine_tuning_trains_every_weight(tmp_path, resized_untied, tiny_llama) -> None:
    run = train_sft(resized_untied, tiny_llama, tmp_path / "full", mode="full", max_steps=3, learning_rate=1e-3)
    assert not (run.out / "adapter").exists() and check_model_folder(run.out / "model").ok
    before = AutoModelForCausalLM.from_pretrained(resized_untied).state_dict()
    after = AutoModelForCausalLM.from_pretrained(run.out / "model").state_dict()
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert unchanged == []
    assert run.metrics["trainable_parameters"] == sum(t.numel() for t in before.values())


def test_embedding_lr_applies_to_the_embedding_matrix_only(tmp_path, resized_tied, tiny_llama_tied) -> None:
    from trl import SFTConfig, SFTTrainer

    from langadapt.train.common import embedding_parameters
    from langadapt.train.config import SftConfig as Settings
    from langadapt.train.tuning import TuningJob, load_for_tuning, make_trainer, training_arguments

    settings = Settings(copy_task={"count": 1}, learning_rate=1e-4, embedding_lr=1e-3, schedule="constant",
                        max_steps=2, batch_size=2)
    job = TuningJob(model=str(resized_tied), tokenizer=str(resized_tied), original_tokenizer=str(tiny_llama_tied),
                    out=tmp_path / "out", work=tmp_path / "work")
    prepared = load_for_tuning(job, settings)
    dataset, _ = build_sft_dataset(prepared.tokenizer, greeting_conversations(4), 64)
    trainer = make_trainer(SFTTrainer, settings.embedding_lr, model=prepared.model, train_dataset=dataset,
                           args=SFTConfig(**training_arguments(settings, tmp_path / "ckpt", 0), max_length=None),
                           processing_class=prepared.tokenizer)
    trainer.train()
    embedding = {id(p) for p in embedding_parameters(prepared.model)}
    assert len(embedding) == 1  # tied: one shared matrix
    rates = {(id(p) in embedding, group["lr"]) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert rates == {(True, 1e-3), (False, 1e-4)}


def test_a_non_finite_loss_stops_training_before_the_step(tmp_path, tiny_llama) -> None:
    folder = tmp_path / "broken"
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_llama).save_pretrained(folder)
    with pytest.raises(LangadaptError, match="loss became nan at step 1, training stopped; no checkpoint had been "
                                             "written yet — lower learning_rate"):
        train_sft(folder, folder, tmp_path / "out", max_steps=3)
    assert not (tmp_path / "out" / "model").exists()


def test_a_rerun_resumes_from_the_last_complete_checkpoint_only(tmp_path, resized_tied, tiny_llama_tied) -> None:
    from safetensors.torch import load_file

    from langadapt.train.common import COMPLETE_MARKER

    out = tmp_path / "run"
    straight = train_sft(resized_tied, tiny_llama_tied, out, max_steps=4, save_steps=2, logging_steps=1)
    shutil.move(out, tmp_path / "straight")
    checkpoints = tmp_path / "run.work" / "checkpoints"
    assert all((checkpoints / f"checkpoint-{step}" / COMPLETE_MARKER).exists() for step in (2, 4))
    # What kill -9 in the middle of saving checkpoint 4 leaves: no marker, a half-written state.
    (checkpoints / "checkpoint-4" / COMPLETE_MARKER).unlink()
    (checkpoints / "checkpoint-4" / "trainer_state.json").write_text("{")

    resumed = train_sft(resized_tied, tiny_llama_tied, out, max_steps=4, save_steps=2, logging_steps=1)
    assert straight.metrics["resumed_from_step"] == 0 and resumed.metrics["resumed_from_step"] == 2
    assert (checkpoints / "checkpoint-4" / COMPLETE_MARKER).exists()
    assert resumed.metrics["loss_curve"] == straight.metrics["loss_curve"]
    a, b = (
        load_file(tmp_path / "straight" / "model" / "model.safetensors"),
        load_file(out / "model" / "model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def strip_chat_template(model_dir: Path, out: Path) -> Path:
    shutil.copytree(model_dir, out)
    for name in ("chat_template.jinja",):
        (out / name).unlink(missing_ok=True)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


def test_a_base_model_gets_the_configured_template_and_stops_on_its_end_token(tmp_path, tiny_llama_sp) -> None:
    bare = strip_chat_template(tiny_llama_sp, tmp_path / "bare")
    tokenizer, model = AutoTokenizer.from_pretrained(bare), AutoModelForCausalLM.from_pretrained(bare)
    assert tokenizer.chat_template is None
    with pytest.raises(LangadaptError, match="no chat template — set chat_template: chatml"):
        ensure_chat_template(model, tokenizer, None)
    rows = model.get_input_embeddings().weight.shape[0]
    assert ensure_chat_template(model, tokenizer, "chatml") == ["<|im_start|>", "<|im_end|>"]
    assert model.get_input_embeddings().weight.shape[0] == rows + 2 == len(tokenizer)

    run = train_sft(bare, bare, tmp_path / "chatml", max_steps=2, chat_template="chatml")
    report = check_model_folder(run.out / "model", require_chat_template=True)
    assert report.ok, report.errors
    end = AutoTokenizer.from_pretrained(run.out / "model").convert_tokens_to_ids("<|im_end|>")
    assert report.facts["chat_end_token"] == "<|im_end|>" and end in report.facts["generation_eos_token_id"]
    assert run.metrics["chat_tokens_added"] == ["<|im_start|>", "<|im_end|>"] and run.metrics["train_embeddings"]


def test_a_tokenizer_longer_than_the_embeddings_is_refused(tmp_path, tiny_llama) -> None:
    folder = tmp_path / "mismatch"
    shutil.copytree(tiny_llama, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_tokens(["gehiegizko", "hitzak"])
    tokenizer.save_pretrained(folder)
    with pytest.raises(LangadaptError, match=r"has 602 tokens but the model has 600 embedding rows"):
        train_sft(folder, folder, tmp_path / "out", max_steps=1)
    assert not (tmp_path / "out").exists()


@pytest.mark.smollm2
def test_smollm2_calibration_ends_in_a_checked_standalone_model(tmp_path, smollm2_dir, basque_texts) -> None:
    from langadapt.train.copy_task import copy_task_conversations

    conversations, _ = copy_task_conversations(basque_texts[:200], count=8, sentence_share=1.0, language="eu", seed=0)
    run = train_sft(smollm2_dir, smollm2_dir, tmp_path / "smol", conversations=conversations, max_steps=2,
                    batch_size=2, max_length=128, learning_rate=1e-4)
    report = check_model_folder(run.out / "model", require_chat_template=True)
    assert report.ok, report.errors
    assert report.facts["chat_end_token"] == "<|im_end|>" and not run.metrics["train_embeddings"]
    assert (run.out / "adapter" / "adapter_model.safetensors").exists()


def test_a_file_with_no_usable_answer_is_an_error(tmp_path) -> None:
    from langadapt.train.config import SftConfig
    from langadapt.train.sft import gather_sft_data

    path = tmp_path / "empty.jsonl"
    path.write_text('{"instruction": "Esan zerbait", "output": " "}\n{"instruction": "Zer?", "output": ""}\n')
    with pytest.raises(LangadaptError, match="no SFT example survived loading and filtering"):
        gather_sft_data(SftConfig(data=[path]), language="eu", seed=0, corpus_texts=None, original_model="unused",
                        trust_remote_code=False, data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
