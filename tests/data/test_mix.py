"""Token-exact mixing: shares of training tokens, not of documents, on deliberately skewed sources."""

from __future__ import annotations

import numpy as np
import pytest

from langadapt.config import validate_config
from langadapt.data.mix import _apportion, plan_mixture, select_documents, token_targets
from langadapt.errors import ConfigError, LangadaptError


def test_apportion_sums_exactly() -> None:
    assert _apportion({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 100) == {"a": 34, "b": 33, "c": 33}
    assert sum(_apportion({"a": 0.8, "b": 0.2}, 1023).values()) == 1023


def test_without_a_budget_the_scarcest_source_is_used_exactly_once() -> None:
    shares, targets = token_targets({"target": 1000, "replay": 100_000}, {"target": 0.8, "replay": 0.2},
                                    total_tokens=None)
    assert targets == {"target": 1000, "replay": 250} and shares == {"target": 0.8, "replay": 0.2}
    natural, once = token_targets({"a": 300, "b": 100}, None, total_tokens=None, multiple=64)
    assert natural == {"a": 0.75, "b": 0.25} and once == {"a": 288, "b": 96}  # 384 = 6 blocks of 64


def test_too_many_repeats_are_refused_with_the_number() -> None:
    with pytest.raises(
        LangadaptError, match=r"'a' has 100 tokens but the mix asks for 500 .* 5.00 repeats, above pack.max_repeats=4"
    ):
        token_targets({"a": 100, "b": 10_000}, {"a": 0.5, "b": 0.5}, total_tokens=1000, max_repeats=4)
    with pytest.raises(LangadaptError, match="do not fill one block"):
        token_targets({"a": 10}, None, total_tokens=None, multiple=64)


def test_select_documents_hits_the_target_exactly() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 50, size=40)
    total = int(lengths.sum())
    for target in (1, 17, total - 1, total, total + 5, 3 * total + 11):
        docs, taken = select_documents(lengths, target, np.random.default_rng(1))
        assert taken.sum() == target
        assert (taken <= lengths[docs]).all() and (taken[:-1] == lengths[docs[:-1]]).all()  # only the last is cut
        passes, remainder = divmod(target, total)
        uses = np.bincount(docs, minlength=len(lengths))
        assert uses.min() >= passes and uses.max() <= passes + (remainder > 0)


def test_skewed_sources_get_their_token_share_not_their_document_share() -> None:
    rng = np.random.default_rng(0)
    lengths = {"long": rng.integers(400, 600, size=50), "short": rng.integers(3, 8, size=5000)}
    plan = plan_mixture(lengths, {"long": 0.8, "short": 0.2}, total_tokens=20_000, multiple=256, max_repeats=4, seed=0)
    total = 20_000 - 20_000 % 256
    assert plan.total == total
    for index, name in enumerate(plan.names):
        tokens = int(plan.pieces.length[plan.pieces.source == index].sum())
        assert tokens == plan.targets[name]
        assert abs(tokens / total - plan.requested[name]) <= 1 / total
    # by documents the short source dominates: an example-weighted mixer would have got this badly wrong
    documents = np.bincount(plan.pieces.source, minlength=2)
    assert documents[plan.names.index("short")] > 20 * documents[plan.names.index("long")]
    assert plan.repeats["long"] == round(plan.targets["long"] / lengths["long"].sum(), 4)


def test_plans_are_deterministic_per_seed() -> None:
    lengths = {"a": np.arange(1, 101), "b": np.arange(1, 51)}
    one, two, other = (plan_mixture(lengths, {"a": 0.5, "b": 0.5}, total_tokens=3000, multiple=1,
                                    max_repeats=4, seed=s) for s in (7, 7, 8))
    assert np.array_equal(one.pieces.doc, two.pieces.doc) and np.array_equal(one.pieces.source, two.pieces.source)
    assert not np.array_equal(one.pieces.doc, other.pieces.doc)


@pytest.mark.parametrize(
    ("mix", "needle"),
    [
        ({"a": 0.7, "b": 0.2}, "mix shares must sum to 1, they sum to 0.9"),
        ({"a": 1.2, "b": -0.2}, "must be ≥ 0"),
        ({}, "mix is empty"),
    ],
)
def test_bad_mixes_are_config_errors(tmp_path, mix: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        validate_config({"name": "m", "output_dir": str(tmp_path), "target_language": "eu", "models": {"base": "x/y"},
                         "data": {"sources": {"a": {"path": str(tmp_path)}}}, "pack": {"mix": mix}}, base_dir=tmp_path)
