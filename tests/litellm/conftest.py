"""A real LiteLLM proxy with Steward's plugin, in front of Steward's demo endpoint, pulling from a live Steward.

The proxy runs from ``.venv-litellm`` (``make litellm``: LiteLLM pins many packages of its own)
with this checkout's ``steward_client`` first on its path. Its upstream is the demo model
server (``demo.server``) on 127.0.0.1, here wrapped to record what reaches
it and to fail or slow a model on demand. Steward is pytest-django's live server behind a relay
that a test can stop and start again ("Steward is down").

One proxy per test module, reused by its tests: a module's tests share the gateway's data (the
``gateway`` policy set and its router), set up once from the seeded demo and committed, as the
live server must see it. The demo rows are put back before each module (tests/feed/conftest.py).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from compliance.models import Certification, CertificationHolding, DataClassification, MatrixCell
from demo.server import MODELS, DemoHandler, DemoServer, answer
from portfolio import feed
from portfolio.models import PolicySet, Router, TrustRoot
from portfolio.publishing import publish, start_change
from registry.models import ModelVersion, Provider
from tests.feed.conftest import (  # noqa: F401 - fixtures shared with the feed tests
    Response,
    Tamper,
    _feed_memory,
    _forget_feed_memory,
    _restore,
    demo_snapshot,
    http,
)

ROOT = Path(__file__).resolve().parents[2]
LITELLM = ROOT / ".venv-litellm" / "bin" / "litellm"
MASTER_KEY = "sk-steward-gateway-test"
POLICY_SET = "gateway"
POLL_SECONDS = 1.0

# The gateway's first policy: every route on the demo models, which point at the test upstream.
GATEWAY_POLICY = """\
default: deny
routes:
  - task: ticket-triage
    classification: public
    model: demo/swift@1
    fallbacks: [demo/budget@1]
  - task: ticket-triage
    classification: internal
    model: demo/careful@1
    fallbacks: [demo/budget@1]
    constraints:
      max_latency_ms: 1500
  - task: support-reply
    classification: pii
    tier: small
    model: demo/budget@1
    escalation:
      to: demo/oracle@1
      when: [error]
      max_rate_bp: 10000
  - task: contract-review
    classification: confidential
    tier: small
    model: demo/careful@1
    fallbacks: [demo/budget@1]
    escalation:
      to: demo/oracle@1
      when: [low_confidence, context_overflow]
      confidence_threshold_bp: 7000
      max_rate_bp: 10000
  - task: marketing-copy
    classification: public
    tier: small
    model: demo/budget@1
    constraints:
      max_cost_micro_usd: 50
"""
DEMO_NAMES = {  # the demo endpoint's model id of each demo version: what the upstream echoes
    "demo/swift@1": "demo-swift",
    "demo/budget@1": "demo-budget",
    "demo/careful@1": "demo-careful",
    "demo/oracle@1": "demo-oracle",
}


# --- the upstream: the demo endpoint, recording and failing on demand ---------------------------


class RecordingHandler(DemoHandler):
    server: Upstream

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        try:
            model = json.loads(body).get("model", "")
        except ValueError:
            model = ""
        self.server.record(model)
        if model in self.server.failing:
            self._send(500, {"error": {"message": f"{model} is failing (test)"}})
            return
        if model in self.server.slow:
            self.headers["X-Demo-Latency-Ms"] = str(self.server.slow[model])
        request = json.loads(body)
        if request.get("stream") and model in MODELS:
            self._stream(MODELS[model], request)
            return
        self.rfile = io.BytesIO(body)
        super().do_POST()

    def _stream(self, model, request: dict) -> None:
        """The demo model's answer as server-sent events, a few words per chunk, as OpenAI streams it."""
        prompt = "\n".join(str(m.get("content", "")) for m in request["messages"] if m.get("role") != "system")
        words = answer(model, prompt).split(" ")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        base = {"id": "demo-stream", "object": "chat.completion.chunk", "created": 0, "model": model.name}
        for index in range(0, len(words), 3):
            text = " ".join(words[index : index + 3]) + (" " if index + 3 < len(words) else "")
            delta = {"role": "assistant", "content": text} if index == 0 else {"content": text}
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        done = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        self.close_connection = True


