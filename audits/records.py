"""The decision record as routers send it: one pydantic model, its bounds read from the columns of
``DecisionRecord`` (lengths, integer ranges), so that nothing it accepts can fail to be stored, and
tighter bounds for the figures the rollups add up (cost, tokens, latency), so that no sum overflows.

``check_record`` answers one record of a batch: the clean values, or the errors by field in
Steward's words (``{"field": ["message"]}``), each naming the rule that was broken. ``check_records``
answers a whole batch, in one validator call when every record has exactly the documented members.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from steward.columns import integer_range, max_length, unstorable_text
from steward.parsers import MAX_DEPTH, Unreadable, depth, too_deep_message

from .models import DecisionRecord

MAX_CONTENT_CHARS = 1_000_000

# Bounds tighter than the columns, for the figures Steward adds up: the hourly rollups sum cost and
# tokens in 64-bit integers (audits.rollups), and one record at the column's limit, 2^63 - 1, is
# enough to overflow them. At these bounds a rollup row (one hour of one group) overflows only past
# 9 million decisions of $1,000,000 each, and a batch of 1,000 sums to at most 10^15.
MAX_COST_MICRO_USD = 10**12  # $1,000,000 for one decision: 10^9 tokens at $1,000 per million
MAX_TOKENS = 10**9  # a thousand times the longest context windows models offer
MAX_LATENCY_MS = 86_400_000  # a day: no router waits longer, and the latency sketch ends there too
WHY_BOUNDED = {
    "cost_micro_usd": "$1,000,000, the most one decision may cost",
    "input_tokens": "a billion, the most tokens one decision may count",
    "output_tokens": "a billion, the most tokens one decision may count",
    "latency_ms": "a day in milliseconds, the longest a decision may take",
}
MAX_RECORD_DEPTH = MAX_DEPTH - 2  # inside the batch's object and its list of records
TIME_EXAMPLE = "2026-11-28T12:00:00Z"


def _storable(value: str) -> str:
    if reason := unstorable_text(value):
        raise PydanticCustomError("unstorable_text", reason)
    return value


def _text(column: str, what: str) -> Any:
    """A required, stripped, non-empty string no longer than the column ``column``."""
    return Annotated[
        _plain_text(column),
        AfterValidator(_storable),
        Field(description=f"{what}; at most {max_length(DecisionRecord, column)} characters."),
    ]


def _plain_text(column: str) -> Any:
    """``_text`` without the check that the text is storable (``PlainDecisionRecordIn``)."""
    return Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length(DecisionRecord, column))
    ]


def _count(column: str, what: str, least: int = 0, most: int | None = None) -> Any:
    """A whole number from ``least`` (or the column's minimum, if higher) to ``most`` (or the column's
    maximum, if lower); a bound below the column's says why (``WHY_BOUNDED``)."""
    low, high = integer_range(DecisionRecord, column)
    low = max(low, least)
    rule = f"a whole number from {low} to {high}"
    if most is not None and most < high:
        high = most
        rule = f"a whole number from {low} to {high} ({WHY_BOUNDED[column]})"
    return Annotated[int, Field(ge=low, le=high, description=f"{what}; {rule}.")]


def _time_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "time_type", "Required: an RFC 3339 time with a time zone, e.g. {example}.", {"example": TIME_EXAMPLE}
        )
    return value


def _in_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise PydanticCustomError(
            "time_zone", "Needs a time zone (Z or an offset), e.g. {example}.", {"example": TIME_EXAMPLE}
        )
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-23:59 is a real time, but it falls after year 9999 in UTC.
        raise PydanticCustomError("time_range", "Must fall between the years 1 and 9999 in UTC.") from None


def _content(value: Any) -> Any:
    return "" if value is None else value


Content = Annotated[
    str,
    BeforeValidator(_content),
    StringConstraints(max_length=MAX_CONTENT_CHARS),
    AfterValidator(_storable),
]
DIGEST_PATTERN = r"^([0-9a-f]{64})?$"
DIGEST_LENGTH = max_length(DecisionRecord, "input_sha256")
Digest = Annotated[
    str,
    BeforeValidator(_content),
    StringConstraints(pattern=DIGEST_PATTERN, max_length=DIGEST_LENGTH),
    Field(description="The lowercase hex SHA-256 of content a router must not let out (digest-only data)."),
]


