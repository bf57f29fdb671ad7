"""Decision records against what the columns hold: every bad record of a batch gets its own error,
the good records beside it are stored, and nothing answers 500.

Each case sends the batch [good, bad, good] as raw JSON text (so that what ``json.dumps`` cannot
write, a 100,000-deep record or a 5,000-digit integer, is sent too).
"""

from __future__ import annotations

import json

import pytest

from audits.models import DecisionRecord, DecisionRollup
from audits.records import MAX_COST_MICRO_USD, MAX_LATENCY_MS, MAX_TOKENS

from .conftest import decision

pytestmark = pytest.mark.django_db


def _with(**fields) -> str:
    return json.dumps(decision(2, **fields))


def _raw_field(name: str, text: str) -> str:
    """Record 2 with ``name`` set to ``text``, raw JSON that json.dumps would not write."""
    record = decision(2)
    record[name] = "__RAW__"
    return json.dumps(record).replace('"__RAW__"', text)


DEEP = "[" * 100_000 + "]" * 100_000

# (case, the bad record as JSON text, the field its error names)
BAD_RECORDS = [
    ("task longer than its column (60)", _with(task="t" * 61), "task"),
    ("classification longer than its column (50)", _with(classification="c" * 51), "classification"),
    ("request_id longer than its column (128)", _with(request_id="r" * 129), "request_id"),
    ("model longer than its column (200)", _with(model="acme/" + "m" * 200), "model"),
    ("latency_ms at 2^31", _with(latency_ms=2**31), "latency_ms"),
    ("input_tokens at 2^31", _with(input_tokens=2**31), "input_tokens"),
    ("output_tokens at 2^31", _with(output_tokens=2**31), "output_tokens"),
    ("policy_version at 2^31", _with(policy_version=2**31), "policy_version"),
    ("policy_version 0", _with(policy_version=0), "policy_version"),
    ("cost_micro_usd at 2^63", _with(cost_micro_usd=2**63), "cost_micro_usd"),
    ("cost_micro_usd at 2^63 - 1, which the column holds", _with(cost_micro_usd=2**63 - 1), "cost_micro_usd"),
    ("cost_micro_usd past $1,000,000", _with(cost_micro_usd=MAX_COST_MICRO_USD + 1), "cost_micro_usd"),
    ("input_tokens past a billion", _with(input_tokens=MAX_TOKENS + 1), "input_tokens"),
    ("output_tokens past a billion", _with(output_tokens=MAX_TOKENS + 1), "output_tokens"),
    ("latency_ms past a day", _with(latency_ms=MAX_LATENCY_MS + 1), "latency_ms"),
    ("negative latency", _with(latency_ms=-1), "latency_ms"),
    ("a 5,000-digit integer", _raw_field("latency_ms", "9" * 5000), "latency_ms"),
    ("a float for an integer", _with(input_tokens=1.5), "input_tokens"),
    ("true for an integer", _with(output_tokens=True), "output_tokens"),
    ("a numeric string for an integer", _with(latency_ms="420"), "latency_ms"),
    ("1 for a boolean", _with(escalated=1), "escalated"),
    ("February 30th", _with(occurred_at="2026-02-30T00:00:00Z"), "occurred_at"),
    ("an offset that ends past year 9999 in UTC", _with(occurred_at="9999-12-31T23:59:59-23:59"), "occurred_at"),
    ("an offset of 24 hours", _with(occurred_at="2026-11-28T12:00:00+24:00"), "occurred_at"),
    ("a time without a zone", _with(occurred_at="2026-11-28T12:00:00"), "occurred_at"),
    ("a Unix time number", _with(occurred_at=1_764_000_000), "occurred_at"),
    ("hour 25", _with(occurred_at="2026-11-28T25:00:00Z"), "occurred_at"),
    ("NUL in request_id", _with(request_id="req-\x002"), "request_id"),
    ("NUL in task", _with(task="ticket\x00triage"), "task"),
    ("NUL in classification", _with(classification="internal\x00"), "classification"),
    ("NUL in model", _with(model="acme/small-a@1\x00"), "model"),
    ("NUL in input", _with(input="a\x00b"), "input"),
    ("NUL in output", _with(output="\x00"), "output"),
    ("a lone surrogate in input", _raw_field("input", '"Ticket \\ud800"'), "input"),
    ("a lone surrogate in output", _raw_field("output", '"\\udfff"'), "output"),
    ("a lone surrogate in task", _raw_field("task", '"ticket-\\udc00"'), "task"),
    ("a lone surrogate in request_id", _raw_field("request_id", '"req-\\ud83d"'), "request_id"),
    ("input nested 100,000 deep", _raw_field("input", DEEP), "non_field_errors"),
    ("an extra member nested 100,000 deep", _raw_field("meta", DEEP), "non_field_errors"),
    ("the record itself nested 100,000 deep", DEEP, "non_field_errors"),
    ("an extra member nested 40 deep", _raw_field("meta", "[" * 40 + "]" * 40), "non_field_errors"),
    ("a digest that is not SHA-256 hex", _with(input_sha256="ABC"), "input_sha256"),
    ("content over a million characters", _with(input="x" * 1_000_001), "input"),
    ("a list for a string", _with(task=["ticket-triage"]), "task"),
    ("null for a required string", _with(model=None), "model"),
    ("a missing field", json.dumps({k: v for k, v in decision(2).items() if k != "occurred_at"}), "occurred_at"),
    ("a blank request_id", _with(request_id="   "), "request_id"),
    ("a number for a record", "5", "non_field_errors"),
    ("a 5,000-digit number for a record", "7" * 5000, "non_field_errors"),
]


