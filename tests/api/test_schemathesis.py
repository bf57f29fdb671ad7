"""Schemathesis over every operation of the OpenAPI schema, as each role, without a token and as a
router: no answer is a server error, and every answer is one the schema describes (its status code,
content type and body), for valid requests and for invalid ones alike.

Bounded to stay within a few minutes of the suite: ``MAX_EXAMPLES`` generated requests per operation,
identity and kind (valid, invalid), about 3,600 requests in all. Operations run one after another in
one test per identity, so that a failure names every operation that failed, not just the first.
A second test, as an officer and as a router, sends every case of schemathesis's coverage phase
(each parameter at and past the limits the schema declares) and each parameter and body member set
in turn to a hostile value (integers past 2**53 and 2**63, digits ``int`` refuses, NUL, 5,000
characters): random draws seldom reach those, and a bound the server forgets shows up there first.
Each request opens a connection of its own: the live server answers a kept-alive connection's
requests only after the client's delayed ACK (tens of milliseconds each).
"""

from __future__ import annotations

import warnings

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import NonInteractiveExampleWarning, Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.overrides import Override
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


def boundary_cases(operation) -> list:
    """The cases of schemathesis's coverage phase: each parameter and body field at and just past
    the limits the schema declares (minimum and maximum, one beyond, wrong types, missing required)."""
    generation = operation.schema.config.generation_for(operation=operation, phase="coverage")
    generator = CoverageGenerator(
        operation=operation,
        generation_modes=generation.modes,
        generation_config=generation,
        auth_storage=None,
        override=Override(),
        feedback=FeedbackSources(),
    )
    return list(generator)


# What a client may send where a number or a short string is expected: integers past 32 bits, past
# what JSON carries exactly (2**53, which audit events and signed policies must), past 64 bits,
# digits that ``str.isdigit`` accepts and ``int`` refuses (superscript, Arabic-Indic), a float past
# its range, NUL, a very long string.
HOSTILE = [2**31, 2**53, 2**63 - 1, 2**63, -(2**63) - 1, 10**30, "²", "٣", "1e309", "a\x00b", "9" * 5000]


def hostile_cases(operation, boundary: list) -> list:
    """Valid cases of the operation with each path and query parameter, and each member of a JSON
    object body, replaced in turn by each hostile value. Each case starts from a valid case drawn
    afresh, so that a request that creates something does not make the next one a mere duplicate."""
    strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)

    def valid():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonInteractiveExampleWarning)
            return strategy.example()

    try:
        shape = valid()
    except Unsatisfiable:
        return []
    # Every parameter and member the schema names, optional ones included (the coverage phase sends each).
    known = [shape, *(case for case in boundary if case._meta.generation.mode.is_positive)]
    cases = []
    for location in ("path_parameters", "query", "body"):
        names = dict.fromkeys(
            name for case in known if isinstance(members := getattr(case, location), dict) for name in members
        )
        for name in names:
            for value in HOSTILE:
                case = valid()
                members = getattr(case, location)
                if isinstance(members, dict):
                    setattr(case, location, {**members, name: value})
                    cases.append(case)
    return cases


@pytest.mark.parametrize("identity", ["officer", "router"])
def test_no_server_error_at_the_schemas_boundaries(identity, api_schema, tokens, live_server) -> None:
    headers = {"Authorization": f"Bearer {getattr(tokens, identity)}"}
    failures: dict[str, list[str]] = {}
    sent = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        boundary = boundary_cases(operation)
        for case in boundary + hostile_cases(operation, boundary):
            sent += 1
            try:
                case.call_and_validate(
                    base_url=live_server.url, headers=headers, checks=[not_a_server_error], timeout=30
                )
            except (Exception, BaseExceptionGroup) as error:
                failures.setdefault(operation.label, []).append(f"{case.as_curl_command()}\n{error}")
    print(f"{sent} boundary requests")
    assert not failures, "\n\n".join(f"{label}:\n" + "\n".join(found) for label, found in failures.items())
