"""DaruCopy metrics on constructed cases, and the generation loop on the tiny instruct model."""

from __future__ import annotations

import copy as pycopy

import pytest

from langadapt.errors import LangadaptError
from langadapt.evaluate.darucopy import copy_task, lcs_ratio, lcs_score, length_score
from langadapt.evaluate.generation import Generation, GenerationRun, generate_greedy
from tests.conftest import INSTRUCT_REPLY
from tests.tiny import greedy_reply


def test_length_score_is_the_symmetric_ratio_with_a_cap() -> None:
    assert length_score(10, 20) == 0.5
    assert length_score(20, 10) == 0.5
    assert length_score(7, 7) == 1.0
    assert length_score(128, 300) == 1.0  # s = min(300, 128)
    assert length_score(64, 300) == 0.5
    assert length_score(30, 300, cap=40) == 0.75
    assert length_score(0, 10) == 0.0


def test_lcs_ratio_counts_matching_characters_over_the_prediction() -> None:
    reference = (
        "Diagrama bat sor dezakezu datu-iturburutik Calc kalkulu-orri batean edo Writerreko taula batean. "
        "Diagrama datuen dokumentu berean txertatuta dagoenean, datuei estekatuta egoten da, eta, beraz, "
        "diagrama automatikoki eguneratzen da."
    )
    assert lcs_ratio(reference, reference) == 1.0
    assert lcs_ratio("  " + reference + "\n", reference) == 1.0  # both sides stripped
    assert lcs_ratio(reference[:50], reference) == 1.0  # a truncated copy passes, as in llmtf
    assert lcs_ratio("abcX", "abcd") == 0.75
    assert lcs_ratio("", reference) == 0.0
    text = reference.strip()
    one_typo = text[:100] + "#" + text[101:]
    three_typos = "#" + text[1:50] + "#" + text[51:100] + "#" + text[101:]
    assert lcs_ratio(one_typo, text) == pytest.approx((len(text) - 1) / len(text))
    assert lcs_score(one_typo, text) == 1.0  # 1 wrong in 230 characters: ratio 0.996
    assert lcs_score(three_typos, text) == 0.0  # 3 wrong: ratio 0.987 < 0.99
    assert lcs_score(text + " eta gehiago idatzi zuen ereduak", text) == 0.0  # added text counts against


def test_generation_matches_a_plain_generate_call(instruct, tiny_instruct_pair, basque_dev_texts) -> None:
    model, tokenizer = instruct
    prompts = [text[:60] for text in basque_dev_texts[:5]]
    run = generate_greedy(model, tokenizer, prompts, max_new_tokens=20, chat_template=True, batch_size=3)
    assert [g.text for g in run.outputs] == [greedy_reply(tiny_instruct_pair.instruct, p) for p in prompts]
    reply_tokens = len(tokenizer(INSTRUCT_REPLY, add_special_tokens=False)["input_ids"])
    assert all(g.text == INSTRUCT_REPLY and g.tokens == reply_tokens and g.stopped for g in run.outputs)
    # Two batches (3 + 2 prompts), each as wide as its longest answer (+ the EOS step): one stream's speed.
    assert run.steps == 2 * (reply_tokens + 1) and run.batches == 2
    assert 0 < run.prefill_seconds < run.seconds  # each batch's time to its first token, kept apart
    words_per_token = len(INSTRUCT_REPLY.split()) / reply_tokens
    decode_speed = (run.steps - 2) / (run.seconds - run.prefill_seconds)
    assert run.words_per_second == pytest.approx(decode_speed * words_per_token)


