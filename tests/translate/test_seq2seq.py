"""The seq2seq path end to end on tiny random MT models built from configs (Marian, NLLB), and each family's
language codes checked against the tokenizer's own vocabulary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from langadapt.errors import LangadaptError
from langadapt.translate.backends import make_backend
from langadapt.translate.core import run_translation
from tests.data.test_instruct import write_jsonl
from tests.translate.conftest import settings, short_pairs

LOOSE = {"language": False, "untranslated": False, "min_length_ratio": 0.001, "max_length_ratio": 1000,
         "max_repeats": 1000}


def reference_translations(model_dir: Path, texts: list[str], **generate: object) -> list[str]:
    """What the model itself generates for each text alone (greedy), decoded like the backend decodes."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
    outputs = []
    for text in texts:
        with torch.inference_mode():
            ids = model.generate(**tokenizer([text], return_tensors="pt"),
                                 **{"do_sample": False, "num_beams": 1, "max_new_tokens": 12, **generate})
        outputs.append(tokenizer.decode(ids[0], skip_special_tokens=True).strip())
    return outputs


def alpaca_file(folder: Path) -> Path:
    pairs = short_pairs(6)
    rows = [{"instruction": pairs[i]["en"], "input": "", "output": pairs[i + 1]["en"]} for i in range(0, 6, 2)]
    rows.append({"instruction": "Print {name} with `echo`.", "output": "Run: echo {name}"})  # masked spans
    rows.append({"instruction": "No output field here."})
    rows.append({"instruction": pairs[0]["en"], "output": pairs[1]["en"]})  # a repeat: all segments cached
    return write_jsonl(folder / "alpaca.jsonl", rows)


def test_marian_end_to_end_then_all_from_the_cache(tmp_path: Path, tiny_marian: Path) -> None:
    source = alpaca_file(tmp_path)
    config = settings({"kind": "seq2seq", "model": str(tiny_marian), "batch_size": 2, "max_new_tokens": 12},
                      datasets={"alpaca": str(source)}, filters=LOOSE)
    first_dir, second_dir = tmp_path / "one", tmp_path / "two"
    first_dir.mkdir(), second_dir.mkdir()
    cache = tmp_path / "cache.sqlite"
    first = run_translation(config, target="eu", out_dir=first_dir, cache_path=cache, progress=False)

    rows = [json.loads(line) for line in (first_dir / "alpaca.jsonl").read_text().splitlines()]
    sources = [json.loads(line) for line in source.read_text().splitlines()]
    plain = [sources[i] for i in (0, 1, 2, 5)]
    expected = reference_translations(tiny_marian, [r[k] for r in plain for k in ("instruction", "output")])
    assert [(r["instruction"], r["output"]) for r in rows] == list(zip(expected[::2], expected[1::2], strict=True))
    assert rows[0]["input"] == "" and rows[0]["provenance"] == {
        "source_row": "alpaca.jsonl:1", "backend": "seq2seq", "model": str(tiny_marian),
        "source_language": "en", "target_language": "eu"}
    dropped = [json.loads(line) for line in (first_dir / "alpaca.dropped.jsonl").read_text().splitlines()]
    # A random model cannot copy tags: the masked row fails the placeholder check; the broken row is counted.
    assert [(d["source_row"], d["reason"]) for d in dropped] == [("alpaca.jsonl:4", "placeholder_lost"),
                                                                 ("alpaca.jsonl:5", "missing_field")]
    report = first["datasets"]["alpaca"]
    assert report == {"file": str(source), "format": "alpaca", "rows_in": 6, "rows_out": 4,
                      "dropped": {"missing_field": 1, "placeholder_lost": 1}}
    segments = first["segments"]  # 3 rows x 2 fields + the masked row's 2; the repeated row costs nothing
    assert segments["cached"] == 0 and segments["translated"] == 8
    assert first["backend"]["calls"] == 4  # 8 segments in batches of 2
    assert first["backend"]["tokens_in"] > 0 and first["backend"]["tokens_out"] > 0

    second = run_translation(config, target="eu", out_dir=second_dir, cache_path=cache, progress=False)
    assert second["segments"]["translated"] == 0 and second["segments"]["cached"] == 8
    assert second["backend"]["calls"] == 0 and second["backend"]["tokens_in"] == 0
    assert (second_dir / "alpaca.jsonl").read_text() == (first_dir / "alpaca.jsonl").read_text()