class Upstream(DemoServer):
    """The demo model server with a log of the models asked and switches to fail or slow one."""

    def __init__(self) -> None:
        ThreadingHTTPServer.__init__(self, ("127.0.0.1", 0), RecordingHandler)
        self.latency_ms = 2
        self.verbose = False
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.calls: list[str] = []
        self.failing: set[str] = set()
        self.slow: dict[str, int] = {}

    def record(self, model: str) -> None:
        with self._lock:
            self.calls.append(model)

    def reset(self) -> None:
        self.failing.clear()
        self.slow.clear()


@pytest.fixture(scope="package")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


# --- Steward behind a relay that can be stopped -------------------------------------------------


@dataclass
class Relay(Tamper):
    """Relays to the live server on a fixed port; ``stop()`` makes Steward unreachable, ``start()`` brings it back."""

    port: int = 0

    def start(self) -> Relay:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                relay._handle(self)

            def do_POST(self) -> None:  # noqa: N802
                relay._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        super().stop()
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# --- the gateway's data in Steward --------------------------------------------------------------


@dataclass
class Gateway:
    """What a router author is handed: the URL, the set, the token and the trust root; and the router."""

    url: str
    token: str
    root: bytes
    router_id: int

    def router(self) -> Router:
        return Router.objects.get(pk=self.router_id)


def users() -> dict:
    return {user.username: user for user in get_user_model().objects.filter(username__in=["alice", "bob", "carol"])}


def publish_policy(document: str, title: str) -> int:
    """bob writes the change, alice approves and publishes it: the gateway set's next version."""
    people = users()
    change = start_change(PolicySet.objects.get(slug=POLICY_SET), people["bob"], title, "Gateway tests.", document)
    change.submit(people["bob"])
    change.review(people["alice"], "approve", "Routes checked against the matrix.")
    return publish(change, people["alice"]).number


def setup_gateway(upstream_url: str, live_url: str) -> Gateway:
    """The demo models on the test upstream, allowed for the classifications the gateway routes, and v1."""
    people = users()
    today = timezone.now().date()
    demo = Provider.objects.get(slug="demo")
    for slug in ("soc2-type2", "iso27001", "gdpr-dpa"):
        CertificationHolding.objects.create(
            provider=demo,
            certification=Certification.objects.get(slug=slug),
            valid_from=today - dt.timedelta(days=30),
            valid_until=today + dt.timedelta(days=300),
            evidence_url="https://example.org/demo-attestation",
            recorded_by=people["alice"],
        )
    ModelVersion.objects.filter(model__provider=demo).update(base_url=upstream_url)
    ModelVersion.objects.filter(ref="demo/oracle@1").update(cost_tier="medium")
    for version in ModelVersion.objects.filter(ref__in=DEMO_NAMES):
        for classification in DataClassification.objects.filter(slug__in=["internal", "confidential", "pii"]):
            cell = MatrixCell.for_pair(version, classification)
            if cell.decision != "approved":
                cell.approve(people["alice"], "Demo endpoint attested for the gateway tests.")
    PolicySet.objects.create(slug=POLICY_SET, name="Gateway", required_approvals=1, require_provider_diversity=False)
    publish_policy(GATEWAY_POLICY, "Gateway routes")
    router, token = feed.register_router(PolicySet.objects.get(slug=POLICY_SET), "litellm-edge-1", by=None)
    root = bytes(TrustRoot.objects.order_by("-version").first().document)
    return Gateway(live_url, token, root, router.pk)