def test_stream_speed_does_not_depend_on_how_early_stops_line_up_in_a_batch() -> None:
    """Ten words in five tokens, 100 decode steps in 2 s: 50 steps/s × 2 words/token, however many answers."""
    one = GenerationRun([Generation("p", "a b c d e f g h i j", 5, True)], seconds=2.0, steps=100)
    many = GenerationRun([Generation("p", "a b", 1, True)] * 5, seconds=2.0, steps=100)
    assert one.tokens_per_second == many.tokens_per_second == 50.0
    assert one.words_per_second == many.words_per_second == 100.0
    # Reading the prompt is not generating: 1 s to the first token of each of 2 batches, then 100 steps in 2 s.
    read = GenerationRun([Generation("p", "a b c d e f g h i j", 5, True)], seconds=4.0, steps=102,
                         prefill_seconds=2.0, batches=2)
    assert read.tokens_per_second == 50.0 and read.words_per_second == 100.0


def test_copy_task_scores_the_models_outputs(instruct) -> None:
    model, tokenizer = instruct  # answers every user turn with INSTRUCT_REPLY
    reference = "Hemen dago testu luzeagoa, hitz askorekin idatzia, kopiatu beharrekoa zehazki."
    ref_tokens = len(tokenizer(reference, add_special_tokens=False)["input_ids"])
    reply_tokens = len(tokenizer(INSTRUCT_REPLY, add_special_tokens=False)["input_ids"])

    sentence = copy_task(model, tokenizer, [INSTRUCT_REPLY, reference], kind="sentence", language="eu",
                         max_new_tokens=24)
    assert [item["prediction"] for item in sentence.items] == [INSTRUCT_REPLY, INSTRUCT_REPLY]
    assert sentence.items[0]["score"] == 1.0
    s = min(ref_tokens, 24)  # the reference length is capped at the generation budget
    assert ref_tokens > 24 and sentence.items[1]["score"] == pytest.approx(min(reply_tokens / s, s / reply_tokens))
    assert sentence.score == pytest.approx((1.0 + sentence.items[1]["score"]) / 2)
    assert sentence.exact == 0.5
    assert sentence.chars_per_generated_token == pytest.approx(len(INSTRUCT_REPLY) / reply_tokens)
    # One decode speed, two texts: what it wrote (the reply, twice) and what it was asked to write.
    written = len(INSTRUCT_REPLY.split()) / reply_tokens
    asked = (len(INSTRUCT_REPLY.split()) + len(reference.split())) / (reply_tokens + ref_tokens)
    assert sentence.reference_words_per_second == pytest.approx(sentence.words_per_second * asked / written)

    paragraph = copy_task(model, tokenizer, [INSTRUCT_REPLY + " Eta beste esaldi bat.", reference],
                          kind="paragraph", max_new_tokens=24)
    assert [item["score"] for item in paragraph.items] == [1.0, 0.0]  # a truncated copy passes


def test_chat_template_is_required_when_asked(instruct) -> None:
    model, tokenizer = instruct
    bare = pycopy.deepcopy(tokenizer)
    bare.chat_template = None
    with pytest.raises(LangadaptError, match="has no chat template"):
        copy_task(model, bare, ["kaixo"], kind="sentence")


def test_plain_prompts_end_at_a_blank_line(llama, basque_dev_texts) -> None:
    model, tokenizer = llama  # a base model: no chat template is applied
    run = generate_greedy(model, tokenizer, basque_dev_texts[:3], max_new_tokens=12, chat_template=False)
    for output in run.outputs:
        assert "\n\n" not in output.text and 0 <= output.tokens <= 12


def test_a_copy_task_limited_to_some_models_skips_the_others() -> None:
    from langadapt.evaluate.darucopy import CopyTask, CopyTaskConfig
    from langadapt.evaluate.tasks import EvalModel, ModelSpec

    setting = {"s": CopyTaskConfig(kind="sentence", path="x.jsonl", models=["base"])}
    other = EvalModel(ModelSpec("cpt", "unused", True), None, None, None, "eu")  # never touched when skipped
    output = CopyTask().run(setting, {"s": ["Kaixo mundua."]}, other)
    assert output.report == {} and output.headline == {}
