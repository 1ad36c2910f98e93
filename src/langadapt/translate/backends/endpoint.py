"""An OpenAI-compatible chat-completions endpoint as a translator (vLLM, llama.cpp server, TGI, a hosted API).

Each segment is one request (bounded concurrency, retries and key handling are the shared client's); the
prompt template is the config's. A failure after the retries stops the run with one line: everything that
came back before it is already in the cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langadapt.data.langid import language_name
from langadapt.llm_client import ChatClient
from langadapt.translate.backends import Backend, fill
from langadapt.translate.config import EndpointBackendConfig


class EndpointBackend(Backend):
    kind = "endpoint"
    settings: EndpointBackendConfig

    def __init__(self, settings: EndpointBackendConfig):
        super().__init__(settings)
        self.client = ChatClient(settings)  # checks the key variable and the http/loopback rule now

    def translate(self, texts: list[str], source: str, target: str) -> Iterator[tuple[int, str]]:
        names = {"source_language": language_name(source), "target_language": language_name(target)}
        system = [{"role": "system", "content": fill(self.settings.system, **names)}] if self.settings.system else []
        conversations = [
            [*system, {"role": "user", "content": fill(self.settings.prompt, text=text, **names)}] for text in texts
        ]
        try:
            for index, reply in self.client.chat_all(
                conversations, temperature=self.settings.temperature, max_tokens=self.settings.max_tokens
            ):
                yield index, reply.text.strip()
        finally:
            counters = self.client.counters
            self.usage.calls, self.usage.tokens_in, self.usage.tokens_out = (
                counters.requests, counters.tokens_in, counters.tokens_out)

    def metrics(self) -> dict[str, Any]:
        counters = self.client.counters
        return {**super().metrics(), "requests": counters.requests, "retries": counters.retries,
                "failures": counters.failures}

    def close(self) -> None:
        self.client.close()


BACKEND = EndpointBackend
