"""Endpoint clients: how a model version is asked a question.

``client_for(version, session)`` picks the class for the version's endpoint kind. Each client sends
chat messages and returns the answer with its token usage, latency and cost; timeouts, connection
failures, 429s and 5xx answers are retried with exponential backoff (and ``Retry-After``). Another
kind of endpoint is one new class in ``CLIENTS``.

HTTP is aiohttp's client, in a session from ``endpoint_session``: keep-alive connections, TLS that
trusts the system's certificate authorities (plus ``STEWARD_EVALUATION_CA_BUNDLE``), the proxy the
environment names, timeouts. Redirects are never followed and answers are capped in size.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import socket
import ssl
import time
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from django.conf import settings

from ..models import EndpointCredential, ModelVersion, is_reserved_variable

RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


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


class CredentialRefused(EndpointError):
    """The version's API key may not be sent where its endpoint points: nothing was sent."""


@dataclass(frozen=True)
class BoundKey:
    """An API key read from the environment, with the hosts an officer approved sending it to.

    ``authorization(url)`` is asked for every request, so a key never leaves for another host,
    whatever the URL (a changed base URL, an override, a redirect followed by someone's code).
    """

    env_var: str
    hosts: tuple[str, ...]
    value: str = field(repr=False)

    def allows(self, url: str) -> bool:
        parts = urlsplit(url)
        if not parts.hostname:
            return False
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return any(entry == host or entry == f"{host}:{port}" for entry in self.hosts)

    def authorization(self, url: str) -> dict[str, str]:
        if not self.allows(url):
            raise CredentialRefused(refusal_for_host(self.env_var, self.hosts, url))
        return {"Authorization": f"Bearer {self.value}"} if self.value else {}


def unreachable(url: str, timeout: float) -> str:
    """Why nothing listens at the URL's host and port ("" when a TCP connection opens within ``timeout``).

    Only a connection is opened and closed: no request, no key."""
    parts = urlsplit(url)
    if not parts.hostname:
        return f"{url} names no host"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return ""
    except OSError as error:
        reason = error.strerror or type(error).__name__
        if isinstance(error, TimeoutError | socket.timeout):
            reason = f"no answer within {timeout:g} s"
        return f"cannot reach {parts.hostname}:{port} ({reason})"


def refusal_for_host(env_var: str, hosts, url: str) -> str:
    host = urlsplit(url).netloc or url
    return f"{env_var} may be sent only to {', '.join(hosts)}; this endpoint is on {host}, so nothing was sent"


def bind_key(version: ModelVersion, base_url: str | None = None) -> BoundKey:
    """The version's API key, bound to the hosts its variable is approved for (a database read).

    Raises CredentialRefused, naming the variable and the host, when the variable is one of
    Steward's own, is not registered, is not approved, or does not cover the endpoint's host.
    """
    env_var = version.api_key_env
    url = base_url or version.base_url
    if is_reserved_variable(env_var):
        raise CredentialRefused(
            f"{env_var} is one of Steward's own settings variables; its value is never sent to a model endpoint "
            f"(endpoint {urlsplit(url).netloc or url}), so nothing was sent"
        )
    credential = EndpointCredential.objects.filter(env_var=env_var).first()
    if credential is None:
        raise CredentialRefused(
            f"{env_var} is not a registered endpoint credential: register it with the hosts its key may be sent to "
            f"and have an officer approve it (endpoint {urlsplit(url).netloc or url}); nothing was sent"
        )
    if not credential.is_approved:
        raise CredentialRefused(
            f"the endpoint credential {env_var} is {credential.get_status_display().lower()}, not approved "
            f"(endpoint {urlsplit(url).netloc or url}); nothing was sent"
        )
    key = BoundKey(env_var, tuple(credential.hosts), os.environ.get(env_var, ""))
    if not key.allows(url):
        raise CredentialRefused(refusal_for_host(env_var, credential.hosts, url))
    return key


class ChatClient:
    """Base class: retries and accounting; subclasses say how to call their kind of endpoint.

    ``key`` is the version's bound key (``bind_key``); without one, requests carry no key at all.
    ``http`` is a session from ``endpoint_session``, which several clients may share.
    """

    def __init__(
        self,
        version: ModelVersion,
        http: aiohttp.ClientSession,
        *,
        key: BoundKey | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_tokens: int = 512,
    ) -> None:
        self.version = version
        self.http = http
        self.key = key
        self.timeout = timeout
        self.client_timeout = aiohttp.ClientTimeout(total=timeout)
        self.proxy = proxy_for(version.base_url)  # by scheme and host, the same for all its requests
        self.retries = retries
        self.backoff = backoff
        self.max_tokens = max_tokens

    def headers_for(self, url: str) -> dict[str, str]:
        return self.key.authorization(url) if self.key is not None else {}

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
                self.version.price_micro_usd(input_tokens, output_tokens),
            )


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


