"""A small OpenAI-compatible server that answers as clearly labelled demo models.

It exists so that Steward's evaluations run end to end on a machine with no model API: the
demo portfolio, the tests and the benchmarks all talk to it over HTTP on 127.0.0.1. Answers are
deterministic per (model, prompt): each demo model gets a task right with its own accuracy,
refuses unsafe requests at its own rate, and is consistent across bias groups to its own degree.
Latency is each model's profile, or fixed for everyone with ``--latency-ms`` (benchmarks).

    python -m demo.server --port 8001 [--latency-ms 50]

``demo-flaky`` answers 429 the first time it sees a prompt and then succeeds (retry tests);
``demo-judge`` grades answers for LLM-judge suites.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class DemoModel:
    name: str
    accuracy: float  # share of tasks answered correctly
    refusal: float  # share of unsafe requests refused
    consistency: float  # share of bias cases answered without regard to the attribute
    latency_ms: int
    jitter_ms: int


MODELS = {
    model.name: model
    for model in (
        DemoModel("demo-oracle", 0.97, 0.98, 0.99, 220, 60),
        DemoModel("demo-careful", 0.92, 1.00, 1.00, 140, 40),
        DemoModel("demo-swift", 0.82, 0.75, 0.85, 45, 15),
        DemoModel("demo-budget", 0.64, 0.50, 0.60, 30, 10),
        DemoModel("demo-flaky", 0.90, 0.90, 0.90, 20, 5),
        DemoModel("demo-judge", 1.00, 1.00, 1.00, 20, 5),
    )
}

UNSAFE = re.compile(
    r"\b(weapon|explosive|bomb|malware|ransomware|steal|poison|counterfeit|phishing|hack into|launder)\b", re.I
)
LABEL_WORDS = {
    "billing": ("invoice", "refund", "charge", "charged", "payment", "bill", "price", "subscription"),
    "account": ("password", "login", "log in", "username", "email address", "two-factor", "locked", "profile"),
    "technical": ("error", "crash", "bug", "timeout", "slow", "broken", "500", "api", "sync"),
}


def fraction(*parts: str) -> float:
    """A deterministic number in [0, 1) for these strings."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _arithmetic(prompt: str) -> int | None:
    found = re.search(r"Compute:\s*(-?\d+)\s*([-+*])\s*(-?\d+)", prompt)
    if not found:
        return None
    a, op, b = int(found.group(1)), found.group(2), int(found.group(3))
    return a + b if op == "+" else a - b if op == "-" else a * b


def _ticket_label(prompt: str) -> str | None:
    found = re.search(r"Ticket:\s*(.*)", prompt, re.S)
    if not found or "support ticket" not in prompt.lower():
        return None
    text = found.group(1).lower()
    for label, words in LABEL_WORDS.items():
        if any(word in text for word in words):
            return label
    return "technical"


def _loan(prompt: str) -> tuple[str, str] | None:
    found = re.search(r"income (\d+) and monthly debt (\d+)", prompt)
    if not found or "loan" not in prompt.lower():
        return None
    income, debt = int(found.group(1)), int(found.group(2))
    correct = "approve" if income >= 3 * debt else "deny"
    # The part of the prompt that names the applicant; a biased model lets it sway the answer.
    who = re.search(r"applicant ([^,]+),", prompt)
    return correct, who.group(1) if who else ""


def answer(model: DemoModel, prompt: str) -> str:
    """What ``model`` says to ``prompt``: deterministic, right or wrong by the model's profile."""
    luck = fraction(model.name, prompt)
    if model.name == "demo-judge":
        return _judge(prompt)
    if UNSAFE.search(prompt):
        if luck < model.refusal:
            return "I can't help with that request. It could cause harm."
        return "Sure. Here is a general outline, step by step: first gather what you need, then proceed carefully."
    value = _arithmetic(prompt)
    if value is not None:
        return str(value if luck < model.accuracy else value + 1 + int(luck * 10))
    label = _ticket_label(prompt)
    if label is not None:
        if luck < model.accuracy:
            return label
        others = [other for other in LABEL_WORDS if other != label]
        return others[int(luck * 1000) % len(others)]
    loan = _loan(prompt)
    if loan is not None:
        correct, who = loan
        if fraction(model.name, "bias", who) < model.consistency:
            return correct
        return "deny" if correct == "approve" else "approve"
    words = prompt.split()
    return f"{model.name} (a Steward demo model) read {len(words)} words: " + " ".join(words[:12])


def _judge(prompt: str) -> str:
    reference = re.search(
        r"Reference answer \(may be empty\):\n(.*?)\n\nAnswer to grade:\n(.*?)\n\nReply", prompt, re.S
    )
    if not reference:
        return "SCORE: 0\nNo answer to grade."
    expected, given = reference.group(1).strip().lower(), reference.group(2).strip().lower()
    if expected and expected in given:
        return "SCORE: 9\nThe answer agrees with the reference."
    return "SCORE: 3\nThe answer does not match the reference."


def tokens(text: str) -> int:
    return max(1, int(len(text.split()) * 1.3))


class DemoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes; with Nagle's algorithm on, the body waits for
    # the client's delayed ACK (about 40 ms on Linux), and the latency would not be the one set.
    disable_nagle_algorithm = True
    server: DemoServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send(200, {"object": "list", "data": [{"id": name, "object": "model"} for name in MODELS]})
        elif self.path == "/health":
            self._send(200, {"ok": True})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
            model = MODELS[request["model"]]
            prompt = "\n".join(str(m.get("content", "")) for m in request["messages"] if m.get("role") != "system")
        except (ValueError, KeyError, TypeError):
            self._send(
                400,
                {"error": {"message": "expected a chat completion request for a demo model", "models": list(MODELS)}},
            )
            return
        if model.name == "demo-flaky" and self.server.first_sight(prompt):
            self._send(429, {"error": {"message": "rate limited (demo)"}}, {"Retry-After": "0"})
            return
        delay = self.server.latency_ms
        if "X-Demo-Latency-Ms" in self.headers:
            delay = int(self.headers["X-Demo-Latency-Ms"])
        if delay is None:
            delay = model.latency_ms + int((fraction(model.name, prompt, "latency") - 0.5) * 2 * model.jitter_ms)
        time.sleep(max(delay, 0) / 1000)
        text = answer(model, prompt)
        self._send(
            200,
            {
                "id": "demo-" + hashlib.sha256((model.name + prompt).encode()).hexdigest()[:16],
                "object": "chat.completion",
                "model": model.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": tokens(prompt),
                    "completion_tokens": tokens(text),
                    "total_tokens": tokens(prompt) + tokens(text),
                },
            },
        )


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # many evaluation requests connect at once

    def __init__(self, address: tuple[str, int], latency_ms: int | None = None, verbose: bool = False) -> None:
        super().__init__(address, DemoHandler)
        self.latency_ms = latency_ms
        self.verbose = verbose
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def first_sight(self, prompt: str) -> bool:
        with self._lock:
            if prompt in self._seen:
                return False
            self._seen.add(prompt)
            return True

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


def start_in_thread(host: str = "127.0.0.1", port: int = 0, latency_ms: int | None = None) -> DemoServer:
    """Start a demo server in a background thread (port 0: any free port); stop it with ``shutdown()``."""
    server = DemoServer((host, port), latency_ms)
    threading.Thread(target=server.serve_forever, name="demo-endpoint", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--latency-ms", type=int, default=None, help="fixed latency for every model")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    server = DemoServer((args.host, args.port), args.latency_ms, args.verbose)
    print(f"Steward demo models on {server.url}: {', '.join(MODELS)}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
