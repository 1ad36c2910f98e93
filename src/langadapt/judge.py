"""An LLM judge: grades answers 1–5 through langadapt's one chat client (`llm_client`).

Self-calibration keeps the original model's answers the judge grades at or above a threshold; the generation
eval task reports the judge's mean grade. Both send the same prompt by default (any template with
{language}, {question} and {answer} can replace it), with the same retries, timeouts and key handling.
"""

from __future__ import annotations

import re

from pydantic import Field

from langadapt.data.langid import language_name
from langadapt.llm_client import ChatClient, EndpointSettings

JUDGE_PROMPT = (
    "You grade an assistant's answer, which must be written in {language}. Rate its grammar and fluency in that "
    "language and its relevance to the question on a scale from 1 (wrong language or unusable) to 5 (fluent, "
    "correct and relevant). Reply with the number only.\n\nQuestion:\n{question}\n\nAnswer:\n{answer}"
)
_GRADE = re.compile(r"[1-5]")


class JudgeConfig(EndpointSettings):
    """An OpenAI-compatible chat endpoint that grades answers 1-5; its key, if any, from an environment variable."""

    prompt: str | None = Field(
        default=None, description="grading prompt with {language}, {question} and {answer}; default: built-in"
    )


class Judge:
    """Grades (question, answer) pairs written in `language`; raises at construction when the key is missing."""

    def __init__(self, settings: JudgeConfig, language: str):
        self.settings = settings
        self.language = language_name(language)
        self.prompt = settings.prompt or JUDGE_PROMPT
        self.client = ChatClient(settings)

    def grade_all(self, pairs: list[tuple[str, str]]) -> list[int | None]:
        """The grade of each pair (None when the reply holds none), `concurrency` requests at a time."""
        conversations = ([{"role": "user", "content": self.prompt.format(language=self.language, question=q,
                                                                          answer=a)}] for q, a in pairs)
        grades: list[int | None] = [None] * len(pairs)
        for index, reply in self.client.chat_all(conversations, temperature=0, max_tokens=8):
            found = _GRADE.search(reply.text or "")
            grades[index] = int(found.group()) if found else None
        return grades

    def grade(self, question: str, answer: str) -> int | None:
        return self.grade_all([(question, answer)])[0]
