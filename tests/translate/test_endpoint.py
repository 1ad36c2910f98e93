"""The endpoint path against a real OpenAI-compatible server on loopback that answers with the real Basque side
of English-Basque pairs: success, retries (429, timeout, malformed body), failures, the cache on re-run, and a
run killed with SIGKILL that resumes without asking again for what it had."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from langadapt.errors import LangadaptError
from langadapt.translate.core import run_translation
from tests.data.test_instruct import write_jsonl
from tests.openai_server import fake_server, last_user_text
from tests.test_cli import assert_one_line_error
from tests.translate.conftest import settings, short_pairs

ROWS = 10


@pytest.fixture
def alpaca(tmp_path: Path) -> Path:
    pairs = short_pairs(2 * ROWS)
    return write_jsonl(tmp_path / "alpaca-en.jsonl", [
        {"instruction": pairs[2 * i]["en"], "input": "", "output": pairs[2 * i + 1]["en"]} for i in range(ROWS)])


def translator(en_eu: dict[str, str]):
    return lambda body: en_eu[last_user_text(body)]


def endpoint(url: str, **values: object) -> dict:
    return {"kind": "endpoint", "url": url, "model": "mt", "prompt": "{text}", "backoff_seconds": 0.01,
            "max_retries": 2, "timeout_seconds": 5, **values}


def run(url: str, alpaca: Path, out: Path, cache: Path, **backend: object) -> dict:
    out.mkdir()
    config = settings(endpoint(url, **backend), datasets={"alpaca": str(alpaca)})
    return run_translation(config, target="eu", out_dir=out, cache_path=cache, progress=False)


def cached_sources(cache: Path) -> set[str]:
    try:
        with sqlite3.connect(cache) as db:
            return {row[0] for row in db.execute("SELECT source FROM segments")}
    except sqlite3.OperationalError:  # a starting process has created the file but not the table yet
        return set()


def test_success_then_a_rerun_sends_nothing(tmp_path: Path, alpaca: Path, en_eu: dict[str, str], monkeypatch) -> None:
    secret = "sk-translate-" + "k" * 24
    monkeypatch.setenv("MT_KEY", secret)
    cache = tmp_path / "cache.sqlite"
    with fake_server(reply=translator(en_eu)) as server:
        metrics = run(server.url, alpaca, tmp_path / "one", cache, concurrency=3, api_key_env="MT_KEY")
    assert server.headers[0]["Authorization"] == f"Bearer {secret}"
    assert secret not in json.dumps(metrics) and secret.encode() not in cache.read_bytes()
    rows = [json.loads(line) for line in (tmp_path / "one" / "alpaca.jsonl").read_text().splitlines()]
    sources = [json.loads(line) for line in alpaca.read_text().splitlines()]
    assert [(r["instruction"], r["output"]) for r in rows] == [
        (en_eu[s["instruction"]], en_eu[s["output"]]) for s in sources
    ]
    assert metrics["datasets"]["alpaca"]["rows_out"] == ROWS and metrics["dropped"] == {}  # real Basque passes
    assert metrics["backend"] | {"tokens_in": 0, "tokens_out": 0} == {
        "kind": "endpoint", "model": "mt", "calls": 2 * ROWS, "requests": 2 * ROWS, "retries": 0, "failures": 0,
        "tokens_in": 0, "tokens_out": 0}
    assert metrics["backend"]["tokens_in"] == sum(
        len(s.split()) for r in sources for s in (r["instruction"], r["output"])
    )
    assert all(b["messages"] == [{"role": "user", "content": last_user_text(b)}] and b["temperature"] == 0
               for b in server.bodies)

    with fake_server(reply=translator(en_eu)) as again:
        second = run(again.url, alpaca, tmp_path / "two", cache, api_key_env="MT_KEY")
    assert again.bodies == [] and second["segments"] == {**second["segments"], "translated": 0, "cached": 2 * ROWS}
    assert (tmp_path / "two" / "alpaca.jsonl").read_text() == (tmp_path / "one" / "alpaca.jsonl").read_text()


def test_429_timeout_and_malformed_bodies_are_retried(tmp_path: Path, alpaca: Path, en_eu: dict[str, str]) -> None:
    with fake_server(reply=translator(en_eu), script=["429", "sleep:1.0", "malformed"]) as server:
        metrics = run(server.url, alpaca, tmp_path / "out", tmp_path / "c.sqlite", concurrency=1, timeout_seconds=0.3,
                      max_retries=3)  # one segment meets all three
    assert metrics["backend"]["retries"] == 3 and metrics["backend"]["requests"] == 2 * ROWS + 3
    assert metrics["backend"]["failures"] == 0 and metrics["datasets"]["alpaca"]["rows_out"] == ROWS


def test_a_persistent_500_stops_the_run_and_keeps_what_came_back(tmp_path: Path, alpaca: Path,
                                                                  en_eu: dict[str, str]) -> None:
    cache = tmp_path / "cache.sqlite"
    with (fake_server(reply=translator(en_eu), script=["ok"] * 3 + ["500"] * 10) as server,
          pytest.raises(LangadaptError) as caught):
        run(server.url, alpaca, tmp_path / "one", cache, concurrency=1, max_retries=1)
    assert f"{server.url}/chat/completions failed after 2 attempt(s): HTTP 500" in str(caught.value)
    before = cached_sources(cache)
    assert len(before) == 3
    with fake_server(reply=translator(en_eu)) as healthy:
        metrics = run(healthy.url, alpaca, tmp_path / "two", cache)
    assert len(healthy.bodies) == 2 * ROWS - 3 and metrics["segments"]["cached"] == 3
    assert not {last_user_text(b) for b in healthy.bodies} & before


def cli_config(tmp_path: Path, url: str, **backend: object) -> Path:
    path = tmp_path / "translate.yaml"
    path.write_text(json.dumps({"target_language": "eu", "translate": {"backend": endpoint(url, **backend)}}))
    return path


def test_a_run_killed_midway_resumes_without_asking_again(tmp_path: Path, alpaca: Path, en_eu: dict[str, str]) -> None:
    cache = tmp_path / "cache.sqlite"
    with fake_server(reply=translator(en_eu), delay_after=6, delay_seconds=60) as server:
        command = [sys.executable, "-m", "langadapt.cli", "translate", str(alpaca), "--out", str(tmp_path / "out"),
                   "--config", str(cli_config(tmp_path, server.url, concurrency=2)), "--cache", str(cache)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while (not cache.exists() or len(cached_sources(cache)) < 6) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)  # requests 7 and 8 are in flight, stalled by the server
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    done_before = cached_sources(cache)
    assert len(done_before) == 6 and not (tmp_path / "out").exists()
    with fake_server(reply=translator(en_eu)) as server:
        metrics = run(server.url, alpaca, tmp_path / "resumed", cache)
    asked = [last_user_text(b) for b in server.bodies]
    assert len(asked) == 2 * ROWS - 6 and not set(asked) & done_before
    assert metrics["datasets"]["alpaca"]["rows_out"] == ROWS


def test_an_unreachable_endpoint_is_one_line_and_keeps_the_cache(tmp_path: Path, alpaca: Path,
                                                                 en_eu: dict[str, str]) -> None:
    cache = tmp_path / "cache.sqlite"
    with fake_server(reply=translator(en_eu), script=["ok"] * 4 + ["500"] * 100) as server:
        url = server.url
        config = cli_config(tmp_path, url, concurrency=1, max_retries=0)
        command = [sys.executable, "-m", "langadapt.cli", "translate", str(alpaca), "--out", str(tmp_path / "out"),
                   "--config", str(config), "--cache", str(cache)]
        failed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert_one_line_error(failed, url, "failed after 1 attempt(s)")
    assert len(cached_sources(cache)) == 4 and not (tmp_path / "out").exists()
    gone = subprocess.run(command, capture_output=True, text=True, timeout=120)  # the server is shut down now
    assert_one_line_error(gone, url, "cannot connect")
    assert len(cached_sources(cache)) == 4


def test_round_trip_drops_rows_whose_back_translation_drifted(tmp_path: Path, alpaca: Path,
                                                              en_eu: dict[str, str]) -> None:
    eu_en = {eu: en for en, eu in en_eu.items()}
    sources = [json.loads(line) for line in alpaca.read_text().splitlines()]
    broken = en_eu[sources[3]["output"]]  # this one comes back as something else entirely

    def reply(body: dict) -> str:
        text = last_user_text(body)
        if text in en_eu:
            return en_eu[text]
        return "The weather is nice today and nobody is at work." if text == broken else eu_en[text]

    out = tmp_path / "out"
    out.mkdir()
    config = settings(endpoint("http://127.0.0.1:1/v1"), datasets={"alpaca": str(alpaca)}, round_trip={"min_chrf": 40})
    with fake_server(reply=reply) as server:
        config.backend.url = server.url
        metrics = run_translation(config, target="eu", out_dir=out, cache_path=tmp_path / "c.sqlite", progress=False)
    assert len(server.bodies) == 4 * ROWS  # there and back
    assert metrics["dropped"] == {"round_trip": 1} and metrics["segments"]["translated"] == 4 * ROWS
    dropped = json.loads((out / "alpaca.dropped.jsonl").read_text())
    assert dropped["source_row"] == "alpaca-en.jsonl:4" and dropped["reason"] == "round_trip"
