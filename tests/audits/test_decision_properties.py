"""Routers may send anything: no decision batch answers 500, and every well-formed record is stored
exactly once, whatever odd records share its batch and however often the batch is sent again.

"Well-formed" is written here from the record's documented shape (docs/policy-feed.md and the
columns), not read from the validator: hypothesis draws records inside those bounds (with unknown
members routers may add, and often the same hour, task, classification and model, so that records
at the bounds add up in one rollup row), records with one member replaced by arbitrary JSON (lone
surrogates, NUL, integers past 64 bits, nesting), records with one figure past its documented bound
(which must be refused, each with an error naming that figure), and things that are not records at
all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audits.models import DecisionRecord

pytestmark = pytest.mark.django_db

FIELDS = (
    "request_id",
    "occurred_at",
    "task",
    "classification",
    "model",
    "policy_version",
    "fallback_used",
    "escalated",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "cost_micro_usd",
    "input",
    "output",
    "input_sha256",
    "output_sha256",
    "policy_set",
)
REQUIRED = FIELDS[:6] + FIELDS[8:12]
INT32 = 2**31 - 1
INT64 = 2**63 - 1
# The documented bounds of the figures Steward adds up (docs/policy-feed.md).
BOUNDS = {"latency_ms": 86_400_000, "input_tokens": 10**9, "output_tokens": 10**9, "cost_micro_usd": 10**12}
A_MOMENT = "2026-11-28T12:34:56+00:00"

# Storable text: any character but controls (NUL among them) and surrogates; no edge whitespace,
# which the record's strings shed.
STORABLE = st.characters(blacklist_categories=("Cs", "Cc"))


def words(most: int) -> st.SearchStrategy[str]:
    return st.text(STORABLE, min_size=1, max_size=most).filter(lambda text: text == text.strip() and text != "")


LONE_SURROGATE = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, blacklist_categories=()), min_size=1)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=INT32 - 2, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.just("a\x00b")
    | LONE_SURROGATE
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)


@st.composite
def times(draw) -> str:
    moment = draw(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1)))
    zone = dt.timezone(dt.timedelta(minutes=draw(OFFSETS)))
    return moment.replace(tzinfo=zone).isoformat()


def figure(name: str) -> st.SearchStrategy[int]:
    """A figure within its bound, often the bound itself (where sums overflow first)."""
    return st.integers(0, BOUNDS[name]) | st.just(BOUNDS[name])


@st.composite
def good_records(draw, request_id: str) -> dict:
    record = {
        "request_id": request_id,
        "occurred_at": draw(st.just(A_MOMENT) | times()),
        "task": draw(st.just("ticket-triage") | words(60)),
        "classification": draw(st.just("internal") | words(50)),
        "model": draw(st.just("acme/small-a@1") | words(200)),
        "policy_version": draw(st.just(1) | st.integers(1, INT32)),
        **{name: draw(figure(name)) for name in BOUNDS},
    }
    optional = {
        "fallback_used": st.booleans(),
        "escalated": st.booleans(),
        "input": st.none() | st.text(STORABLE, max_size=200),
        "output": st.none() | st.text(STORABLE, max_size=200),
        "policy_set": st.just("production"),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            record[name] = draw(strategy)
    # Members Steward does not know are the router's own business: ignored, never a reason to refuse.
    extra = draw(st.dictionaries(st.text(max_size=8).filter(lambda key: key not in FIELDS), ANY_JSON, max_size=2))
    return {**extra, **record}


@st.composite
def batches(draw) -> tuple[list, dict[str, dict], dict[str, str]]:
    """A batch, its well-formed records by request id, and the request ids of records with a figure
    past its bound, with that figure's name."""
    prefix = uuid.uuid4().hex[:12]
    items: list = []
    good: dict[str, dict] = {}
    beyond: dict[str, str] = {}
    for index in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["good", "good", "good", "beyond", "changed", "changed", "dropped", "anything"]))
        if kind == "anything":
            items.append(draw(ANY_JSON))
            continue
        prefixes = {"good": prefix, "beyond": f"big-{prefix}"}
        record = draw(good_records(f"{prefixes.get(kind, 'odd-' + prefix)}-{index}"))
        if kind == "changed":
            record[draw(st.sampled_from(FIELDS[1:]))] = draw(ANY_JSON)
        elif kind == "dropped":
            del record[draw(st.sampled_from(REQUIRED))]
        elif kind == "beyond":
            name = draw(st.sampled_from(sorted(BOUNDS)))
            record[name] = draw(st.integers(BOUNDS[name] + 1, INT64) | st.just(INT64) | st.just(BOUNDS[name] + 1))
            beyond[record["request_id"]] = name
        else:
            good[record["request_id"]] = record
        items.append(record)
    return items, good, beyond


def _post(client, token: str, body: str):
    return client.post("/api/v1/decisions", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


def _as_stored(record: dict, stored: DecisionRecord) -> None:
    assert stored.occurred_at == dt.datetime.fromisoformat(record["occurred_at"])
    for name in ("task", "classification", "model", "policy_version", "latency_ms", "input_tokens"):
        assert getattr(stored, name) == record[name], name
    assert (stored.output_tokens, stored.cost_micro_usd) == (record["output_tokens"], record["cost_micro_usd"])
    assert (stored.fallback_used, stored.escalated) == (
        record.get("fallback_used", False),
        record.get("escalated", False),
    )
    content = record.get("input") or ""
    assert stored.input_sha256 == (hashlib.sha256(content.encode()).hexdigest() if content else "")


SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@SETTINGS
@given(batch=batches())
def test_every_well_formed_record_is_stored_exactly_once(world, client, batch):
    items, good, beyond = batch
    body = json.dumps({"records": items})
    first = _post(client, world["token"], body)
    foreign = [i for i in items if isinstance(i, dict) and isinstance(i.get("policy_set"), str)]
    if any(item["policy_set"] != "production" for item in foreign):
        # A record naming another policy set is the router reporting for a set it may not: the whole
        # batch is refused before anything is stored.
        assert first.status_code == 403, first.content[:500]
        assert not DecisionRecord.objects.filter(request_id__in=list(good)).exists()
        return
    assert first.status_code == 200, first.content[:500]
    answer = first.json()
    assert answer["accepted"] + answer["duplicates"] + answer["rejected"] == len(items)
    refused = {error["request_id"]: error["errors"] for error in answer["errors"]}
    assert not set(refused) & set(good), answer["errors"]
    for request_id, name in beyond.items():
        assert name in refused[request_id], refused[request_id]
    assert not DecisionRecord.objects.filter(request_id__in=list(beyond)).exists()
    again = _post(client, world["token"], body)
    assert again.status_code == 200 and again.json()["accepted"] == 0
    for request_id, record in good.items():
        [stored] = DecisionRecord.objects.filter(router=world["router"], request_id=request_id)
        _as_stored(record, stored)


@SETTINGS
@given(document=ANY_JSON | st.dictionaries(st.just("records"), st.lists(ANY_JSON, max_size=6), min_size=1))
def test_no_body_answers_500(world, client, document):
    before = DecisionRecord.objects.count()
    response = _post(client, world["token"], json.dumps(document))
    assert response.status_code in (200, 400, 403), response.content[:500]
    body = response.json()
    if response.status_code != 200:
        assert DecisionRecord.objects.count() == before
    else:
        assert DecisionRecord.objects.count() == before + body["accepted"]