def test_beam_search_is_a_different_cache_entry(tmp_path: Path, tiny_marian: Path) -> None:
    question = short_pairs(1)[0]["en"]
    source = write_jsonl(tmp_path / "qa.jsonl", [{"question": question, "answer": "Yes, it is."}])
    cache = tmp_path / "cache.sqlite"
    for beams, out in ((1, tmp_path / "greedy"), (3, tmp_path / "beam")):
        out.mkdir()
        config = settings({"kind": "seq2seq", "model": str(tiny_marian), "num_beams": beams, "max_new_tokens": 12},
                          datasets={"qa": str(source)}, filters=LOOSE)
        metrics = run_translation(config, target="eu", out_dir=out, cache_path=cache, progress=False)
        assert metrics["segments"]["translated"] == 2  # nothing reused across decoding settings
    beam = json.loads((tmp_path / "beam" / "qa.jsonl").read_text())
    assert beam["question"] == reference_translations(tiny_marian, [question], num_beams=3)[0]


def test_marian_languages(tiny_marian: Path, tiny_marian_multi: Path) -> None:
    pair = make_backend(settings({"kind": "seq2seq", "model": str(tiny_marian)}).backend)
    pair.check_languages("en", "eu")
    pair.check_languages("eng", "eus")
    with pytest.raises(LangadaptError, match="translates en -> eu, not en -> lt"):
        pair.check_languages("en", "lt")
    from langadapt.translate.stages import preflight_settings

    source = write_jsonl(tiny_marian.parent / "one.jsonl", [{"question": "Is it?", "answer": "Yes."}])
    round_trip = settings({"kind": "seq2seq", "model": str(tiny_marian)}, datasets={"q": str(source)}, round_trip={})
    with pytest.raises(LangadaptError, match="translates en -> eu, not eu -> en"):
        preflight_settings(round_trip, "eu")  # the way back needs a model that translates eu -> en
    multi = make_backend(settings({"kind": "seq2seq", "model": str(tiny_marian_multi)}).backend)
    assert multi.setup("en", "eu").prefix == ">>eus<< "
    with pytest.raises(LangadaptError, match="has no language 'ru' — it knows: eus, lit"):
        multi.check_languages("en", "ru")


def _spm(folder: Path) -> Path:
    import sentencepiece as spm

    from tests import tiny

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.txt").write_text("\n".join(tiny.texts("en", limit=200)), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(folder / "corpus.txt"), model_prefix=str(folder / "sp"), vocab_size=300,
                                   model_type="unigram", minloglevel=2)
    return folder / "sp.model"


@pytest.fixture(scope="module")
def tiny_nllb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random NLLB-style model (M2M100 architecture + NllbTokenizer with the FLORES-200 codes)."""
    import torch
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    root = tmp_path_factory.mktemp("nllb")
    tokenizer = NllbTokenizer(vocab_file=str(_spm(root / "spm")))
    config = M2M100Config(vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                          max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                          eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    M2M100ForConditionalGeneration(config).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root / "model"


def test_nllb_codes_and_a_forced_target_token(tmp_path: Path, tiny_nllb: Path) -> None:
    from transformers import AutoTokenizer

    backend = make_backend(settings({"kind": "seq2seq", "model": str(tiny_nllb), "max_new_tokens": 12}).backend)
    assert backend.family == "nllb"
    vocab = AutoTokenizer.from_pretrained(tiny_nllb).get_vocab()
    setup = backend.setup("en", "eu")
    assert (setup.src_lang, setup.forced_bos_token_id) == ("eng_Latn", vocab["eus_Latn"])
    assert backend.setup("en", "lv").forced_bos_token_id == vocab["lvs_Latn"]  # FLORES' individual language
    assert backend.setup("en", "zho_Hant").forced_bos_token_id == vocab["zho_Hant"]
    with pytest.raises(LangadaptError, match=r"nllb model .* has no language 'xx'"):
        backend.check_languages("en", "xx")
    text = short_pairs(1)[0]["en"]
    translated = dict(backend.translate([text], "en", "eu"))[0]
    assert translated == reference_translations(tiny_nllb, [text], forced_bos_token_id=vocab["eus_Latn"])[0]


def test_m2m100_has_no_basque(tmp_path: Path) -> None:
    from transformers import M2M100Tokenizer

    spm_file = _spm(tmp_path / "spm")
    vocab = {line.split("\t")[0]: i for i, line in enumerate(spm_file.with_suffix(".vocab").read_text().splitlines())}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    M2M100Tokenizer(vocab_file=str(tmp_path / "vocab.json"), spm_file=str(spm_file)).save_pretrained(tmp_path / "tok")
    shutil.rmtree(tmp_path / "spm")
    backend = make_backend(settings({"kind": "seq2seq", "model": str(tmp_path / "tok"), "family": "m2m100"}).backend)
    assert backend.setup("en", "lt").src_lang == "en"
    with pytest.raises(LangadaptError, match=r"m2m100 model .* has no language 'eu' — it knows: af, am, ar"):
        backend.check_languages("en", "eu")
