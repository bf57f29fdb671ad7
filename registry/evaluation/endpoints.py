"""Endpoint clients: how a model version is asked a question.

``client_for(version)`` picks the class for the version's endpoint kind. Each client sends chat
messages and returns the answer with its token usage, latency and cost; timeouts, 429s and 5xx
answers are retried with exponential backoff (and ``Retry-After``). Another kind of endpoint is
one new class in ``CLIENTS``.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass

import httpx

from ..models import ModelVersion

RETRY_STATUSES = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int
    output_tokens: int
    latency_ms: int
    attempts: int
    cost_micro_usd: int


class EndpointError(Exception):
    """The endpoint failed after its retries; the message says how."""

    def __init__(self, message: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


def cost_micro_usd(version: ModelVersion, input_tokens: int, output_tokens: int) -> int:
    """The price of one answer in micro-USD, from the version's prices per million tokens (rounded up)."""
    total = input_tokens * version.input_price_micro_usd + output_tokens * version.output_price_micro_usd
    return -(-total // 1_000_000)


class ChatClient:
    """Base class: retries and accounting; subclasses say how to call their kind of endpoint."""

    def __init__(
        self,
        version: ModelVersion,
        http: httpx.AsyncClient,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_tokens: int = 512,
    ) -> None:
        self.version = version
        self.http = http
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_tokens = max_tokens
        self.api_key = os.environ.get(version.api_key_env, "")

    async def _call(self, messages: list[dict]) -> tuple[str, int, int]:
        raise NotImplementedError

    async def complete(self, messages: list[dict]) -> Completion:
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                text, input_tokens, output_tokens = await self._call(messages)
            except _Retryable as error:
                if attempt > self.retries:
                    raise EndpointError(f"{error} (after {attempt} attempts)", attempt) from None
                delay = error.retry_after if error.retry_after is not None else self.backoff * 2 ** (attempt - 1)
                await asyncio.sleep(min(delay, 30.0) * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
                continue
            except EndpointError as error:
                error.attempts = attempt
                raise
            latency_ms = int((time.perf_counter() - started) * 1000)
            return Completion(
                text,
                input_tokens,
                output_tokens,
                latency_ms,
                attempt,
                cost_micro_usd(self.version, input_tokens, output_tokens),
            )


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class OpenAICompatibleClient(ChatClient):
    """``POST {base_url}/chat/completions`` as OpenAI and many gateways and local servers speak it."""

    async def _call(self, messages: list[dict]) -> tuple[str, int, int]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.version.provider_model_id, "messages": messages, "max_tokens": self.max_tokens}
        url = self.version.base_url.rstrip("/") + "/chat/completions"
        try:
            response = await self.http.post(url, json=body, headers=headers, timeout=self.timeout)
        except httpx.TimeoutException:
            raise _Retryable(f"timeout after {self.timeout:g} s") from None
        except httpx.TransportError as error:
            raise _Retryable(f"cannot reach {url}: {type(error).__name__}") from None
        if response.status_code in RETRY_STATUSES:
            raise _Retryable(f"HTTP {response.status_code}", _retry_after(response))
        if response.status_code >= 400:
            raise EndpointError(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            payload = response.json()
            text = payload["choices"][0]["message"]["content"] or ""
            usage = payload.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError):
            raise EndpointError("the endpoint's answer is not a chat completion") from None
        return text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


CLIENTS: dict[str, type[ChatClient]] = {
    "openai-compatible": OpenAICompatibleClient,
}


def client_for(version: ModelVersion, http: httpx.AsyncClient, **options) -> ChatClient:
    try:
        return CLIENTS[version.endpoint_kind](version, http, **options)
    except KeyError:
        raise EndpointError(
            f"no client for endpoint kind {version.endpoint_kind!r} (supported: {', '.join(CLIENTS)})"
        ) from None
