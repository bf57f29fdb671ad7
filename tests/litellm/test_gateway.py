"""The LiteLLM proxy with Steward's plugin, two worker processes, in front of the demo endpoint.

Every test talks HTTP to the real proxy: routes answered by their primary, fallbacks,
escalation, the latency cap, every refusal, decisions reported (streamed or not, content or
only its digest), a Steward outage during traffic, and a newly published version taking effect
without a restart. The proxy's answer says which demo model wrote it; the decision records say
what the proxy reported.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from django.test import Client
from django.utils import timezone

from audits.models import DecisionContent, DecisionRecord, Violation
from portfolio import feed
from portfolio.models import PolicySet, Router, RouterReport
from steward_client import DecisionReporter

from .conftest import (
    DEMO_NAMES,
    GATEWAY_POLICY,
    POLL_SECONDS,
    ROOT,
    Gateway,
    Proxy,
    answered_by,
    call,
    http,
    publish_policy,
    refusal,
    start_proxy,
    stop_proxy,
    users,
    wait_for,
)

ROUTES = [
    # task, classification, primary
    ("ticket-triage", "public", "demo/swift@1"),
    ("ticket-triage", "internal", "demo/careful@1"),
    ("support-reply", "pii", "demo/budget@1"),
    ("contract-review", "confidential", "demo/careful@1"),
    ("marketing-copy", "public", "demo/budget@1"),
]


@pytest.fixture(scope="module")
def proxy(gateway: Gateway, tmp_path_factory) -> Iterator[Proxy]:
    running = start_proxy(
        tmp_path_factory.mktemp("litellm"), url=gateway.url, token=gateway.token, root=gateway.root, workers=2
    )
    # Both workers hold v1 once the router has ACKed it (each worker ACKs on its own).
    wait_for(lambda: gateway.router().applied_version == 1, what="the proxy's ACK of v1")
    yield running
    stop_proxy(running)


@pytest.fixture(autouse=True)
def _healthy_upstream(upstream) -> Iterator[None]:
    upstream.reset()
    yield
    upstream.reset()


def decision(request_id: str, timeout: float = 20.0) -> DecisionRecord:
    return wait_for(
        lambda: DecisionRecord.objects.filter(request_id=request_id).first(),
        timeout,
        f"the decision record of {request_id}",
    )


def request_id(response) -> str:
    return response.headers["x-litellm-call-id"]


@pytest.mark.parametrize(("task", "classification", "primary"), ROUTES)
def test_every_route_is_answered_by_its_primary(proxy, task, classification, primary):
    response = proxy.chat(task, "Label this support ticket: I was charged twice.", classification=classification)
    assert response.status == 200, response.body
    assert answered_by(response) == DEMO_NAMES[primary]
    record = decision(request_id(response))
    assert (record.task, record.classification, record.model) == (task, classification, primary)
    assert (record.policy_version, record.fallback_used, record.escalated) == (1, False, False)
    assert record.input_tokens > 0 and record.output_tokens > 0
    assert not record.has_violation


def test_one_tag_names_the_classification_as_well(proxy):
    response = proxy.chat("ticket-triage", tags=["internal"])
    assert response.status == 200, response.body
    assert answered_by(response) == "demo-careful"


def test_primary_failing_the_first_fallback_answers(proxy, upstream):
    upstream.failing.add("demo-swift")
    response = proxy.chat("ticket-triage", classification="public")
    assert response.status == 200, response.body
    assert answered_by(response) == "demo-budget"
    record = decision(request_id(response))
    assert (record.model, record.fallback_used, record.escalated) == ("demo/budget@1", True, False)


def test_an_error_escalates_when_the_route_says_so(proxy, upstream):
    upstream.failing.add("demo-budget")
    text = "Draft a reply to Ms Jones about her delayed refund."
    response = proxy.chat("support-reply", text, classification="pii")
    assert response.status == 200, response.body
    assert answered_by(response) == "demo-oracle"
    record = decision(request_id(response))
    assert (record.model, record.fallback_used, record.escalated) == ("demo/oracle@1", False, True)
    # Personal data is stored as digests only, and the digest was made in the proxy: no content left it.
    assert record.content_stored is False and not DecisionContent.objects.filter(decision_id=record.pk).exists()
    assert record.input_sha256 == hashlib.sha256(f"user: {text}".encode()).hexdigest()
    assert len(record.output_sha256) == 64


def test_low_confidence_reported_by_the_caller_escalates(proxy):
    response = proxy.chat("contract-review", classification="confidential", metadata={"confidence_bp": 4000})
    assert response.status == 200, response.body
    assert answered_by(response) == "demo-oracle"
    assert decision(request_id(response)).escalated is True


def test_a_request_over_the_context_window_escalates(proxy):
    # demo/careful@1 has a 16,000-token window; the oracle, the escalation target, takes it.
    response = proxy.chat("contract-review", "clause " * 30_000, classification="confidential")
    assert response.status == 200, response.body
    assert answered_by(response) == "demo-oracle"
    assert decision(request_id(response)).escalated is True


def test_the_latency_cap_times_out_to_the_next_model(proxy, upstream):
    upstream.slow["demo-careful"] = 5000  # the route's max_latency_ms is 1500
    response = proxy.chat("ticket-triage", classification="internal")
    assert response.status == 200, response.body
    assert answered_by(response) == "demo-budget"
    record = decision(request_id(response))
    assert (record.model, record.fallback_used) == ("demo/budget@1", True)


def test_a_failed_request_is_reported_once_with_the_last_model_tried(proxy, upstream):
    upstream.failing.update({"demo-swift", "demo-budget"})
    response = proxy.chat("ticket-triage", classification="public")
    assert response.status >= 500
    record = decision(request_id(response))
    assert (record.model, record.output_tokens) == ("demo/budget@1", 0)
    assert DecisionRecord.objects.filter(request_id=request_id(response)).count() == 1


def test_streamed_calls_are_reported_like_the_others(proxy):
    response = proxy.chat("ticket-triage", classification="public", stream=True)
    assert response.status == 200, response.body
    chunks = [line[6:] for line in response.body.decode().splitlines() if line.startswith("data: {")]
    text = "".join(json.loads(chunk)["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    assert text.startswith("demo-swift")
    record = decision(request_id(response))
    assert (record.model, record.read_content().output_content) == ("demo/swift@1", text)


REFUSALS = [
    # what the caller sends, the rule that refuses it
    ({"model": "ticket-triage"}, "classification-missing"),
    ({"model": "ticket-triage", "tags": []}, "classification-missing"),
    ({"model": "ticket-triage", "tags": ["phi", "internal"]}, "classification-ambiguous"),
    ({"model": "ticket-triage", "classification": "internal", "tags": ["public"]}, "classification-ambiguous"),
    ({"model": "ticket-triage", "classification": "secret"}, "unknown-classification"),
    ({"model": "ticket-triage", "classification": "pii"}, "no-route"),
    ({"model": "code-review", "classification": "public"}, "unknown-task"),
    ({"model": "openai/demo-swift", "classification": "public"}, "direct-model"),
    ({"model": "demo-swift", "classification": "public"}, "direct-model"),
    ({"model": "demo/swift@1", "classification": "public"}, "direct-model"),
    ({"model": "steward/demo/swift@1", "classification": "public"}, "direct-model"),
    ({"model": "ticket-triage--escalation", "classification": "public"}, "direct-model"),
    ({"model": "ticket-triage--fallback-1", "classification": "public"}, "direct-model"),
    ({"model": "marketing-copy", "classification": "public", "content": "word " * 2000}, "cost-cap"),
]


@pytest.mark.parametrize(("sent", "rule"), REFUSALS, ids=[f"{rule}-{i}" for i, (_, rule) in enumerate(REFUSALS)])
def test_each_refusal_is_a_403_naming_its_rule_and_reaches_no_model(proxy, upstream, sent, rule):
    before = len(upstream.calls)
    sent = dict(sent)
    response = proxy.chat(
        sent.pop("model"),
        sent.pop("content", "Label this ticket."),
        classification=sent.pop("classification", None),
        tags=sent.pop("tags", None),
    )
    got = refusal(response)
    assert (got["status"], got["rule"], got["type"]) == (403, rule, "steward_policy_refusal"), got
    assert got["provider_specific_fields"]["steward"]["policy_version"] == 1
    assert f"[rule: {rule}]" in got["message"] and "gateway v1" in got["message"]
    time.sleep(0.2)
    assert len(upstream.calls) == before, "a refused request reached the upstream"


def test_a_caller_cannot_send_a_request_past_the_policy(proxy, upstream):
    # Client-side fallbacks or a mock answer would take the request elsewhere. (An api_base in the
    # body LiteLLM's own key check refuses before any hook runs.)
    upstream.failing.add("demo-swift")
    response = proxy.chat(
        "ticket-triage",
        classification="public",
        fallbacks=["steward/demo/oracle@1"],
        mock_response="made up",
    )
    assert response.status == 200, response.body
    assert answered_by(response) == "demo-budget"  # the route's own fallback


def test_endpoints_the_policy_does_not_route_are_refused(proxy, upstream):
    before = len(upstream.calls)
    response = call(proxy.url, "/v1/embeddings", {"model": "ticket-triage", "input": "hello"})
    assert response.status == 403, response.body
    assert refusal(response)["rule"] == "endpoint-not-governed"
    assert len(upstream.calls) == before


def test_the_cost_cap_limits_the_answer_to_what_the_budget_leaves(proxy, upstream):
    response = proxy.chat("marketing-copy", "Write a slogan.", classification="public", max_tokens=100_000)
    assert response.status == 200, response.body
    record = decision(request_id(response))
    assert record.cost_micro_usd <= 50


def test_steward_down_while_500_requests_flow_loses_no_decision_and_stores_none_twice(proxy, gateway, relay):
    relay.stop()
    ids: list[str] = []
    lock = threading.Lock()

    def send(count: int) -> None:
        for _ in range(count):
            response = proxy.chat("ticket-triage", "Label this: refund please.", classification="public")
            assert response.status == 200, response.body
            with lock:
                ids.append(request_id(response))

    try:
        workers = [threading.Thread(target=send, args=(50,)) for _ in range(10)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert len(ids) == 500 and len(set(ids)) == 500
        # While Steward is down, every decision waits in the spool on disk (shared by both workers),
        # each once. (A record of an earlier test may wait there too: the spool is read, not counted.)
        deadline = time.monotonic() + 60
        while (waiting := spooled_request_ids(proxy)) is None or not set(ids) <= set(waiting):
            if time.monotonic() > deadline:
                stored = DecisionRecord.objects.filter(request_id__in=ids).count()
                pytest.fail(
                    f"after 60 s {len(set(ids) & set(waiting or []))} of the 500 decisions are in the spool "
                    f"and {stored} stored; the proxy's log ends:\n{proxy.log.read_text()[-3000:]}"
                )
            time.sleep(0.1)
        ours = set(ids)
        assert sum(request in ours for request in waiting) == 500, "a decision waits in the spool twice"
        assert DecisionRecord.objects.filter(request_id__in=ids).count() == 0
    finally:
        relay.start()
    wait_for(lambda: DecisionRecord.objects.filter(request_id__in=ids).count() == 500, 120, "all 500 decisions")
    time.sleep(2 * POLL_SECONDS)  # anything sent twice would have arrived by now
    stored = list(DecisionRecord.objects.filter(request_id__in=ids).values_list("request_id", flat=True))
    assert sorted(stored) == sorted(ids)
    assert spooled(proxy) == 0


def spooled_request_ids(proxy: Proxy) -> list[str] | None:
    """The request ids of every record in the spool; None when a batch moved while it was read."""
    request_ids: list[str] = []
    for path in (proxy.state_dir / "spool").glob("*.json*"):
        if path.name.startswith("."):
            continue  # a batch being written
        try:
            records = json.loads(path.read_bytes())["records"]
        except FileNotFoundError:
            return None  # claimed or released by a worker at this moment: read again
        request_ids.extend(record["request_id"] for record in records)
    return request_ids


def spooled(proxy: Proxy) -> int:
    total = 0
    for path in (proxy.state_dir / "spool").glob("*.json*"):
        if path.name.startswith("."):
            continue  # a batch being written
        total += int(path.name.split(".", 1)[0].rsplit("-", 1)[1])
    return total


def test_the_fleet_shows_a_router_that_cannot_report(proxy, gateway, relay, client_for):
    def refuse(handler) -> None:
        handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        handler.send_response(503)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    relay.overrides["/api/v1/decisions"] = refuse
    try:
        response = proxy.chat("ticket-triage", classification="public")
        assert response.status == 200
        router = wait_for(
            lambda: Router.objects.filter(pk=gateway.router_id, spool_records__gt=0).first(),
            60,
            "a status report with the spool's size",
        )
        assert router.spool_bytes > 0 and router.spool_oldest_at is not None
        page = client_for(users()["alice"]).get("/policies/fleet/").content.decode()
        assert f"{router.spool_records} waiting" in page
    finally:
        relay.overrides.clear()
    wait_for(lambda: DecisionRecord.objects.filter(request_id=request_id(response)).exists(), 60, "the delivery")
    wait_for(lambda: gateway.router().spool_records == 0, 60, "a status report of the empty spool")


@pytest.mark.parametrize("members", [{"spool_records": -1}, {"spool_records": 2**40}, {"spool_bytes": "many"}])
def test_a_status_report_with_bad_spool_figures_is_refused_and_changes_nothing(gateway, members):
    before = gateway.router().spool_records
    body = json.dumps({"status": "ack", "version": 1, **members}).encode()
    headers = {"Authorization": f"Bearer {gateway.token}", "Content-Type": "application/json"}
    response = http("POST", f"{gateway.url}/api/v1/policy-sets/gateway/status", headers, body)
    assert response.status == 400
    assert set(json.loads(response.body)) == set(members)
    assert gateway.router().spool_records == before


def test_reported_decisions_show_in_the_explorer_with_their_chain(proxy, client_for):
    response = proxy.chat("ticket-triage", "Label this: the export crashes.", classification="internal")
    record = decision(request_id(response))
    dave: Client = client_for(get_user("dave"))
    listing = dave.get("/audit/decisions/", {"task": "ticket-triage"}).content.decode()
    assert record.request_id in listing
    page = dave.get(record.get_absolute_url())
    assert page.status_code == 200
    body = page.content.decode()
    for part in ("chain-decision", "chain-model", "chain-policy", "chain-cell"):
        assert part in body
    assert "demo/careful@1" in body and "gateway" in body


def test_an_off_policy_decision_is_flagged_as_a_violation(gateway, client_for, tmp_path):
    # An in-house router reporting through the same DecisionReporter: it sent internal tickets to
    # a model the gateway's policy does not route them to.
    reporter = DecisionReporter(gateway.url, gateway.token, tmp_path / "spool")
    reporter.report(
        {
            "request_id": "in-house-off-policy-1",
            "occurred_at": timezone.now().isoformat(),
            "task": "ticket-triage",
            "classification": "internal",
            "model": "demo/oracle@1",
            "policy_version": 1,
            "latency_ms": 120,
            "input_tokens": 10,
            "output_tokens": 3,
            "cost_micro_usd": 9,
        }
    )
    assert reporter.drain(20)
    reporter.close()
    violation = Violation.objects.get(decision__request_id="in-house-off-policy-1")
    assert violation.kind == "model-not-allowed"
    assert "not demo/oracle@1" in violation.detail
    page = client_for(get_user("dave")).get("/audit/violations/").content.decode()
    assert "in-house-off-policy-1" in page or "demo/oracle@1" in page


def test_pull_on_change_runs_the_reload_command_before_the_ack(gateway, tmp_path):
    router, token = feed.register_router(PolicySet.objects.get(slug="gateway"), "in-house-1", by=None)
    (tmp_path / "token").write_text(token)
    (tmp_path / "root.json").write_bytes(gateway.root)
    marker = tmp_path / "reloaded"

    def pull(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "steward_client",
                "pull",
                "--url",
                gateway.url,
                "--policy-set",
                "gateway",
                "--token-file",
                str(tmp_path / "token"),
                "--trust-root",
                str(tmp_path / "root.json"),
                "--state-dir",
                str(tmp_path / "state"),
                "--once",
                "--on-change",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )

    failed = pull("echo cannot reload >&2; exit 4")
    assert failed.returncode == 1, failed.stderr
    router.refresh_from_db()
    assert (router.last_status, router.applied_version) == ("nack", None)
    assert "--on-change command exited 4: cannot reload" in router.last_error
    assert not (tmp_path / "state" / "envelope.json").exists()  # what the reload could not take is not kept

    done = pull(f'ls "$STEWARD_STATE_DIR/envelope.json" && echo "$STEWARD_POLICY_VERSION" > {marker}')
    assert done.returncode == 0, done.stderr
    assert marker.read_text().strip() == "1"
    router.refresh_from_db()
    assert (router.last_status, router.applied_version) == ("ack", 1)


def test_a_published_version_changes_routing_within_a_poll_and_the_fleet_shows_its_ack(proxy, gateway, client_for):
    pid = proxy.process.pid
    assert answered_by(proxy.chat("ticket-triage", classification="public")) == "demo-swift"
    changed = GATEWAY_POLICY.replace("    model: demo/swift@1\n", "    model: demo/careful@1\n")
    assert changed != GATEWAY_POLICY
    assert publish_policy(changed, "Ticket triage on Careful") == 2

    def routed_anew() -> bool:
        return answered_by(proxy.chat("ticket-triage", classification="public")) == "demo-careful"

    # Each of the two workers polls on its own: wait until both route to the new primary.
    wait_for(lambda: all(routed_anew() for _ in range(6)), 10 * POLL_SECONDS, "the new primary in both workers")
    assert proxy.process.poll() is None and proxy.process.pid == pid  # no restart
    router = wait_for(lambda: Router.objects.filter(pk=gateway.router_id, applied_version=2).first(), 10, "ACK v2")
    assert router.last_status == "ack"
    assert RouterReport.objects.filter(router=router, status="ack", version=2).exists()
    page = client_for(users()["alice"]).get("/policies/fleet/").content.decode()
    assert "litellm-edge-1" in page and "v2" in page
    assert hashlib.sha256(gateway.root).hexdigest() in page  # the trust root a router author compares
    # demo/swift@1 is no longer routed anywhere: its deployment left the proxy's router (in both workers).
    for _ in range(6):
        groups = {model["id"] for model in json.loads(call(proxy.url, "/v1/models").body)["data"]}
        assert groups == {"steward/demo/careful@1", "steward/demo/budget@1", "steward/demo/oracle@1"}
    response = proxy.chat("ticket-triage", classification="public")
    assert decision(request_id(response)).policy_version == 2


def get_user(username: str):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=username)
