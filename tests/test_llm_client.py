"""The one chat-completions client, against a real HTTP server on loopback started by each test."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from langadapt.config import ConfigError, validate_config
from langadapt.errors import LangadaptError
from langadapt.llm_client import ChatClient, EndpointSettings, _retry_after, is_loopback
from tests.openai_server import fake_server, last_user_text

FAST = {"model": "m", "timeout_seconds": 2.0, "max_retries": 2, "backoff_seconds": 0.01, "concurrency": 2}
SECRET = "sk-test-" + "x" * 24


def client_for(url: str, **settings: object) -> ChatClient:
    return ChatClient(EndpointSettings(url=url, **{**FAST, **settings}))


def test_reply_usage_and_key_only_in_the_header(monkeypatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", SECRET)
    with fake_server(reply=lambda body: f"[{body['temperature']}] " + last_user_text(body).upper()) as server:
        with client_for(server.url, api_key_env="TEST_LLM_KEY") as client:
            reply = client.chat([{"role": "user", "content": "kaixo mundua"}], temperature=0)
            assert SECRET not in repr(client)
        assert reply.text == "[0] KAIXO MUNDUA"
        assert (reply.tokens_in, reply.tokens_out) == (2, 3)
        assert client.counters.to_dict() == {"requests": 1, "retries": 0, "failures": 0,
                                             "tokens_in": 2, "tokens_out": 3}
        assert server.headers[0]["Authorization"] == f"Bearer {SECRET}"
        assert server.bodies[0] == {"model": "m", "temperature": 0,
                                    "messages": [{"role": "user", "content": "kaixo mundua"}]}


def test_keyless_server_gets_no_authorization_header() -> None:
    with fake_server() as server, client_for(server.url) as client:
        assert client.chat([{"role": "user", "content": "a"}]).text == "echo: a"
    assert "Authorization" not in server.headers[0]


def test_429_then_success_is_one_retry() -> None:
    with fake_server(script=["429"]) as server, client_for(server.url) as client:
        assert client.chat([{"role": "user", "content": "b"}]).text == "echo: b"
    assert (client.counters.requests, client.counters.retries, client.counters.failures) == (2, 1, 0)


def test_persistent_500_fails_after_the_retries_naming_the_url_not_the_key(monkeypatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", SECRET)
    with (fake_server(script=["500"] * 10) as server, client_for(server.url, api_key_env="TEST_LLM_KEY") as client,
          pytest.raises(LangadaptError) as caught):
        client.chat([{"role": "user", "content": "c"}])
    message = str(caught.value)
    assert server.url in message and "HTTP 500" in message and "3 attempt(s)" in message and SECRET not in message
    assert "\n" not in message
    assert (client.counters.requests, client.counters.retries, client.counters.failures) == (3, 2, 1)


def test_a_timeout_is_retried() -> None:
    with fake_server(script=["sleep:1.0"]) as server, client_for(server.url, timeout_seconds=0.2) as client:
        assert client.chat([{"role": "user", "content": "d"}]).text == "echo: d"
    assert (client.counters.requests, client.counters.retries) == (2, 1)


def test_a_malformed_body_is_retried_then_fails() -> None:
    with (fake_server(script=["malformed"] * 5) as server, client_for(server.url, max_retries=1) as client,
          pytest.raises(LangadaptError, match="malformed body")):
        client.chat([{"role": "user", "content": "e"}])
    assert (client.counters.requests, client.counters.failures) == (2, 1)


def test_401_fails_at_once_with_a_hint(monkeypatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", SECRET)
    with (fake_server(script=["401"]) as server, client_for(server.url, api_key_env="TEST_LLM_KEY") as client,
          pytest.raises(LangadaptError, match="HTTP 401 — check the key in TEST_LLM_KEY")):
        client.chat([{"role": "user", "content": "f"}])
    assert (client.counters.requests, client.counters.retries, client.counters.failures) == (1, 0, 1)


def test_an_unreachable_endpoint_is_one_line() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with client_for(f"http://127.0.0.1:{port}/v1", max_retries=1) as client, pytest.raises(LangadaptError) as caught:
        client.chat([{"role": "user", "content": "g"}])
    assert "cannot connect" in str(caught.value) and f"127.0.0.1:{port}" in str(caught.value)


def test_chat_all_bounds_concurrency_and_yields_every_reply() -> None:
    with fake_server(script=["sleep:0.2"] * 6) as server, client_for(server.url, concurrency=3) as client:
        started = time.perf_counter()
        replies = dict(client.chat_all([[{"role": "user", "content": str(i)}] for i in range(6)]))
        seconds = time.perf_counter() - started
    assert {i: r.text for i, r in replies.items()} == {i: f"echo: {i}" for i in range(6)}
    assert server.max_in_flight == 3  # three requests were open at once: the parallelism itself
    assert seconds < 0.2 * 6  # faster than one at a time, with room for a loaded machine (CI runs 2 workers)


def test_chat_all_yields_what_succeeded_then_raises() -> None:
    def reply(body: dict) -> str:
        return "ok " + last_user_text(body)

    got = []
    with (
        fake_server(reply=reply, script=["ok", "500", "500", "500"]) as server,
        client_for(server.url, concurrency=1, max_retries=2) as client,
        pytest.raises(LangadaptError, match="HTTP 500"),
    ):
        for index, answer in client.chat_all([[{"role": "user", "content": str(i)}] for i in range(5)]):
            got.append((index, answer.text))
    assert got == [(0, "ok 0")]
    assert len(server.bodies) == 4  # nothing sent after the failure


def test_key_over_plain_http_only_to_loopback(monkeypatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", SECRET)
    with pytest.raises(LangadaptError) as caught:
        client_for("http://api.example.com/v1", api_key_env="TEST_LLM_KEY")
    assert "refusing to send the key" in str(caught.value) and SECRET not in str(caught.value)
    for url in ("https://api.example.com/v1", "http://localhost:8000/v1", "http://127.0.0.2:1/v1", "http://[::1]:8/v1"):
        client_for(url, api_key_env="TEST_LLM_KEY").close()
    client_for("http://api.example.com/v1").close()  # no key: nothing to protect


def test_missing_key_variable_is_one_line(monkeypatch) -> None:
    monkeypatch.delenv("TEST_LLM_KEY", raising=False)
    with pytest.raises(LangadaptError, match="TEST_LLM_KEY, which is not set"):
        client_for("https://api.example.com/v1", api_key_env="TEST_LLM_KEY")


def test_settings_refuse_credentials_in_the_url() -> None:
    with pytest.raises(ValueError, match="credentials"):
        EndpointSettings(url="https://user:pw@api.example.com/v1", model="m")
    with pytest.raises(ValueError, match="http"):
        EndpointSettings(url="ftp://x/v1", model="m")


def test_a_key_written_into_a_config_is_refused(tmp_path) -> None:
    data = {"name": "t", "output_dir": str(tmp_path), "target_language": "eu", "models": {"base": "builtin:x"},
            "data": {"sources": {}}, "translate": {"backend": {"kind": "endpoint", "url": "https://a/v1", "model": "m",
                                                              "api_key_env": SECRET}}}
    with pytest.raises(ConfigError, match=r"translate\.backend\.api_key_env' holds what looks like an access token"):
        validate_config(data, base_dir=tmp_path)


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("localhost", "127.0.0.1", "127.9.9.9", "::1", "[::1]", "LOCALHOST."))
    assert not any(is_loopback(h) for h in ("10.0.0.1", "example.com", "128.0.0.1", "localhost.example.com"))


def test_retry_after_seconds_and_dates() -> None:
    assert _retry_after("3") == 3.0 and _retry_after(None) is None and _retry_after("soon") is None
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 < (_retry_after(later) or 0) <= 30


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    client = ChatClient(
        EndpointSettings(url="http://127.0.0.1:1/v1", model="m", backoff_seconds=1.0, max_backoff_seconds=5)
    )
    delays = [client._delay(2, None) for _ in range(200)]
    assert min(delays) >= 2.0 and max(delays) <= 4.0 and max(delays) - min(delays) > 0.5
    assert all(2.5 <= client._delay(6, None) <= 5 for _ in range(50))
    assert client._delay(0, 100.0) == 5 and client._delay(0, 0.5) == 0.5