@pytest.fixture
def transactional_db(django_db_blocker) -> Iterator[None]:
    """Overrides pytest-django's: the module's committed rows stay (the gateway fixture puts the demo back)."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture(autouse=True)
def _committed_rows(transactional_db) -> None:
    """Every test here reads what the live server and the proxy committed."""


@pytest.fixture(scope="module")
def relay(live_server) -> Iterator[Relay]:
    proxy = Relay(live_server.url).start()
    yield proxy
    if proxy.server is not None:
        proxy.stop()


@pytest.fixture(scope="module")
def gateway(demo_snapshot, django_db_blocker, upstream, relay) -> Iterator[Gateway]:  # noqa: F811
    with django_db_blocker.unblock():
        _restore(demo_snapshot)
        _forget_feed_memory()
        yield setup_gateway(upstream.url, relay.url)
        _forget_feed_memory()


# --- the proxy ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Proxy:
    """A running ``litellm --config`` process with the plugin, and how to call it."""

    url: str
    process: subprocess.Popen
    state_dir: Path
    log: Path
    calls: list[str] = field(default_factory=list)

    def chat(
        self,
        model: str,
        content: str = "Label this support ticket: the app crashes on start.",
        *,
        classification: str | None = None,
        tags: list | None = None,
        metadata: dict | None = None,
        headers: dict | None = None,
        **extra,
    ) -> Response:
        body: dict = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
        meta = dict(metadata or {})
        if classification is not None:
            meta["classification"] = classification
        if meta:
            body["metadata"] = meta
        if tags is not None:
            body["tags"] = tags
        return call(self.url, "/v1/chat/completions", body, headers)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def call(base: str, path: str, body: dict | None = None, headers: dict | None = None, timeout: float = 30) -> Response:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        method="POST" if body is not None else "GET",
        headers={"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - 127.0.0.1
            return Response(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def answered_by(response: Response) -> str:
    """Which demo model wrote the answer: the demo endpoint names itself in what it says."""
    text = json.loads(response.body)["choices"][0]["message"]["content"]
    return text.split(" ", 1)[0]


CONFIG = """\
model_list: []
litellm_settings:
  callbacks: steward_client.litellm.steward_guard
general_settings:
  master_key: {master_key}
"""


def start_proxy(
    directory: Path,
    *,
    url: str,
    token: str,
    root: bytes,
    workers: int = 1,
    environment: dict | None = None,
    wait: bool = True,
) -> Proxy:
    """Start ``litellm --config`` as a router author runs it; returns once it answers its health check."""
    if not LITELLM.exists():
        message = f"{LITELLM} is missing: run `make litellm` (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(token + "\n")
    (directory / "root.json").write_bytes(root)
    (directory / "config.yaml").write_text(CONFIG.format(master_key=MASTER_KEY))
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(directory),
        "PYTHONPATH": str(ROOT),  # this checkout's steward_client, not the copy make litellm installed
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "STEWARD_URL": url,
        "STEWARD_POLICY_SET": POLICY_SET,
        "STEWARD_TOKEN_FILE": str(directory / "token"),
        "STEWARD_TRUST_ROOT": str(directory / "root.json"),
        "STEWARD_STATE_DIR": str(directory / "state"),
        "STEWARD_POLL_INTERVAL": str(POLL_SECONDS),
        "STEWARD_MAX_BACKOFF": "2",
        "STEWARD_REPORT_RETRY_MAX": "1",
        "DEMO_ENDPOINT_API_KEY": "demo",
        **(environment or {}),
    }
    log = directory / "proxy.log"
    command = [str(LITELLM), "--config", str(directory / "config.yaml"), "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        command += ["--num_workers", str(workers)]
    process = subprocess.Popen(  # noqa: S603 - our own virtualenv's proxy
        command, cwd=directory, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    proxy = Proxy(f"http://127.0.0.1:{port}", process, directory / "state", log)
    return wait_ready(proxy) if wait else proxy


def wait_ready(proxy: Proxy) -> Proxy:
    process = proxy.process
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the LiteLLM proxy exited with {process.returncode}:\n{proxy.tail()}")
        try:
            if call(proxy.url, "/health/liveliness", timeout=2).status == 200:
                return proxy
        except OSError:
            pass
        time.sleep(0.25)
    stop_proxy(proxy)
    pytest.fail(f"the LiteLLM proxy did not start within 120 s:\n{proxy.tail()}")


def stop_proxy(proxy: Proxy) -> None:
    proxy.process.terminate()
    try:
        proxy.process.wait(15)
    except subprocess.TimeoutExpired:
        proxy.process.kill()
        proxy.process.wait(5)


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, what: str = "the condition") -> object:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def refusal(response: Response) -> dict:
    """The error a refused request got: the OpenAI-style error object with Steward's detail."""
    error = json.loads(response.body)["error"]
    return {"status": response.status, "rule": error["param"], "type": error["type"], **error}
