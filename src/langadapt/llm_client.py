"""The one HTTP client of langadapt for OpenAI-compatible chat-completions endpoints.

vLLM, llama.cpp's server, TGI and hosted APIs all speak `POST {url}/chat/completions`. The translation
backend and the LLM judges use this client; prompts are the callers' business. What it guarantees:

- the key is read from the environment variable the settings name, goes into the Authorization header and
  nowhere else (no error message, log line, repr or manifest holds it), and never travels over plain
  `http://` unless the host is loopback (127.0.0.0/8, ::1, localhost);
- 429, 5xx, timeouts, connection errors and malformed bodies are retried with exponential back-off and
  jitter (a server's `Retry-After` is honoured); other 4xx fail at once, with a hint for 401/403/404;
- a failure is one `LangadaptError` line naming the URL and the fix;
- counters of requests, retries, failures and usage tokens, safe to share between threads.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import os
import random
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx
from pydantic import Field, field_validator

from langadapt.errors import LangadaptError
from langadapt.schema import Section

log = logging.getLogger("langadapt.llm_client")

Message = dict[str, str]
JsonValue = str | int | float | bool | None | list[Any] | dict[str, Any]


class EndpointSettings(Section):
    """An OpenAI-compatible chat-completions endpoint. The key, if any, comes from an environment variable."""

    url: str = Field(description="API base URL, e.g. http://127.0.0.1:8000/v1 (…/chat/completions is appended)")
    model: str = Field(description="the model name the server expects")
    api_key_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable holding the API key; null for a keyless local server",
    )
    timeout_seconds: float = Field(default=60.0, gt=0, description="per request")
    max_retries: int = Field(
        default=5, ge=0, description="retries of a request after a 429/5xx/timeout/connection error"
    )
    concurrency: int = Field(default=4, ge=1, description="requests in flight")
    backoff_seconds: float = Field(default=1.0, ge=0, description="first retry delay; doubles each retry, with jitter")
    max_backoff_seconds: float = Field(default=60.0, ge=0, description="cap of one delay, Retry-After included")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expects an http(s) URL such as http://127.0.0.1:8000/v1, got {value!r}")
        if parts.username or parts.password or parts.query:
            raise ValueError("must not carry credentials or a query — put the key in the variable api_key_env names")
        return value.rstrip("/")


@dataclass
class ClientCounters:
    """What a client did: HTTP requests sent (retries included), retries, requests that finally failed, tokens."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    tokens_in: int = 0
    tokens_out: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class ChatReply:
    text: str
    tokens_in: int  # the server's usage.prompt_tokens (0 when it reports none)
    tokens_out: int  # usage.completion_tokens


def is_loopback(host: str) -> bool:
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Retryable(Exception):
    def __init__(self, problem: str, retry_after: float | None = None):
        super().__init__(problem)
        self.problem, self.retry_after = problem, retry_after


def read_key(settings: EndpointSettings) -> str | None:
    """The API key the settings name (None for a keyless server); one-line errors when it is missing or would
    travel over plain http to another machine. Preflights call it too, so `validate` fails the same way."""
    if settings.api_key_env is None:
        return None
    key = os.environ.get(settings.api_key_env)
    if not key:
        raise LangadaptError(
            f"the endpoint {settings.url} needs an API key in the environment variable {settings.api_key_env}, "
            "which is not set — export it, or set api_key_env: null for a keyless local server"
        )
    parts = urlsplit(settings.url)
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        raise LangadaptError(
            f"refusing to send the key in {settings.api_key_env} over plain http to {settings.url} — use "
            "https, or a server on this machine (127.0.0.1, ::1, localhost)"
        )
    return key


