"""Enforcer on its own: the rules a gateway applies to each request, on the worked example's policy.

The policy is the one docs/policy-feed.md signs (read from the document, so it cannot drift),
with a cost cap added where a test needs one.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import pytest

from steward_client import Enforcer, Policy, Refusal
from steward_client.enforcement import EscalationBudget, cost_micro_usd

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy-feed.md"
ISSUED = dt.datetime(2025, 6, 2, 9, tzinfo=dt.UTC).timestamp()


@pytest.fixture
def transactional_db() -> None:
    """No database here."""


@pytest.fixture
def payload() -> dict:
    text = DOC.read_text()
    block = re.search(r"<!-- example:payload-pretty -->\n```json\n(.*?)\n```", text, re.S).group(1)
    return json.loads(block)


def enforcer(payload: dict, **options) -> Enforcer:
    return Enforcer(Policy(payload), **options)


def test_the_route_gives_primary_then_fallbacks(payload):
    plan = enforcer(payload).plan(
        "ticket-triage", [{"role": "user", "content": "hi"}], metadata={"classification": "internal"}, now=ISSUED
    )
    assert plan.chain == ["openai/gpt-4o-mini@2024-07-18", "mistral/mistral-small@2501", "google/gemini-2.0-flash@001"]
    assert (plan.timeout_seconds, plan.escalation, plan.storage) == (5.0, None, "content")


@pytest.mark.parametrize(
    ("model", "metadata", "tags", "rule"),
    [
        ("ticket-triage", {}, None, "classification-missing"),
        ("ticket-triage", {}, ["internal", "public"], "classification-ambiguous"),
        ("ticket-triage", {"classification": ""}, None, "classification-missing"),
        ("ticket-triage", {"classification": "pii"}, None, "unknown-classification"),
        ("contract-review", {"classification": "internal"}, None, "unknown-task"),
        ("openai/gpt-4o-2024-08-06", {"classification": "internal"}, None, "direct-model"),
        ("gpt-4o-mini-2024-07-18", {"classification": "internal"}, None, "direct-model"),
        ("ticket-triage--escalation", {"classification": "internal"}, None, "direct-model"),
    ],
)
def test_refusals_name_their_rule_and_the_version(payload, model, metadata, tags, rule):
    with pytest.raises(Refusal) as refused:
        enforcer(payload).plan(model, [], metadata=metadata, tags=tags, now=ISSUED)
    assert (refused.value.status, refused.value.rule, refused.value.policy_version) == (403, rule, 7)
    assert "production v7" in refused.value.message


def test_after_expiry_and_the_slack_nothing_is_routed(payload):
    rules = enforcer(payload)
    expires = dt.datetime(2025, 6, 9, 9, tzinfo=dt.UTC).timestamp()
    assert rules.plan("ticket-triage", [], tags=["internal"], now=expires + 299).chain
    with pytest.raises(Refusal) as refused:
        rules.plan("ticket-triage", [], tags=["internal"], now=expires + 301)
    assert (refused.value.status, refused.value.rule) == (503, "policy-expired")


def test_escalation_keeps_within_its_cap(payload):
    # 500 bp: at most 5 % of the route's requests escalate, however many callers report low confidence.
    rules = enforcer(payload, budget=EscalationBudget())
    escalated = 0
    for number in range(200):
        plan = rules.plan("ticket-triage", [], tags=["internal"], metadata={"confidence_bp": 1000}, now=ISSUED + number)
        answered = plan.chain[0]
        escalated += plan.escalated_upfront
        rules.record(
            plan.as_metadata(),
            request_id=str(number),
            model=answered,
            input_text="",
            output_text="",
            input_tokens=1,
            output_tokens=1,
            ended_at=ISSUED + number,
        )
    assert 0 < escalated <= 10


def test_a_request_over_the_primary_context_window_escalates(payload):
    rules = enforcer(payload, count_tokens=lambda ref, text: 200_000)
    plan = rules.plan("ticket-triage", [{"role": "user", "content": "long"}], tags=["internal"], now=ISSUED)
    assert plan.escalated_upfront and plan.chain[0] == "openai/gpt-4o@2024-08-06"


def test_the_cost_cap_bounds_output_and_refuses_an_input_it_cannot_pay_for(payload):
    capped = copy.deepcopy(payload)
    capped["routes"][0]["constraints"]["max_cost_micro_usd"] = 100
    rules = enforcer(capped, count_tokens=lambda ref, text: len(text))
    plan = rules.plan("ticket-triage", [{"role": "user", "content": "x" * 10}], tags=["internal"], now=ISSUED)
    dearest_output = 600_000  # gpt-4o-mini's, the dearest of the chain
    assert plan.max_tokens * dearest_output <= 100 * 1_000_000
    with pytest.raises(Refusal) as refused:
        rules.plan("ticket-triage", [{"role": "user", "content": "x" * 1_000_000}], tags=["internal"], now=ISSUED)
    assert refused.value.rule == "cost-cap"


def test_records_carry_the_policy_prices_and_digests_where_content_must_stay(payload):
    rules = enforcer(payload)
    plan = rules.plan("ticket-triage", [], tags=["internal"], now=ISSUED).as_metadata()
    record = rules.record(
        plan,
        request_id="r1",
        model="mistral/mistral-small@2501",
        input_text="user: hi",
        output_text="billing",
        input_tokens=1000,
        output_tokens=10,
        ended_at=ISSUED + 0.25,
    )
    assert (
        record["cost_micro_usd"]
        == cost_micro_usd({"input_micro_usd_per_mtok": 100_000, "output_micro_usd_per_mtok": 300_000}, 1000, 10)
        == 103
    )
    assert (record["fallback_used"], record["escalated"], record["latency_ms"]) == (True, False, 250)
    assert record["input"] == "user: hi" and "input_sha256" not in record
    plan["storage"] = "digest"
    record = rules.record(
        plan,
        request_id="r2",
        model="openai/gpt-4o-mini@2024-07-18",
        input_text="user: hi",
        output_text="billing",
        input_tokens=1,
        output_tokens=1,
    )
    assert (record["input"], record["output"]) == ("", "")
    assert record["input_sha256"] == hashlib.sha256(b"user: hi").hexdigest()
