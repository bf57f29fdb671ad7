"""The one-call check of a well-formed batch (``audits.records.check_body``) against the long way
(``parse_json_batch`` then ``check_records``): whatever body the one call accepts, the long way
accepts too, every record clean with the same values; what it refuses, it leaves to the long way.

Odd JSON first (duplicate members, numbers written as floats, a byte-order mark, trailing text,
control characters, huge integers, times without a zone), then hypothesis' batches of the property
tests written out with random spacing.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from audits.api import storable_text_only
from audits.records import check_body, check_records
from steward.parsers import JSONBodyError, parse_json_batch

from .test_decision_properties import FIELDS, batches

RECORD = (
    '{"request_id":"a","occurred_at":"2026-11-28T12:00:00Z","task":"t","classification":"c","model":"m",'
    '"policy_version":1,"latency_ms":1,"input_tokens":1,"output_tokens":1,"cost_micro_usd":1%s}'
)


def body_of(*members: str, wrap: str = '{"records":[%s]}') -> bytes:
    return (wrap % ",".join(RECORD % member for member in members)).encode()


def the_long_way(body: bytes) -> list | None:
    """The records' clean values the long way, or None when the body or any record is refused."""
    try:
        document = parse_json_batch(body, "records", 30)
    except JSONBodyError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("records"), list):
        return None
    answers = check_records(document["records"], text_checked=storable_text_only(body))
    return None if any(errors for _, errors in answers) else [values for values, _ in answers]


def agrees(body: bytes) -> bool:
    """True when the one call accepted ``body`` (and then it must agree); False when it left it."""
    fast = check_body(body) if storable_text_only(body) else None
    if fast is None:
        return False
    assert fast == the_long_way(body)
    return True


@pytest.mark.parametrize(
    "body",
    [
        body_of(""),
        body_of("", ',"task":"u"'),  # a member twice: the last counts, both ways
        body_of(',"input":null,"input":"x"'),
        body_of(',"latency_ms":-0'),
        body_of(',"task":"\\u0074"'),
        body_of(',"task":" t "'),  # stripped
        body_of(',"task":"é","input":"naïve ✓"'),
        body_of(',"occurred_at":"2026-11-28 12:00:00+05:30"'),
        body_of(',"input":null,"output":null,"input_sha256":null'),
        b'{"records":[], "records":[' + body_of("")[12:],
        body_of("") + b"  \n",
        b'{"records":[]}',
    ],
)
def test_what_the_one_call_accepts_the_long_way_accepts_with_the_same_values(body):
    assert agrees(body)


@pytest.mark.parametrize(
    "body",
    [
        body_of(',"latency_ms":1.0'),
        body_of(',"latency_ms":1e2'),
        body_of(',"latency_ms":01'),
        body_of(',"latency_ms":true'),
        body_of(',"latency_ms":NaN'),
        body_of(',"latency_ms":1' + "0" * 5000),
        body_of(',"occurred_at":"2026-11-28T12:00:00"'),
        body_of(',"occurred_at":1700000000'),
        body_of(',"input":"a\tb"'),
        body_of(',"input":"a\\u0000b"'),
        body_of(',"task":"\\ud800"'),
        body_of(',"router_field":{"any":[1]}'),  # a member of the router's own: the long way ignores it
        body_of(',"input":"x"', wrap='{"records":[%s],"sent_by":"r1"}'),
        body_of(" x"),
        "\ufeff".encode() + body_of(""),
        body_of("").decode().encode("utf-16"),
        b'[{"records":[]}]',
    ],
)
def test_what_the_one_call_refuses_goes_the_long_way(body):
    assert not agrees(body)


def spaced(document, rng: st.DataObject) -> bytes:
    """``document`` as JSON with spacing drawn by hypothesis."""
    separators = rng.draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]))
    text = json.dumps(document, separators=separators, ensure_ascii=rng.draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate as its bytes, as a careless router sends it


@settings(max_examples=60, deadline=None)
@given(batch=batches(), extras=st.booleans(), data=st.data())
def test_the_one_call_and_the_long_way_agree_on_any_batch(batch, extras, data):
    items, _, _ = batch
    if not extras:  # the records with their documented members only, which the one call may take
        items = [{k: v for k, v in item.items() if k in FIELDS} if isinstance(item, dict) else item for item in items]
    event("taken in one call" if agrees(spaced({"records": items}, data)) else "taken the long way")
