"""Schemathesis over every operation of the OpenAPI schema, as each role, without a token and as a
router: no answer is a server error, and every answer is one the schema describes (its status code,
content type and body), for valid requests and for invalid ones alike.

Bounded to stay within a few minutes of the suite: ``MAX_EXAMPLES`` generated requests per operation,
identity and kind (valid, invalid), about 3,600 requests in all. Operations run one after another in
one test per identity, so that a failure names every operation that failed, not just the first.
Each request opens a connection of its own: the live server answers a kept-alive connection's
requests only after the client's delayed ACK (tens of milliseconds each).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 5
IDENTITIES = ["officer", "engineer", "auditor", "router", "anonymous"]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def api_schema(live_server, tokens):
    """The schema as the live server publishes it."""
    return schemathesis.openapi.from_url(
        f"{live_server.url}/api/schema/?format=json",
        headers={"Authorization": f"Bearer {tokens.auditor}"},
        timeout=30,
    )


def exercise(operation, mode: GenerationMode, base_url: str, headers: dict[str, str]) -> None:
    """Send ``MAX_EXAMPLES`` requests schemathesis makes for ``operation``; raise what the checks found."""

    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def send(case) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)

    try:
        send()
    except Unsatisfiable:
        # Nothing invalid can be made of an operation without parameters or body: the valid requests cover it.
        if mode is not GenerationMode.NEGATIVE:
            raise


@pytest.mark.parametrize("identity", IDENTITIES)
def test_no_server_error_and_every_answer_as_documented(identity, api_schema, tokens, live_server) -> None:
    token = getattr(tokens, identity, None)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 72  # every operation, the feed's included (tests/steward/test_openapi_schema.py)
    failures: dict[str, BaseException] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                exercise(operation, mode, live_server.url, headers)
            except (Exception, BaseExceptionGroup) as error:  # schemathesis reports its failures as a group
                failures[f"{mode.value} {operation.label}"] = error
    assert not failures, "\n\n".join(f"{label}:\n{error}" for label, error in failures.items())
