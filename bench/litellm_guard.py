"""Benchmark: what Steward's LiteLLM plugin adds to a request, against the same proxy without it, same run.

Two LiteLLM proxies (from ``.venv-litellm``, ``make litellm``) in front of the same demo model
endpoint on 127.0.0.1 (``demo.server`` with a fixed latency):

    (bare)   ``model_list`` with one deployment named after the task: what LiteLLM does alone
    (guard)  ``model_list: []`` and ``steward_client.litellm.steward_guard``: the signed policy routes
             the task to the same deployment; every request is checked and reported

The plugin pulls a policy signed by this bench (a fresh Ed25519 root and policy key, a trust root,
a DSSE envelope: the real verification path) from a small feed server on 127.0.0.1 that also
takes the decision batches (so reporting runs as in production, minus Steward's database).

The two take turns (``--rounds``; which goes first alternates). Each turn sends ``--sequential``
requests one at a time (latency: p50 and p99 of each, guard minus bare), then ``--concurrent``
requests from ``--threads`` keep-alive clients (requests/s, the ratio guard/bare). Medians over
the turns are printed, so a burst of other load spoils one turn rather than the result. Targets:
throughput ratio >= 0.90, added p50 <= 1 ms. The proxies' CPU time per request is printed beside
them: on a shared machine it moves much less than wall-clock figures do. Every loop is bounded
and targets only 127.0.0.1.

    .venv/bin/python bench/litellm_guard.py [--rounds 10] [--sequential 100] [--concurrent 200] [--threads 8]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import harness  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from demo.server import start_in_thread  # noqa: E402
from steward_client.canonical import canonical_json  # noqa: E402
from steward_client.dsse import POLICY_PAYLOAD_TYPE, keyid_for, raw_public_key, sign_envelope  # noqa: E402

LITELLM = ROOT / ".venv-litellm" / "bin" / "litellm"
MASTER_KEY = "sk-bench"
TASK = "ticket-triage"
REF = "demo/swift@1"


def rfc3339(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def signed_feed(upstream: str) -> tuple[bytes, bytes]:
    """A trust root and a policy envelope, signed by fresh keys, routing the task to the demo model."""
    root_key, policy_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keys = {}
    for key in (root_key, policy_key):
        public = raw_public_key(key.public_key())
        keys[keyid_for(public)] = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public.hex()}}
    root_id, policy_id = (keyid_for(raw_public_key(k.public_key())) for k in (root_key, policy_key))
    now = time.time()
    signed = {
        "_type": "steward.root",
        "spec_version": "1",
        "version": 1,
        "expires": rfc3339(now + 86400 * 365),
        "keys": keys,
        "roles": {"root": {"keyids": [root_id], "threshold": 1}, "policy": {"keyids": [policy_id], "threshold": 1}},
    }
    signature = base64.b64encode(root_key.sign(canonical_json(signed))).decode()
    root = canonical_json({"signed": signed, "signatures": [{"keyid": root_id, "sig": signature}]})
    payload = {
        "_type": "steward.routing-policy",
        "spec_version": "1",
        "policy_set": "bench",
        "version": 1,
        "issued_at": rfc3339(now - 60),
        "expires": rfc3339(now + 86400),
        "trust_version": 1,
        "provenance": {"kind": "change-request", "change_request": 1, "author": "bob", "approvers": ["alice"]},
        "models": {
            REF: {
                "provider": "demo",
                "model": "swift",
                "version": "1",
                "region": "local",
                "tier": "small",
                "context_window": 16000,
                "endpoint": {
                    "kind": "openai-compatible",
                    "base_url": upstream,
                    "provider_model_id": "demo-swift",
                    "api_key_env": "DEMO_ENDPOINT_API_KEY",
                },
                "prices": {"input_micro_usd_per_mtok": 100000, "output_micro_usd_per_mtok": 400000},
            }
        },
        "tiers": {"small": {"rank": 1, "price_ceiling_micro_usd": 500000}},
        "classifications": {"public": {"level": 0, "storage": "content"}},
        "routes": [
            {
                "task": TASK,
                "classification": "public",
                "tier": "small",
                "model": REF,
                "fallbacks": [],
                "escalation": None,
                "constraints": {},
            }
        ],
        "default": "deny",
    }
    return root, sign_envelope(canonical_json(payload), POLICY_PAYLOAD_TYPE, [policy_key])


class Feed(ThreadingHTTPServer):
    """The bundle with its ETag, status reports and decision batches: what the plugin talks to."""

    daemon_threads = True

    def __init__(self, envelope: bytes) -> None:
        self.envelope = envelope
        self.etag = f'"{hashlib.sha256(envelope).hexdigest()}"'
        self.decisions = 0
        self.lock = threading.Lock()
        feed = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: bytes = b"", etag: bool = False) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if etag:
                    self.send_header("ETag", feed.etag)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                if self.headers.get("If-None-Match") == feed.etag:
                    self._answer(304, etag=True)
                else:
                    self._answer(200, feed.envelope, etag=True)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/api/v1/decisions":
                    count = len(json.loads(body)["records"])
                    with feed.lock:
                        feed.decisions += count
                    self._answer(200, json.dumps({"accepted": count, "duplicates": 0, "errors": []}).encode())
                else:
                    self._answer(200, b'{"received": "ack"}')

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def start_proxy(directory: Path, config: str, environment: dict) -> tuple[subprocess.Popen, int]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(config)
    port = harness.free_port()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(directory), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.update(environment)
    process = subprocess.Popen(  # noqa: S603 - our own virtualenv's proxy
        [str(LITELLM), "--config", str(directory / "config.yaml"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=directory,
        env=env,
        stdout=(directory / "proxy.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        harness.wait_until(
            lambda: harness.fetch(port, "/health/liveliness", {})[0] == 200,
            process,
            f"the LiteLLM proxy in {directory}",
            120,
            directory / "proxy.log",
        )
    except harness.BenchError:
        process.kill()
        raise
    return process, port


BODY = json.dumps(
    {
        "model": TASK,
        "messages": [{"role": "user", "content": "Label this support ticket: the export crashes."}],
        "metadata": {"classification": "public"},
    }
).encode()
HEADERS = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}


def one(connection: http.client.HTTPConnection) -> float:
    started = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", BODY, HEADERS)
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
    return time.perf_counter() - started


def sequential(port: int, count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    return [one(connection) for _ in range(count)]


def concurrent(port: int, count: int, threads: int) -> float:
    """Requests per second for ``count`` requests spread over ``threads`` keep-alive clients."""
    share = [count // threads + (1 if index < count % threads else 0) for index in range(threads)]
    errors: list[Exception] = []

    def client(n: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for _ in range(n):
                one(connection)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    workers = [threading.Thread(target=client, args=(n,)) for n in share]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--sequential", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--upstream-latency-ms", type=int, default=20)
    args = parser.parse_args()
    if not LITELLM.exists():
        sys.exit(f"{LITELLM} is missing: run `make litellm`")

    upstream = start_in_thread(latency_ms=args.upstream_latency_ms)
    root, envelope = signed_feed(upstream.url)
    feed = Feed(envelope)
    threading.Thread(target=feed.serve_forever, daemon=True).start()
    work = Path(tempfile.mkdtemp(prefix="litellm-guard-"))
    (work / "token").write_text("swr_bench")
    (work / "root.json").write_bytes(root)
    bare_config = (
        "model_list:\n"
        f"  - model_name: {TASK}\n"
        "    litellm_params:\n"
        "      model: openai/demo-swift\n"
        f"      api_base: {upstream.url}\n"
        "      api_key: demo\n"
        "      max_retries: 0\n"
        f"general_settings:\n  master_key: {MASTER_KEY}\n"
    )
    guard_config = (
        "model_list: []\n"
        "litellm_settings:\n  callbacks: steward_client.litellm.steward_guard\n"
        f"general_settings:\n  master_key: {MASTER_KEY}\n"
    )
    guard_env = {
        "PYTHONPATH": str(ROOT),
        "STEWARD_URL": feed.url,
        "STEWARD_POLICY_SET": "bench",
        "STEWARD_TOKEN_FILE": str(work / "token"),
        "STEWARD_TRUST_ROOT": str(work / "root.json"),
        "STEWARD_STATE_DIR": str(work / "state"),
        "DEMO_ENDPOINT_API_KEY": "demo",
    }
    processes = []
    try:
        bare, bare_port = start_proxy(work / "bare", bare_config, {})
        processes.append(bare)
        guard, guard_port = start_proxy(work / "guard", guard_config, guard_env)
        processes.append(guard)
        for port in (bare_port, guard_port):  # warm up: connections, the policy, the router's caches
            sequential(port, 30)
            concurrent(port, 80, args.threads)
        turns = []
        for turn in range(args.rounds):
            result = {}
            order = (("bare", bare, bare_port), ("guard", guard, guard_port))
            for name, process, port in order if turn % 2 == 0 else order[::-1]:
                cpu = harness.process_tree_cpu(process.pid)
                latencies = sequential(port, args.sequential)
                rps = concurrent(port, args.concurrent, args.threads)
                result[name] = {
                    "p50": harness.percentile(latencies, 0.50) * 1000,
                    "p99": harness.percentile(latencies, 0.99) * 1000,
                    "rps": rps,
                    "cpu_ms": (harness.process_tree_cpu(process.pid) - cpu)
                    * 1000
                    / (args.sequential + args.concurrent),
                }
            turns.append(result)
            print(  # noqa: T201
                f"turn {turn + 1}: bare p50 {result['bare']['p50']:.2f} ms p99 {result['bare']['p99']:.2f} ms "
                f"{result['bare']['rps']:.0f} req/s | guard p50 {result['guard']['p50']:.2f} ms "
                f"p99 {result['guard']['p99']:.2f} ms {result['guard']['rps']:.0f} req/s",
                flush=True,
            )
        time.sleep(2.5)  # the last decisions are batched once a second
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)
        upstream.shutdown()
        feed.shutdown()

    def median(name: str, figure: str) -> float:
        return statistics.median(turn[name][figure] for turn in turns)

    added_p50 = statistics.median(turn["guard"]["p50"] - turn["bare"]["p50"] for turn in turns)
    added_cpu = statistics.median(turn["guard"]["cpu_ms"] - turn["bare"]["cpu_ms"] for turn in turns)
    added_p99 = statistics.median(turn["guard"]["p99"] - turn["bare"]["p99"] for turn in turns)
    ratio = statistics.median(turn["guard"]["rps"] / turn["bare"]["rps"] for turn in turns)
    sent = 30 + 80 + args.rounds * (args.sequential + args.concurrent)
    print(  # noqa: T201
        f"\nupstream latency {args.upstream_latency_ms} ms, {args.rounds} turns, {args.threads} concurrent clients\n"
        f"bare:  p50 {median('bare', 'p50'):.2f} ms  p99 {median('bare', 'p99'):.2f} ms  "
        f"{median('bare', 'rps'):.0f} req/s\n"
        f"guard: p50 {median('guard', 'p50'):.2f} ms  p99 {median('guard', 'p99'):.2f} ms  "
        f"{median('guard', 'rps'):.0f} req/s\n"
        f"added p50 {added_p50:+.2f} ms (target <= 1 ms)  added p99 {added_p99:+.2f} ms\n"
        f"proxy CPU per request: bare {median('bare', 'cpu_ms'):.2f} ms, guard {median('guard', 'cpu_ms'):.2f} ms "
        f"(added {added_cpu:+.2f} ms; the check that other load on the machine sways the figures less)\n"
        f"throughput ratio guard/bare {ratio:.3f} (target >= 0.90)\n"
        f"decisions reported by the plugin: {feed.decisions} of {sent} guarded requests"
    )


if __name__ == "__main__":
    main()