class ChatClient:
    """Chat completions against one endpoint; thread-safe (one connection pool, counters under a lock)."""

    def __init__(self, settings: EndpointSettings):
        self.settings = settings
        self.endpoint = settings.url + "/chat/completions"
        self.counters = ClientCounters()
        self._lock = threading.Lock()
        self._key = read_key(settings)
        host = urlsplit(settings.url).hostname or ""
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        self._http = httpx.Client(
            headers=headers, timeout=httpx.Timeout(settings.timeout_seconds),
            limits=httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency),
            trust_env=not is_loopback(host),  # a proxy from the environment must not intercept a local server
        )

    def __repr__(self) -> str:
        return f"ChatClient({self.endpoint!r}, model={self.settings.model!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def chat(self, messages: list[Message], **params: JsonValue) -> ChatReply:
        """The assistant's reply to `messages`; `params` (temperature, max_tokens, ...) go into the body."""
        body = {"model": self.settings.model, **params, "messages": messages}
        attempt = 0
        while True:
            try:
                reply = self._post(body)
            except _Retryable as exc:
                if attempt >= self.settings.max_retries:
                    self._count(failures=1)
                    raise LangadaptError(
                        f"the endpoint {self.endpoint} failed after {attempt + 1} attempt(s): {exc.problem} — check "
                        "that the server is up and serves model "
                        f"'{self.settings.model}', or raise timeout_seconds / max_retries"
                    ) from None
                delay = self._delay(attempt, exc.retry_after)
                log.debug("%s: %s; retry %d in %.2f s", self.endpoint, exc.problem, attempt + 1, delay)
                self._count(retries=1)
                time.sleep(delay)
                attempt += 1
                continue
            self._count(tokens_in=reply.tokens_in, tokens_out=reply.tokens_out)
            return reply

    def chat_all(self, conversations: Iterable[list[Message]], **params: JsonValue) -> Iterator[tuple[int, ChatReply]]:
        """(index, reply) of each conversation as it completes, at most `concurrency` requests in flight.

        On a failure nothing new is sent, the requests already in flight are still yielded when they succeed
        (a caller that caches them never pays for them again), then the first error is raised.
        """
        todo = iter(enumerate(conversations))
        error: LangadaptError | None = None
        with ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="llm") as pool:
            running: dict[Future[ChatReply], int] = {}

            def refill() -> None:
                while error is None and len(running) < self.settings.concurrency:
                    item = next(todo, None)
                    if item is None:
                        return
                    running[pool.submit(self.chat, item[1], **params)] = item[0]

            refill()
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    index = running.pop(future)
                    try:
                        reply = future.result()
                    except LangadaptError as exc:
                        error = error or exc
                        continue
                    yield index, reply
                refill()
        if error is not None:
            raise error

    # ----------------------------------------------------------------------------------------------------

    def _post(self, body: dict[str, Any]) -> ChatReply:
        self._count(requests=1)
        try:
            response = self._http.post(self.endpoint, json=body)
        except httpx.TimeoutException:
            raise _Retryable(f"no answer within {self.settings.timeout_seconds:g} s") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"cannot connect ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}", _retry_after(response.headers.get("retry-after")))
        if status >= 400:
            self._count(failures=1)
            hint = {
                401: f"check the key in {self.settings.api_key_env}",
                403: f"check the key in {self.settings.api_key_env}",
                404: "check the url (it ends before /chat/completions, e.g. …/v1) and the model name",
            }.get(status, "check the request parameters and the model name")
            raise LangadaptError(f"the endpoint {self.endpoint} refused the request: HTTP {status} — {hint}")
        try:
            payload = response.json()
            text = payload["choices"][0]["message"]["content"]
            if not isinstance(text, str):
                raise TypeError
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retryable("malformed body (no choices[0].message.content)") from None
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
        return ChatReply(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        cap = self.settings.max_backoff_seconds
        if retry_after is not None:
            return min(retry_after, cap)
        base = min(self.settings.backoff_seconds * 2**attempt, cap)
        return base / 2 + random.uniform(0, base / 2)  # "equal jitter": never less than half the back-off

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self.counters, name, getattr(self.counters, name) + value)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
