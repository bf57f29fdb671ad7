"""DecisionReporter on its own, as an in-house router uses it: batches, the disk spool, retries, shared spools.

The Steward side here is a small HTTP server on 127.0.0.1 that stores records by request id the
way Steward does (a repeat counts as a duplicate) and can be told to refuse or to go away.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from steward_client import DecisionReporter
from steward_client.reporter import Spool

from .conftest import wait_for


@dataclass
class FakeSteward:
    """Answers POST /api/v1/decisions like Steward: accepted, duplicates, per-record errors."""

    status: int = 200
    stored: dict[str, int] = field(default_factory=dict)  # request id → times received
    batches: list[int] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self, port: int = 0) -> FakeSteward:
        steward = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                records = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["records"]
                if steward.status != 200:
                    self.send_response(steward.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with steward.lock:
                    steward.batches.append(len(records))
                    fresh = [r for r in records if r["request_id"] not in steward.stored]
                    for record in records:
                        steward.stored[record["request_id"]] = steward.stored.get(record["request_id"], 0) + 1
                body = json.dumps({"accepted": len(fresh), "duplicates": len(records) - len(fresh), "errors": []})
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> int:
        port = self.server.server_address[1]
        self.server.shutdown()
        self.server.server_close()
        return port


@pytest.fixture
def steward() -> Iterator[FakeSteward]:
    server = FakeSteward().start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def transactional_db() -> None:
    """No database here."""


def record(number: int) -> dict:
    return {
        "request_id": f"req-{number}",
        "occurred_at": "2026-11-28T12:00:00Z",
        "task": "ticket-triage",
        "classification": "public",
        "model": "demo/swift@1",
        "policy_version": 1,
        "latency_ms": 40,
        "input_tokens": 10,
        "output_tokens": 2,
        "cost_micro_usd": 1,
    }


def reporter_for(url: str, spool, **options) -> DecisionReporter:
    options.setdefault("flush_interval", 0.1)
    options.setdefault("retry_initial", 0.1)
    options.setdefault("retry_max", 0.2)
    return DecisionReporter(url, "swr_test", spool, **options)


def test_records_go_in_batches_of_at_most_a_thousand(steward, tmp_path):
    reporter = reporter_for(steward.url, tmp_path / "spool", flush_interval=5)
    for number in range(2500):
        reporter.report(record(number))
    assert reporter.drain(20)
    reporter.close()
    assert sorted(steward.batches, reverse=True)[:2] == [1000, 1000] and sum(steward.batches) == 2500
    assert reporter.delivered == 2500


def test_while_steward_is_away_records_wait_on_disk_and_arrive_once_when_it_is_back(steward, tmp_path):
    port = steward.stop()
    reporter = reporter_for(steward.url, tmp_path / "spool")
    for number in range(300):
        reporter.report(record(number))
    wait_for(lambda: reporter.spool_state().records == 300, 10, "300 spooled records")
    state = reporter.spool_state()
    assert state.batches >= 1 and state.bytes > 0 and state.oldest_at is not None
    assert state.as_status()["spool_records"] == 300
    steward.start(port)
    assert reporter.drain(20)
    reporter.close()
    assert len(steward.stored) == 300 and set(steward.stored.values()) == {1}
    assert reporter.spool_state().records == 0


def test_a_full_spool_drops_new_batches_and_counts_them(tmp_path):
    reporter = reporter_for("http://127.0.0.1:9", tmp_path / "spool", max_spool_bytes=2000)
    for number in range(100):
        reporter.report(record(number))
    wait_for(lambda: reporter.spool_state().dropped > 0, 10, "a dropped batch")
    reporter.close(1)
    state = reporter.spool_state()
    assert state.bytes <= 2000
    assert state.records + state.dropped == 100
    assert state.as_status()["spool_dropped"] == state.dropped


def test_a_batch_steward_refuses_for_good_is_not_retried(steward, tmp_path):
    steward.status = 400
    reporter = reporter_for(steward.url, tmp_path / "spool")
    reporter.report(record(1))
    wait_for(lambda: reporter.rejected == 1, 10, "the refusal")
    reporter.close()
    assert reporter.spool_state().records == 0


def test_a_5xx_keeps_the_batch_for_later(steward, tmp_path):
    steward.status = 503
    reporter = reporter_for(steward.url, tmp_path / "spool")
    reporter.report(record(1))
    wait_for(lambda: reporter.spool_state().records == 1, 10, "the spooled batch")
    steward.status = 200
    assert reporter.drain(10)
    reporter.close()
    assert steward.stored == {"req-1": 1}


def test_two_processes_sharing_a_spool_deliver_each_batch_once(steward, tmp_path):
    spool = Spool(tmp_path / "spool")
    for batch in range(40):
        records = [record(batch * 10 + n) for n in range(10)]
        spool.put(json.dumps({"records": records}).encode(), len(records))
    # A batch claimed by a process that died is put back.
    stray = spool.claim()
    os.rename(stray, stray.with_name(stray.name.replace(f".{os.getpid()}.", ".999999999.")))
    script = (
        "import sys; from steward_client import DecisionReporter\n"
        "r = DecisionReporter(sys.argv[1], 'swr_test', sys.argv[2], flush_interval=0.05)\n"
        "assert r.drain(30); r.close()\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.getcwd()}
    workers = [
        subprocess.Popen([sys.executable, "-c", script, steward.url, str(tmp_path / "spool")], env=env)  # noqa: S603
        for _ in range(2)
    ]
    assert [worker.wait(60) for worker in workers] == [0, 0]
    assert len(steward.stored) == 400
    assert set(steward.stored.values()) == {1}, "a batch was sent twice"
