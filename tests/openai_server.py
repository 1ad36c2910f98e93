"""A minimal OpenAI-compatible chat-completions server on loopback, started by the tests that need one.

It answers `POST /v1/chat/completions` with `reply(body)` and scripted failures: each entry of `script` is
used for one request, in order (then every request is answered normally)::

    "ok"            the reply, with usage tokens
    "429", "500"... that status (429 with `Retry-After: 0`)
    "sleep:1.5"     wait 1.5 s, then answer (a client with a shorter timeout gives up first)
    "malformed"     200 with a body that is not a chat completion
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def last_user_text(body: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 drops connections a concurrent client opens at once


class FakeChatServer:
    def __init__(self, reply: Callable[[dict[str, Any]], str] | None = None, script: list[str] | None = None,
                 *, delay_after: int | None = None, delay_seconds: float = 30.0):
        self.reply = reply or (lambda body: "echo: " + last_user_text(body))
        self.script = list(script or [])
        self.delay_after, self.delay_seconds = delay_after, delay_seconds  # stall every request after the Nth
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.answered = 0
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_action(self, body: dict[str, Any], headers: dict[str, str]) -> str:
        with self._lock:
            self.bodies.append(body)
            self.headers.append(headers)
            action = self.script.pop(0) if self.script else "ok"
            if self.delay_after is not None and len(self.bodies) > self.delay_after:
                action = f"sleep:{self.delay_seconds}"
            return action

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": "not found"})
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                action = server._next_action(body, dict(self.headers))
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                self._open = True
                try:
                    self._answer(body, action)
                finally:
                    self._leave()

            def _leave(self) -> None:
                """The request stops counting as in flight before its reply is written: once the client
                has the reply it may send the next one, which must not overlap this one in the count."""
                if getattr(self, "_open", False):
                    self._open = False
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, body: dict[str, Any], action: str) -> None:
                if action.startswith("sleep:"):
                    time.sleep(float(action.split(":")[1]))
                    action = "ok"
                if action == "429":
                    self._send(429, {"error": "rate limited"}, {"Retry-After": "0"})
                elif action.isdigit():
                    self._send(int(action), {"error": "boom"})
                elif action == "malformed":
                    self._send(200, {"unexpected": True})
                else:
                    text = server.reply(body)
                    with server._lock:  # counted before the reply goes out, as in_flight is
                        server.answered += 1
                    self._send(200, {
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": len(last_user_text(body).split()),
                                  "completion_tokens": len(text.split())},
                    })

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self._leave()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)

        return Handler


@contextlib.contextmanager
def fake_server(**kwargs: Any) -> Iterator[FakeChatServer]:
    with FakeChatServer(**kwargs) as server:
        yield server