async def _capped_body(response: aiohttp.ClientResponse) -> bytes:
    """The answer's bytes; an answer over MAX_RESPONSE_BYTES is an error, not something to hold in memory."""
    if (response.content_length or 0) <= MAX_RESPONSE_BYTES:
        chunks, size = [], 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                break
            chunks.append(chunk)
        else:
            return b"".join(chunks)
    raise EndpointError(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``), if any.

    Looked up once per client rather than through aiohttp's ``trust_env``, which would also send
    ``~/.netrc`` passwords to the endpoint (credentials no officer bound to it) and read both again,
    in a thread, for every request (doubling the client's CPU time per request).
    """
    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class OpenAICompatibleClient(ChatClient):
    """``POST {base_url}/chat/completions`` as OpenAI and many gateways and local servers speak it."""

    async def _call(self, messages: list[dict]) -> tuple[str, int, int]:
        body = {"model": self.version.provider_model_id, "messages": messages, "max_tokens": self.max_tokens}
        url = self.version.base_url.rstrip("/") + "/chat/completions"
        headers = self.headers_for(url)
        try:
            # Redirects are never followed: a key bound to one host must not be replayed to another.
            async with self.http.post(
                url,
                json=body,
                headers=headers,
                timeout=self.client_timeout,
                allow_redirects=False,
                proxy=self.proxy,
            ) as response:
                status = response.status
                if status in RETRY_STATUSES:
                    raise _Retryable(f"HTTP {status}", _retry_after(response))
                if 300 <= status < 400:
                    location = response.headers.get("Location", "")
                    raise EndpointError(f"HTTP {status}: redirects are not followed (to {location[:200]!r})")
                data = await _capped_body(response)
        except TimeoutError:
            raise _Retryable(f"timeout after {self.timeout:g} s") from None
        except aiohttp.InvalidURL:
            raise EndpointError(f"{url} is not a URL that can be requested") from None
        except aiohttp.ClientConnectorCertificateError as error:  # asking again would not change it
            reason = getattr(error.certificate_error, "verify_message", "") or error.certificate_error
            raise EndpointError(
                f"{url}: the TLS certificate is not trusted ({reason}); a private certificate authority "
                "goes in STEWARD_EVALUATION_CA_BUNDLE"
            ) from None
        except aiohttp.ClientError as error:
            raise _Retryable(f"cannot reach {url}: {type(error).__name__}") from None
        if status >= 400:
            raise EndpointError(f"HTTP {status}: {data[:200].decode(errors='replace')}")
        try:
            payload = json.loads(data)
            text = payload["choices"][0]["message"]["content"] or ""
            usage = payload.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError):
            raise EndpointError("the endpoint's answer is not a chat completion") from None
        return text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


# --- the session the runner uses ---------------------------------------------------------------


@functools.cache
def _ssl_context(ca_bundle: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as error:
            raise EndpointError(
                f"STEWARD_EVALUATION_CA_BUNDLE: cannot load certificate authorities from {ca_bundle}: {error}"
            ) from None
    return context


def ssl_context() -> ssl.SSLContext:
    """The certificate authorities endpoints are checked against: the system's, plus those in the file
    ``STEWARD_EVALUATION_CA_BUNDLE`` names (a private gateway's own CA). Loaded once per process."""
    return _ssl_context(settings.STEWARD_EVALUATION_CA_BUNDLE)


def endpoint_session(connections: int) -> aiohttp.ClientSession:
    """An HTTP session for up to ``connections`` requests at once, its connections kept alive between them.

    Call it inside the event loop that uses it; close it with ``await session.close()``. Cookies are
    not kept: one answer never changes what the next request sends.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, ssl=ssl_context()),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


CLIENTS: dict[str, type[ChatClient]] = {
    "openai-compatible": OpenAICompatibleClient,
}


def client_for(version: ModelVersion, http: aiohttp.ClientSession, **options) -> ChatClient:
    try:
        return CLIENTS[version.endpoint_kind](version, http, **options)
    except KeyError:
        raise EndpointError(
            f"no client for endpoint kind {version.endpoint_kind!r} (supported: {', '.join(CLIENTS)})"
        ) from None