OccurredAt = Annotated[
    dt.datetime,
    BeforeValidator(_time_text),
    AfterValidator(_in_utc),
    Field(strict=False, description=f"When the router decided: RFC 3339 with a time zone ({TIME_EXAMPLE})."),
]


class DecisionRecordIn(BaseModel):
    """One decision record of a ``POST /api/v1/decisions`` batch (docs/policy-feed.md)."""

    # Strict: "5" is not a number and 1 is not true; unknown members are ignored, so routers can add fields.
    model_config = ConfigDict(strict=True, extra="ignore")

    request_id: _text("request_id", "The router's id for the request, unique per router")
    occurred_at: OccurredAt
    task: _text("task", "The task slug")
    classification: _text("classification", "The data classification slug")
    model: _text("model", "The model version used, provider/model@version")
    policy_version: _count("policy_version", "The policy version the router applied", least=1)
    fallback_used: bool = False
    escalated: bool = False
    latency_ms: _count("latency_ms", "Milliseconds the model took", most=MAX_LATENCY_MS)
    input_tokens: _count("input_tokens", "Input tokens", most=MAX_TOKENS)
    output_tokens: _count("output_tokens", "Output tokens", most=MAX_TOKENS)
    cost_micro_usd: _count("cost_micro_usd", "What the request cost, in micro-USD", most=MAX_COST_MICRO_USD)
    input: Content = ""
    output: Content = ""
    input_sha256: Digest = ""
    output_sha256: Digest = ""
    policy_set: Annotated[str, AfterValidator(_storable)] | None = None


class PlainDecisionRecordIn(BaseModel):
    """``DecisionRecordIn`` for a record that has only its members, each a JSON scalar, in a batch whose
    text is known to be storable: the same bounds, but no Python call per member (no storable-text
    check, null content taken as it comes). It accepts no record that ``DecisionRecordIn`` refuses, and
    gives the same values once null content reads "" (``check_records``); what it refuses goes to
    ``DecisionRecordIn`` for the errors."""

    model_config = ConfigDict(strict=True, extra="forbid")

    request_id: _plain_text("request_id")
    occurred_at: OccurredAt
    task: _plain_text("task")
    classification: _plain_text("classification")
    model: _plain_text("model")
    policy_version: _count("policy_version", "", least=1)
    fallback_used: bool = False
    escalated: bool = False
    latency_ms: _count("latency_ms", "", most=MAX_LATENCY_MS)
    input_tokens: _count("input_tokens", "", most=MAX_TOKENS)
    output_tokens: _count("output_tokens", "", most=MAX_TOKENS)
    cost_micro_usd: _count("cost_micro_usd", "", most=MAX_COST_MICRO_USD)
    input: Annotated[str | None, Field(max_length=MAX_CONTENT_CHARS)] = ""
    output: Annotated[str | None, Field(max_length=MAX_CONTENT_CHARS)] = ""
    input_sha256: Annotated[str | None, Field(pattern=DIGEST_PATTERN, max_length=DIGEST_LENGTH)] = ""
    output_sha256: Annotated[str | None, Field(pattern=DIGEST_PATTERN, max_length=DIGEST_LENGTH)] = ""
    policy_set: str | None = None