def post_raw(client, token: str, body: str):
    return client.post("/api/v1/decisions", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.mark.parametrize(("bad", "field"), [case[1:] for case in BAD_RECORDS], ids=[case[0] for case in BAD_RECORDS])
def test_a_bad_record_gets_its_error_and_the_good_ones_of_its_batch_are_stored(world, client, bad, field):
    body = '{"records": [' + json.dumps(decision(1)) + ", " + bad + ", " + json.dumps(decision(3)) + "]}"
    response = post_raw(client, world["token"], body)
    assert response.status_code == 200, response.content[:500]
    answer = response.json()
    assert (answer["accepted"], answer["rejected"], answer["duplicates"]) == (2, 1, 0), answer
    [error] = answer["errors"]
    assert error["index"] == 1
    assert field in error["errors"], error
    assert all(isinstance(m, str) and m for messages in error["errors"].values() for m in messages)
    assert sorted(DecisionRecord.objects.values_list("request_id", flat=True)) == ["req-1", "req-3"]


def test_the_messages_name_the_rule_the_column_sets(world, client):
    records = [
        decision(1, task="t" * 61),
        decision(2, latency_ms=2**31),
        decision(3, occurred_at="2026-02-30T00:00:00Z"),
        decision(4, occurred_at="9999-12-31T23:59:59-23:59"),
        decision(5, input="\x00"),
        decision(6, cost_micro_usd=2**62),
        decision(7, input_tokens=MAX_TOKENS + 1),
    ]
    answer = post_raw(client, world["token"], json.dumps({"records": records})).json()
    errors = {e["index"]: e["errors"] for e in answer["errors"]}
    assert errors[0] == {"task": ["At most 60 characters, what the column holds."]}
    assert errors[1] == {"latency_ms": ["At most 86400000: a day in milliseconds, the longest a decision may take."]}
    assert "day value is outside expected range" in errors[2]["occurred_at"][0]
    assert errors[3] == {"occurred_at": ["Must fall between the years 1 and 9999 in UTC."]}
    assert errors[4] == {"input": ["Must not contain a NUL character (\\u0000): no text column can store one."]}
    assert errors[5] == {"cost_micro_usd": ["At most 1000000000000: $1,000,000, the most one decision may cost."]}
    assert errors[6] == {"input_tokens": ["At most 1000000000: a billion, the most tokens one decision may count."]}
    assert [e["request_id"] for e in answer["errors"]] == [f"req-{n}" for n in range(1, 8)]
    assert not DecisionRecord.objects.exists()


def test_the_largest_values_the_columns_and_bounds_allow_are_stored(world, client):
    record = decision(
        1,
        task="t" * 60,
        classification="c" * 50,
        request_id="r" * 128,
        latency_ms=MAX_LATENCY_MS,
        input_tokens=MAX_TOKENS,
        output_tokens=MAX_TOKENS,
        cost_micro_usd=MAX_COST_MICRO_USD,
        occurred_at="2026-11-28T12:00:00-23:59",
    )
    answer = post_raw(client, world["token"], json.dumps({"records": [record]})).json()
    assert answer["accepted"] == 1, answer
    stored = DecisionRecord.objects.get()
    assert (stored.latency_ms, stored.input_tokens, stored.cost_micro_usd, len(stored.task)) == (
        MAX_LATENCY_MS,
        MAX_TOKENS,
        MAX_COST_MICRO_USD,
        60,
    )
    assert stored.occurred_at.isoformat() == "2026-11-29T11:59:00+00:00"


def test_records_near_the_64_bit_limit_are_refused_each_before_their_sums_overflow_a_rollup(world, client):
    # Two costs of 2^62 fit the column each but not a rollup's sum: refused per record, not a 500.
    moment = "2026-11-28T12:00:00Z"
    records = [decision(n, occurred_at=moment, cost_micro_usd=2**62) for n in (1, 2)]
    records.append(decision(3, occurred_at=moment))
    answer = post_raw(client, world["token"], json.dumps({"records": records})).json()
    assert (answer["accepted"], answer["rejected"]) == (1, 2), answer
    assert [set(e["errors"]) for e in answer["errors"]] == [{"cost_micro_usd"}, {"cost_micro_usd"}]


def test_a_full_batch_at_every_bound_in_one_rollup_group_is_summed_exactly(world, client):
    moment = "2026-11-28T12:00:00Z"
    records = [
        decision(
            n,
            occurred_at=moment,
            latency_ms=MAX_LATENCY_MS,
            input_tokens=MAX_TOKENS,
            output_tokens=MAX_TOKENS,
            cost_micro_usd=MAX_COST_MICRO_USD,
        )
        for n in range(1000)
    ]
    for _ in range(3):  # three batches, the same group and hour: 3,000 records at the bounds
        answer = post_raw(client, world["token"], json.dumps({"records": records})).json()
        assert (answer["accepted"], answer["rejected"]) == (1000, 0), answer
        records = [{**r, "request_id": r["request_id"] + "-again"} for r in records]
    [rollup] = DecisionRollup.objects.all()
    assert (rollup.requests, rollup.cost_micro_usd, rollup.input_tokens, rollup.output_tokens) == (
        3000,
        3000 * MAX_COST_MICRO_USD,
        3000 * MAX_TOKENS,
        3000 * MAX_TOKENS,
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"records": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}", 400),
        (b'{"meta": ' + b"[" * 100_000 + b"]" * 100_000 + b', "records": []}', 400),
        (b'{"records": [], "n": ' + b"1" * 5000 + b"}", 200),
        (b'{"records": [NaN]}', 400),
        (b'{"records": [1] ', 400),
        (b'\xff{"records": []}', 400),
    ],
    ids=["records-object-too-deep", "other-member-too-deep", "huge-integer-outside", "nan", "cut-short", "not-utf8"],
)
def test_bodies_that_cannot_be_read_item_by_item_answer_400_and_store_nothing(world, client, body, status):
    response = client.post(
        "/api/v1/decisions", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {world['token']}"
    )
    assert response.status_code == status, response.content[:300]
    if status == 400:
        assert "records" in response.json()
    assert not DecisionRecord.objects.exists()


@pytest.mark.parametrize("length", ["ten", "-5", "1e9", "99999999999999999999999"])
def test_a_bad_content_length_is_a_4xx(world, client, length):
    response = client.post(
        "/api/v1/decisions",
        json.dumps({"records": [decision(1)]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {world['token']}",
        CONTENT_LENGTH=length,
    )
    assert 400 <= response.status_code < 500
    assert response.json()
