"""Endpoint clients: how a model version is asked a question.

``client_for(version)`` picks the class for the version's endpoint kind. Each client sends chat
messages and returns the answer with its token usage, latency and cost; timeouts, 429s and 5xx
answers are retried with exponential backoff (and ``Retry-After``). Another kind of endpoint is
one new class in ``CLIENTS``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11
import httpx

from ..models import EndpointCredential, ModelVersion, is_reserved_variable

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
    """

    def __init__(
        self,
        version: ModelVersion,
        http: httpx.AsyncClient,
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


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class OpenAICompatibleClient(ChatClient):
    """``POST {base_url}/chat/completions`` as OpenAI and many gateways and local servers speak it."""

    async def _call(self, messages: list[dict]) -> tuple[str, int, int]:
        body = {"model": self.version.provider_model_id, "messages": messages, "max_tokens": self.max_tokens}
        url = self.version.base_url.rstrip("/") + "/chat/completions"
        headers = self.headers_for(url)
        try:
            # Redirects are never followed: a key bound to one host must not be replayed to another.
            response = await self.http.post(
                url, json=body, headers=headers, timeout=self.timeout, follow_redirects=False
            )
        except httpx.TimeoutException:
            raise _Retryable(f"timeout after {self.timeout:g} s") from None
        except httpx.TransportError as error:
            raise _Retryable(f"cannot reach {url}: {type(error).__name__}") from None
        if response.status_code in RETRY_STATUSES:
            raise _Retryable(f"HTTP {response.status_code}", _retry_after(response))
        if 300 <= response.status_code < 400:
            location = response.headers.get("Location", "")
            raise EndpointError(f"HTTP {response.status_code}: redirects are not followed (to {location[:200]!r})")
        if response.status_code >= 400:
            raise EndpointError(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            payload = response.json()
            text = payload["choices"][0]["message"]["content"] or ""
            usage = payload.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError):
            raise EndpointError("the endpoint's answer is not a chat completion") from None
        return text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


# --- the transport the runner uses -------------------------------------------------------------

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class StreamTransport(httpx.AsyncBaseTransport):
    """One keep-alive HTTP/1.1 connection on plain asyncio streams, for one request at a time.

    The runner gives every slot of a suite's concurrency a connection of its own. httpx's default
    transport (httpcore over anyio) spends about a millisecond of CPU on each request, this one
    about a third of that (h11 parses the HTTP), and the CPU of one worker process is what bounds
    how many requests it keeps in flight. Timeouts and failures surface as httpx's exceptions.
    """

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self.ssl_context = ssl_context
        self._origin: tuple[str, str, int] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._h11: h11.Connection | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        body = await request.aread()
        reused = self._h11 is not None and self._origin == origin and self._h11.our_state is h11.IDLE
        if not reused:
            await self._connect(origin, request, timeouts.get("connect"))
        try:
            return await self._exchange(request, body, timeouts)
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
            if not reused:
                raise
        # The server closed a kept-alive connection before answering: once more on a new one.
        await self._connect(origin, request, timeouts.get("connect"))
        return await self._exchange(request, body, timeouts)

    async def _connect(self, origin: tuple[str, str, int], request: httpx.Request, timeout: float | None) -> None:
        await self.aclose()
        scheme, host, port = origin
        secure = scheme == "https"
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, ssl=self.ssl_context if secure else None, server_hostname=host if secure else None
                ),
                timeout,
            )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} within {timeout} s", request=request) from None
        except (OSError, ssl.SSLError) as error:
            raise httpx.ConnectError(str(error) or type(error).__name__, request=request) from None
        self._origin = origin
        self._h11 = h11.Connection(h11.CLIENT)

    async def _exchange(self, request: httpx.Request, body: bytes, timeouts: dict) -> httpx.Response:
        connection, reader, writer = self._h11, self._reader, self._writer
        try:
            data = connection.send(
                h11.Request(method=request.method, target=request.url.raw_path, headers=request.headers.raw)
            )
            data += connection.send(h11.Data(data=body)) + connection.send(h11.EndOfMessage())
            writer.write(data)
            await asyncio.wait_for(writer.drain(), timeouts.get("write"))
        except TimeoutError:
            await self.aclose()
            raise httpx.WriteTimeout("timed out sending the request", request=request) from None
        except (OSError, h11.LocalProtocolError) as error:
            await self.aclose()
            raise httpx.WriteError(str(error) or type(error).__name__, request=request) from None
        response: h11.Response | None = None
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await asyncio.wait_for(reader.read(65536), timeouts.get("read")))
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > MAX_RESPONSE_BYTES:
                        raise httpx.RemoteProtocolError(
                            f"the answer is larger than {MAX_RESPONSE_BYTES} bytes", request=request
                        )
                    chunks.append(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise httpx.RemoteProtocolError("the server closed the connection", request=request)
        except TimeoutError:
            await self.aclose()
            raise httpx.ReadTimeout("timed out waiting for the answer", request=request) from None
        except OSError as error:
            await self.aclose()
            raise httpx.ReadError(str(error) or type(error).__name__, request=request) from None
        except (h11.RemoteProtocolError, httpx.RemoteProtocolError) as error:
            await self.aclose()
            raise httpx.RemoteProtocolError(str(error), request=request) from None
        if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
            connection.start_next_cycle()
        else:
            await self.aclose()
        return httpx.Response(response.status_code, headers=response.headers, content=b"".join(chunks))

    async def aclose(self) -> None:
        writer, self._writer, self._reader, self._h11 = self._writer, None, None, None
        if writer is not None:
            writer.close()


@functools.cache
def ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle takes tens of milliseconds: once per process, shared by every client.
    return httpx.create_ssl_context()


def connection_client() -> httpx.AsyncClient:
    """An HTTP client with one connection, for one request at a time (one slot of a run's concurrency).

    With a proxy in the environment, httpx's own transport goes through it; StreamTransport does not.
    """
    if any(os.environ.get(name) or os.environ.get(name.lower()) for name in PROXY_VARIABLES):
        return httpx.AsyncClient(
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1), verify=ssl_context()
        )
    return httpx.AsyncClient(transport=StreamTransport(ssl_context()))


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