class PlainBatchIn(BaseModel):
    """A ``POST /api/v1/decisions`` body of only ``{"records": [...]}``, each record a
    ``PlainDecisionRecordIn``: parsed and checked from the body's bytes in one call (``check_body``)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    records: list[PlainDecisionRecordIn]


PLAIN_BATCH = TypeAdapter(list[PlainDecisionRecordIn])
PLAIN_BODY = TypeAdapter(PlainBatchIn)
CONTENT_MEMBERS = ("input", "output", "input_sha256", "output_sha256")
FIELD_DESCRIPTIONS = {name: field.description or "" for name, field in DecisionRecordIn.model_fields.items()}
EXPECTED = {
    "fallback_used": "true or false",
    "escalated": "true or false",
    "input": "a string (or null)",
    "output": "a string (or null)",
    "policy_set": "a string",
}


def _message(field: str, error: dict) -> str:
    """Steward's message for one pydantic error: what was wrong and the rule that holds."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    rule = FIELD_DESCRIPTIONS.get(field, "").rstrip(".")
    expected = EXPECTED.get(field) or rule[:1].lower() + rule[1:]
    if kind in ("unstorable_text", "time_type", "time_zone", "time_range"):
        return error["msg"]
    if kind in ("missing", "string_too_short"):
        return f"Required: {expected}."
    if kind == "string_too_long":
        return f"At most {ctx['max_length']} characters, what the column holds."
    if kind == "less_than_equal":
        if field in WHY_BOUNDED:
            return f"At most {ctx['le']}: {WHY_BOUNDED[field]}."
        return f"At most {ctx['le']}, what the column holds."
    if kind == "greater_than_equal":
        return f"At least {ctx['ge']}."
    if kind == "string_unicode":
        return "Must be valid Unicode text: a lone surrogate (\\ud800 to \\udfff) cannot be stored."
    if kind.startswith("datetime"):
        return f"Must be a real time in RFC 3339 with a time zone, e.g. {TIME_EXAMPLE} ({ctx.get('error', kind)})."
    return f"Must be {expected}."


def check_body(body: bytes) -> list[dict] | None:
    """The clean values of every record of a body known to hold no unstorable text (``text_checked``
    below), when the body is exactly ``{"records": [...]}`` and ``PlainDecisionRecordIn`` takes each of
    its records; None otherwise, and the body is then parsed and its records checked one by one.

    The JSON is read by pydantic's own parser, straight into the records: what it accepts, ``json``
    and ``check_records`` accept with the same values (tests/audits/test_records.py), and what it
    refuses goes the long way for Steward's answer."""
    try:
        batch = PLAIN_BODY.validate_json(body)
    except ValidationError:
        return None
    return [_plain_values(record) for record in batch.records]


def _plain_values(record: PlainDecisionRecordIn) -> dict:
    values = record.__dict__
    for name in CONTENT_MEMBERS:
        if values[name] is None:
            values[name] = ""
    return values


def check_records(raws: list, *, text_checked: bool = False) -> list[tuple[dict | None, dict[str, list[str]]]]:
    """Each record's clean values (as ``DecisionRecordIn.model_dump`` gives them) or its errors by field.

    ``text_checked``: no string in the batch can hold a NUL or a lone surrogate (the body that held it
    had no such escape). Such a batch of records with only the documented members is checked in one
    call of ``PlainDecisionRecordIn``; any other batch, and one it refuses, record by record.
    """
    if text_checked:
        try:
            plain = PLAIN_BATCH.validate_python(raws)
        except ValidationError:
            pass
        else:
            return [(_plain_values(record), {}) for record in plain]
    answers = []
    for raw in raws:
        record, errors = check_record(raw)
        answers.append((record.model_dump() if record is not None else None, errors))
    return answers


def check_record(raw: Any) -> tuple[DecisionRecordIn | None, dict[str, list[str]]]:
    """A clean record, or the errors by field."""
    if isinstance(raw, Unreadable):
        return None, {"non_field_errors": [_sentence(raw.reason)]}
    if not isinstance(raw, dict):
        return None, {"non_field_errors": ["Each record must be a JSON object."]}
    if depth(raw, MAX_RECORD_DEPTH) > MAX_RECORD_DEPTH:
        return None, {"non_field_errors": [too_deep_message(MAX_RECORD_DEPTH)]}
    try:
        return DecisionRecordIn.model_validate(raw), {}
    except ValidationError as invalid:
        errors: dict[str, list[str]] = {}
        for error in invalid.errors(include_url=False, include_input=False):
            field = str(error["loc"][0]) if error["loc"] else "non_field_errors"
            message = _message(field, error)
            if message not in errors.setdefault(field, []):
                errors[field].append(message)
        for field, value in raw.items():
            if isinstance(value, Unreadable) and field in errors:
                errors[field] = [_sentence(value.reason)]
        return None, errors


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:].rstrip(".") + "."
