"""Policy validation: every rule, broken once, with the exact path into the document and the message.

The world (tiers, classifications, registry, matrix, tasks, policy sets) is tests/portfolio/conftest.py.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import pytest
import yaml
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compliance.models import MatrixCell
from portfolio.validation import MAX_DOCUMENT_BYTES, validate_document
from registry.models import Status

from ..factories import make_model, make_version
from .conftest import PRODUCTION_V1, STAGING_V1

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[2] / "docs" / "policy-format.md"

MINI = "openai/gpt-4o-mini@2024-07-18"
NANO = "openai/gpt-4.1-nano@2025-04-14"
MISTRAL_SMALL = "mistral/mistral-small@2501"
GEMINI_FLASH = "google/gemini-2.0-flash@001"
HAIKU = "anthropic/claude-3-haiku@20240307"
GPT_4O = "openai/gpt-4o@2024-08-06"
SONNET = "anthropic/claude-3-5-sonnet@20241022"
MISTRAL_LARGE = "mistral/mistral-large@2411"
GEMINI_PRO = "google/gemini-1.5-pro@002"
OPUS = "anthropic/claude-opus-4@20250514"
GEMINI_LARGE = "google/gemini-2.5-pro@preview"

# A valid production route for each of two tasks; tests change one piece at a time.
TRIAGE = {"task": "ticket-triage", "classification": "internal", "model": MINI, "fallbacks": [MISTRAL_SMALL]}
SUPPORT = {"task": "support-reply", "classification": "pii", "model": SONNET, "fallbacks": [GPT_4O]}
ESCALATE = {"to": GPT_4O, "when": ["error"], "max_rate_bp": 500}


def route(base: dict = TRIAGE, **changes) -> dict:
    """``base`` with ``changes``; a change to None removes the key."""
    merged = {**base, **changes}
    return {key: value for key, value in merged.items() if value is not None}


def policy(*routes: dict, **top) -> str:
    return yaml.safe_dump({"default": "deny", "routes": list(routes), **top}, sort_keys=False)


def errors(text: str, policy_set) -> list[tuple[str, str]]:
    return [(error.path, error.message) for error in validate_document(text, policy_set).errors]


# --- valid policies -----------------------------------------------------------------------------


def test_valid_policies_have_no_errors(world):
    assert errors(PRODUCTION_V1, world.production) == []
    assert errors(STAGING_V1, world.staging) == []
    assert errors(policy(TRIAGE, SUPPORT), world.production) == []
    assert errors("default: deny\nroutes: []\n", world.production) == []
    # Route-level notes and a top-level description are part of the format.
    assert errors(policy(route(notes="cheapest first"), description="prod"), world.production) == []


def test_validation_parses_the_document_it_reports_on(world):
    result = validate_document(PRODUCTION_V1, world.production)
    assert result.ok
    assert result.document["default"] == "deny"
    assert [r["task"] for r in result.document["routes"]] == ["ticket-triage", "support-reply"]


def test_documented_examples_are_valid(world):
    """Every complete policy in docs/policy-format.md (a yaml block with a top-level ``default:``)
    validates on staging, and those whose comment says production on production too."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)
    complete = [block for block in blocks if re.search(r"^default:", block, flags=re.M)]
    assert len(complete) == 5
    for block in complete:
        assert errors(block, world.staging) == [], block
        if "# production" in block:
            assert errors(block, world.production) == [], block


def test_validation_costs_the_same_number_of_queries_for_one_route_or_many(world):
    small = policy(TRIAGE)
    many = policy(
        TRIAGE,
        SUPPORT,
        route(
            task="code-review", model=GPT_4O, fallbacks=[MISTRAL_LARGE, GEMINI_PRO], escalation={**ESCALATE, "to": OPUS}
        ),
        route(task="contract-drafting", model=OPUS, fallbacks=["openai/o1@2024-12-17"]),
    )
    with CaptureQueriesContext(connection) as one_route:
        assert validate_document(small, world.production).ok
    with CaptureQueriesContext(connection) as four_routes:
        assert validate_document(many, world.production).ok
    assert len(one_route) == len(four_routes) == 7


# --- syntax and safety --------------------------------------------------------------------------


def test_yaml_syntax_error_names_the_line(world):
    text = "default: deny\nroutes:\n  - task: ticket-triage\n    fallbacks: [mistral/mistral-small@2501\n"
    assert errors(text, world.production) == [("", "line 5: invalid YAML: expected ',' or ']', but got '<stream end>'")]


def test_bad_indentation_is_a_syntax_error(world):
    text = "default: deny\nroutes:\n - task: ticket-triage\n  model: openai/gpt-4o-mini@2024-07-18\n"
    assert errors(text, world.production) == [
        ("", "line 4: invalid YAML: expected <block end>, but found '<block mapping start>'")
    ]


def test_duplicate_top_level_keys_are_refused(world):
    text = "default: deny\nroutes: []\ndefault: deny\n"
    assert errors(text, world.production) == [("", "line 3: duplicate key 'default' (first on line 1)")]


def test_duplicate_keys_inside_a_route_are_refused(world):
    # A second "model" would otherwise silently win: the reviewer would read one model and publish another.
    text = (
        "default: deny\nroutes:\n  - task: ticket-triage\n    classification: internal\n"
        "    model: openai/gpt-4o-mini@2024-07-18\n    model: openai/gpt-4o@2024-08-06\n"
    )
    assert errors(text, world.production) == [("", "line 6: duplicate key 'model' (first on line 5)")]


def test_yaml_alias_is_refused(world):
    assert errors("default: *deny\nroutes: []\n", world.production) == [
        ("", "line 1: YAML aliases (*name) are not allowed in policies")
    ]


def test_yaml_anchor_is_refused(world):
    text = "default: deny\nroutes:\n  - &triage\n    task: ticket-triage\n"
    assert errors(text, world.production) == [("", "line 3: YAML anchors (&name) are not allowed in policies")]


def test_alias_bomb_is_refused_at_once(world):
    # "Billion laughs": nine levels of ten aliases each expand to 10**9 strings.
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [{','.join(['*' + previous] * 10)}]")
    started = time.process_time()
    assert errors("\n".join(lines) + "\n", world.production) == [
        ("", "line 1: YAML anchors (&name) are not allowed in policies")
    ]
    # Refused while reading, long before any expansion (a generous bound, not a benchmark).
    assert time.process_time() - started < 5


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        (
            "default: !!python/object/apply:os.system ['echo owned']\n",
            "tag:yaml.org,2002:python/object/apply:os.system",
        ),
        ("default: !!python/name:builtins.print\n", "tag:yaml.org,2002:python/name:builtins.print"),
        ("default: !deny\n", "!deny"),
        ("default: !!binary ZGVueQ==\n", "tag:yaml.org,2002:binary"),
        ("default: !!set {deny}\n", "tag:yaml.org,2002:set"),
        ("<<: {default: deny}\n", "tag:yaml.org,2002:merge"),
    ],
)
def test_custom_tags_are_refused(world, text, tag):
    assert errors(text + "routes: []\n", world.production) == [
        ("", f"line 1: unsupported YAML: could not determine a constructor for the tag '{tag}'")
    ]


def test_document_over_256_kb_is_refused(world):
    head = "default: deny\nroutes: []\n"
    at_limit = head + "#" * (MAX_DOCUMENT_BYTES - len(head) - 1) + "\n"
    assert len(at_limit.encode()) == MAX_DOCUMENT_BYTES
    assert errors(at_limit, world.production) == []
    assert errors(at_limit + "#", world.production) == [("", "the document is larger than 256 KB")]
    # Bytes count, not characters.
    wide = head + "# " + "é" * (MAX_DOCUMENT_BYTES // 2) + "\n"
    assert errors(wide, world.production) == [("", "the document is larger than 256 KB")]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("default: deny\nroutes: " + "[" * 20000 + "]" * 20000 + "\n", 2),
        ("notes: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", 1),
    ],
)
def test_deeply_nested_document_is_refused_not_crashed(world, text, line):
    # Small enough for the size limit, deep enough to exhaust a recursive parser's stack.
    assert errors(text, world.production) == [("", f"line {line}: the document nests deeper than 32 levels")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- default: deny\n", "the document must be a mapping with 'routes' and 'default'"),
        ("deny\n", "the document must be a mapping with 'routes' and 'default'"),
        ("1: deny\n", "line 1: keys must be strings, not 1"),
        ("default: deny\n---\nroutes: []\n", "line 2: invalid YAML: but found another document"),
    ],
)
def test_document_must_be_one_mapping_with_string_keys(world, text, message):
    assert errors(text, world.production) == [("", message)]


# --- top level ----------------------------------------------------------------------------------


def test_unknown_top_level_key(world):
    assert errors("default: deny\nroutes: []\nfallback: deny\n", world.production) == [
        ("fallback", "unknown key 'fallback'; expected default, description, routes")
    ]


def test_default_is_required(world):
    assert errors("routes: []\n", world.production) == [
        ("default", "required: the action when no route matches (deny)")
    ]


@pytest.mark.parametrize(("value", "shown"), [("allow", "'allow'"), ("yes", "True"), ("[deny]", "['deny']")])
def test_default_must_be_deny(world, value, shown):
    assert errors(f"default: {value}\nroutes: []\n", world.production) == [("default", f"must be deny, not {shown}")]


def test_empty_document_needs_default_and_routes(world):
    assert errors("", world.production) == [
        ("default", "required: the action when no route matches (deny)"),
        ("routes", "required: a list of routes"),
    ]


@pytest.mark.parametrize("value", ["{ticket-triage: openai/gpt-4o-mini@2024-07-18}", "ticket-triage", "3"])
def test_routes_must_be_a_list(world, value):
    assert errors(f"default: deny\nroutes: {value}\n", world.production) == [("routes", "must be a list of routes")]


# --- the shape of a route -----------------------------------------------------------------------


def test_route_must_be_a_mapping(world):
    text = policy(TRIAGE, "ticket-triage")
    assert errors(text, world.production) == [("routes[1]", "must be a mapping with task, classification and model")]


def test_route_needs_task_classification_and_model(world):
    assert errors(policy({"notes": "to do"}), world.production) == [
        ("routes[0].task", "required: the task"),
        ("routes[0].classification", "required: the data classification"),
        ("routes[0].model", "required: the model reference this route sends requests to"),
    ]


def test_unknown_route_key(world):
    assert errors(policy(route(weight=3)), world.production) == [
        (
            "routes[0].weight",
            "unknown key 'weight'; "
            "expected classification, constraints, escalation, fallbacks, model, notes, task, tier",
        )
    ]


def test_names_must_be_strings(world):
    assert errors(policy(route(task=["ticket-triage"], model=7)), world.production) == [
        ("routes[0].task", "must be a task name"),
        ("routes[0].model", "must be a model reference provider/model@version"),
    ]


def test_errors_point_at_the_route_and_list_item(world):
    text = policy(
        TRIAGE,
        SUPPORT,
        route(task="code-review", model=GPT_4O, fallbacks=[MISTRAL_LARGE]),
        route(task="contract-drafting", model=OPUS, fallbacks=["openai/o1@2024-12-17", "openai/gpt-5@2025-08-07"]),
    )
    assert errors(text, world.production) == [
        ("routes[3].fallbacks[1]", "unknown model 'openai/gpt-5@2025-08-07': no such version in the registry")
    ]


# --- unknown names ------------------------------------------------------------------------------


def test_unknown_task(world):
    assert errors(policy(route(task="ticket-triage-v2")), world.production) == [
        ("routes[0].task", "unknown task 'ticket-triage-v2'")
    ]


def test_unknown_classification(world):
    assert errors(policy(route(classification="secret")), world.production) == [
        ("routes[0].classification", "unknown data classification 'secret'")
    ]


def test_unknown_tier(world):
    assert errors(policy(route(tier="huge")), world.production) == [("routes[0].tier", "unknown cost tier 'huge'")]


def test_empty_tier_is_an_error_not_a_way_round_the_tier_checks(world):
    # A large model, priced far above the small ceiling, on a small task, with "tier:" left empty.
    text = policy({**route(model="openai/o1@2024-12-17"), "tier": None})
    assert "  tier: null\n" in text
    assert errors(text, world.production) == [("routes[0].tier", "must be a cost tier name")]


def test_unknown_primary_model(world):
    assert errors(policy(route(model="openai/gpt-5@2025-08-07")), world.production) == [
        ("routes[0].model", "unknown model 'openai/gpt-5@2025-08-07': no such version in the registry")
    ]


def test_unknown_fallback_model(world):
    assert errors(policy(route(fallbacks=[MISTRAL_SMALL, "mistral/mistral-tiny@2312"])), world.production) == [
        ("routes[0].fallbacks[1]", "unknown model 'mistral/mistral-tiny@2312': no such version in the registry")
    ]


def test_unknown_escalation_target(world):
    assert errors(policy(route(escalation={**ESCALATE, "to": "openai/gpt-4o@latest"})), world.production) == [
        ("routes[0].escalation.to", "unknown model 'openai/gpt-4o@latest': no such version in the registry")
    ]


# --- model versions that are not approved -------------------------------------------------------


def test_retired_primary_is_refused(world):
    retired = "openai/gpt-4-turbo@2024-04-09"  # a large-tier version
    text = policy(route(task="contract-drafting", model=retired, fallbacks=[OPUS]))
    assert errors(text, world.production) == [
        ("routes[0].model", f"{retired} is retired, not approved"),
        ("routes[0].model", f"{retired} may not process internal: model version is retired, not approved"),
    ]


def test_deprecated_fallback_is_refused(world):
    deprecated = "openai/gpt-4o@2024-05-13"
    text = policy(route(task="code-review", model=MISTRAL_LARGE, fallbacks=[GEMINI_PRO, deprecated]))
    assert errors(text, world.production) == [
        ("routes[0].fallbacks[1]", f"{deprecated} is deprecated, not approved"),
        ("routes[0].fallbacks[1]", f"{deprecated} may not process internal: model version is deprecated, not approved"),
    ]


@pytest.mark.parametrize(
    ("ref", "status"),
    [("anthropic/claude-3-opus@20240229", "restricted"), ("openai/gpt-4-turbo@2024-04-09", "retired")],
)
def test_escalation_target_that_is_not_approved_is_refused(world, ref, status):
    text = policy(
        route(task="code-review", model=GPT_4O, fallbacks=[MISTRAL_LARGE], escalation={**ESCALATE, "to": ref})
    )
    assert errors(text, world.production) == [
        ("routes[0].escalation.to", f"{ref} is {status}, not approved"),
        ("routes[0].escalation.to", f"{ref} may not process internal: model version is {status}, not approved"),
    ]


def test_proposed_version_is_refused(world):
    proposed = "mistral/mistral-medium@2505"
    text = policy(route(task="code-review", model=proposed, fallbacks=[GPT_4O]))
    assert errors(text, world.production)[0] == ("routes[0].model", f"{proposed} is proposed, not approved")


def test_version_retired_after_it_was_routed_to_makes_the_policy_invalid(world):
    assert errors(PRODUCTION_V1, world.production) == []
    version = world.versions[GEMINI_FLASH]
    version.status = Status.RETIRED
    version.save()
    assert errors(PRODUCTION_V1, world.production) == [
        ("routes[0].fallbacks[1]", f"{GEMINI_FLASH} is retired, not approved"),
        ("routes[0].fallbacks[1]", f"{GEMINI_FLASH} may not process internal: model version is retired, not approved"),
    ]


# --- the compliance matrix ----------------------------------------------------------------------


def test_primary_not_approved_for_the_classification(world):
    # mistral-small is eligible for pii, but nobody asked for the cell.
    text = policy(route(classification="pii", model=MISTRAL_SMALL, fallbacks=[MINI]))
    assert errors(text, world.production) == [
        (
            "routes[0].model",
            f"{MISTRAL_SMALL} may not process pii: not approved for this classification (not requested)",
        )
    ]


def test_fallback_not_eligible_for_the_classification(world):
    # google holds no GDPR DPA.
    text = policy(route(SUPPORT, fallbacks=[GPT_4O, GEMINI_PRO]))
    assert errors(text, world.production) == [
        (
            "routes[0].fallbacks[1]",
            f"{GEMINI_PRO} may not process pii: no GDPR DPA; not approved for this classification (not requested)",
        )
    ]


def test_escalation_target_not_usable_for_the_classification(world):
    text = policy(route(SUPPORT, escalation={**ESCALATE, "to": GEMINI_LARGE}))
    assert errors(text, world.production) == [
        (
            "routes[0].escalation.to",
            f"{GEMINI_LARGE} may not process pii: no GDPR DPA; not approved for this classification (not requested)",
        )
    ]


def test_suspended_cell_makes_the_route_invalid(world, carol):
    cell = MatrixCell.for_pair(world.versions[GPT_4O], world.classifications["pii"])
    cell.suspend(carol, "incident under investigation")
    today = timezone.now().strftime("%Y-%m-%d")
    assert errors(policy(SUPPORT), world.production) == [
        (
            "routes[0].fallbacks[0]",
            f"{GPT_4O} may not process pii: suspended by carol on {today}: incident under investigation",
        )
    ]


def test_expired_cell_approval_makes_the_route_invalid(world, carol):
    cell = MatrixCell.for_pair(world.versions[SONNET], world.classifications["pii"])
    expires = timezone.now() + dt.timedelta(days=1)
    cell.approve(carol, "until the DPA renewal", expires_at=expires)
    assert errors(policy(SUPPORT), world.production) == []
    later = timezone.now() + dt.timedelta(days=2)
    assert validate_document(policy(SUPPORT), world.production, at=later).errors[0].as_dict() == {
        "path": "routes[0].model",
        "message": f"{SONNET} may not process pii: approval expired on {expires:%Y-%m-%d %H:%M} UTC",
    }


# --- cost tiers ---------------------------------------------------------------------------------


def test_primary_in_another_tier(world):
    assert errors(policy(route(model=GPT_4O)), world.production) == [
        ("routes[0].model", f"{GPT_4O} is in tier medium, the route is in tier small")
    ]


def test_fallback_in_another_tier(world):
    assert errors(policy(route(fallbacks=[MISTRAL_LARGE])), world.production) == [
        ("routes[0].fallbacks[0]", f"{MISTRAL_LARGE} is in tier medium, the route is in tier small")
    ]


def test_route_tier_overrides_the_tasks_tier(world):
    # ticket-triage is a small task; this route asks for medium models.
    assert errors(policy(route(tier="medium", model=GPT_4O, fallbacks=[MISTRAL_LARGE])), world.production) == []
    assert errors(policy(route(tier="medium")), world.production) == [
        ("routes[0].model", f"{MINI} is in tier small, the route is in tier medium"),
        ("routes[0].fallbacks[0]", f"{MISTRAL_SMALL} is in tier small, the route is in tier medium"),
    ]


def test_price_above_the_tier_ceiling(world):
    pricey = "anthropic/claude-3-5-haiku@20241022"  # tagged small, 800 000 micro-USD per million input tokens
    assert errors(policy(route(model=pricey)), world.production) == [
        (
            "routes[0].model",
            f"{pricey} costs 800000 micro-USD per million input tokens, above the small ceiling of 500000",
        )
    ]
    assert errors(policy(route(model=MINI, fallbacks=[MISTRAL_SMALL, pricey])), world.production) == [
        (
            "routes[0].fallbacks[1]",
            f"{pricey} costs 800000 micro-USD per million input tokens, above the small ceiling of 500000",
        )
    ]


def test_price_at_the_ceiling_is_allowed(world):
    version = world.versions[HAIKU]
    version.input_price_micro_usd = 500_000
    version.save()
    assert errors(policy(route(model=HAIKU, fallbacks=[MINI])), world.production) == []


def test_escalation_target_above_its_tier_ceiling(world, bob, carol):
    model = make_model(provider=world.versions[GPT_4O].model.provider, name="gpt-4.5", slug="gpt-4.5")
    version = make_version(
        bob, model=model, version="preview", status=Status.APPROVED, cost_tier="large", input_price_micro_usd=75_000_000
    )
    MatrixCell.for_pair(version, world.classifications["internal"]).approve(carol, "ok")
    text = policy(route(escalation={**ESCALATE, "to": version.ref}))
    assert errors(text, world.production) == [
        (
            "routes[0].escalation.to",
            f"{version.ref} costs 75000000 micro-USD per million input tokens, above the large ceiling of 20000000",
        )
    ]


# --- escalation ---------------------------------------------------------------------------------


def test_escalation_to_the_same_tier_is_refused(world):
    assert errors(policy(route(escalation={**ESCALATE, "to": HAIKU})), world.production) == [
        ("routes[0].escalation.to", f"escalation must go to a higher tier than small; {HAIKU} is in tier small")
    ]


def test_escalation_to_a_lower_tier_is_refused(world):
    text = policy(
        route(task="code-review", model=GPT_4O, fallbacks=[MISTRAL_LARGE], escalation={**ESCALATE, "to": MINI})
    )
    assert errors(text, world.production) == [
        ("routes[0].escalation.to", f"escalation must go to a higher tier than medium; {MINI} is in tier small")
    ]


def test_escalation_from_the_top_tier_is_refused(world):
    text = policy(
        route(
            task="contract-drafting",
            model=OPUS,
            fallbacks=["openai/o1@2024-12-17"],
            escalation={**ESCALATE, "to": GEMINI_LARGE},
        )
    )
    assert errors(text, world.production) == [
        ("routes[0].escalation.to", f"escalation must go to a higher tier than large; {GEMINI_LARGE} is in tier large")
    ]


def test_escalation_to_a_version_outside_every_tier_is_refused(world, bob, carol):
    model = make_model(provider=world.versions[GPT_4O].model.provider, name="o3", slug="o3")
    version = make_version(
        bob, model=model, version="2025-04-16", status=Status.APPROVED, cost_tier="xl", input_price_micro_usd=2_000_000
    )
    MatrixCell.for_pair(version, world.classifications["internal"]).approve(carol, "ok")
    assert errors(policy(route(escalation={**ESCALATE, "to": version.ref})), world.production) == [
        ("routes[0].escalation.to", f"{version.ref} is in tier 'xl', which is not a cost tier")
    ]


def test_escalation_to_two_tiers_up_is_allowed(world):
    assert errors(policy(route(escalation={**ESCALATE, "to": OPUS})), world.production) == []


@pytest.mark.parametrize("cap", [10001, -1, 2.5, "5%", True, 1_000_000])
def test_escalation_cap_must_be_an_integer_from_0_to_10000(world, cap):
    assert errors(policy(route(escalation={**ESCALATE, "max_rate_bp": cap})), world.production) == [
        ("routes[0].escalation.max_rate_bp", f"must be an integer from 0 to 10000 (basis points), not {cap!r}")
    ]


@pytest.mark.parametrize("cap", [0, 1, 10000])
def test_escalation_cap_bounds_are_allowed(world, cap):
    assert errors(policy(route(escalation={**ESCALATE, "max_rate_bp": cap})), world.production) == []


def test_escalation_cap_is_required(world):
    assert errors(policy(route(escalation={"to": GPT_4O, "when": ["error"]})), world.production) == [
        ("routes[0].escalation.max_rate_bp", "required: the cap on the escalation rate in basis points (0–10000)")
    ]


def test_low_confidence_needs_a_threshold(world):
    text = policy(route(escalation={**ESCALATE, "when": ["error", "low_confidence"]}))
    assert errors(text, world.production) == [
        ("routes[0].escalation.confidence_threshold_bp", "required with low_confidence: the threshold in basis points")
    ]
    ok = policy(route(escalation={**ESCALATE, "when": ["low_confidence"], "confidence_threshold_bp": 7000}))
    assert errors(ok, world.production) == []


@pytest.mark.parametrize("threshold", [10001, -5, 0.7, "70%"])
def test_confidence_threshold_must_be_basis_points(world, threshold):
    text = policy(route(escalation={**ESCALATE, "when": ["low_confidence"], "confidence_threshold_bp": threshold}))
    assert errors(text, world.production) == [
        ("routes[0].escalation.confidence_threshold_bp", "must be an integer from 0 to 10000 (basis points)")
    ]


def test_unknown_escalation_condition(world):
    text = policy(route(escalation={**ESCALATE, "when": ["timeout", "slow", "error"]}))
    assert errors(text, world.production) == [
        (
            "routes[0].escalation.when[1]",
            "unknown condition 'slow'; use error, timeout, low_confidence, context_overflow",
        )
    ]


@pytest.mark.parametrize(
    ("when", "message"),
    [
        (None, "required: one or more of error, timeout, low_confidence, context_overflow"),
        ([], "must be a non-empty list of error, timeout, low_confidence, context_overflow"),
        ("error", "must be a non-empty list of error, timeout, low_confidence, context_overflow"),
    ],
)
def test_escalation_conditions_are_a_non_empty_list(world, when, message):
    escalation = {key: value for key, value in {**ESCALATE, "when": when}.items() if value is not None}
    assert errors(policy(route(escalation=escalation)), world.production) == [("routes[0].escalation.when", message)]


def test_escalation_needs_a_target(world):
    assert errors(policy(route(escalation={"when": ["error"], "max_rate_bp": 100})), world.production) == [
        ("routes[0].escalation.to", "required: the model to escalate to")
    ]


def test_escalation_must_be_a_mapping_with_known_keys(world):
    assert errors(policy(route(escalation=[GPT_4O])), world.production) == [
        ("routes[0].escalation", "must be a mapping with to, when and max_rate_bp")
    ]
    assert errors(policy(route(escalation={**ESCALATE, "rate": 5})), world.production) == [
        ("routes[0].escalation.rate", "unknown key 'rate'; expected confidence_threshold_bp, max_rate_bp, to, when")
    ]


# --- fallbacks ----------------------------------------------------------------------------------


def test_fallback_equal_to_the_primary_is_a_cycle(world):
    assert errors(policy(route(fallbacks=[MISTRAL_SMALL, MINI])), world.production) == [
        ("routes[0].fallbacks[1]", f"{MINI} is the route's own model: a fallback cycle")
    ]


def test_duplicate_fallbacks(world):
    assert errors(policy(route(fallbacks=[MISTRAL_SMALL, GEMINI_FLASH, MISTRAL_SMALL])), world.production) == [
        ("routes[0].fallbacks[2]", f"{MISTRAL_SMALL} is already fallbacks[0]")
    ]


def test_fallbacks_must_be_a_list(world):
    assert errors(policy(route(fallbacks=MISTRAL_SMALL)), world.staging) == [
        ("routes[0].fallbacks", "must be a list of model references")
    ]


# --- routes as a whole --------------------------------------------------------------------------


def test_duplicate_route_keys(world):
    text = policy(TRIAGE, SUPPORT, route(model=HAIKU, fallbacks=[MINI]))
    assert errors(text, world.production) == [
        ("routes[2]", "duplicate route for ticket-triage / internal (also routes[0])")
    ]


def test_same_task_for_another_classification_is_a_different_route(world):
    assert errors(policy(TRIAGE, route(classification="pii", model=MINI, fallbacks=[HAIKU])), world.production) == []


def test_production_requires_a_fallback(world):
    assert errors(policy(route(fallbacks=None)), world.production) == [
        (
            "routes[0].fallbacks",
            "production requires a fallback from a provider other than OpenAI (single-provider dependency)",
        )
    ]


def test_fallbacks_only_at_the_primarys_provider_are_a_single_provider_dependency(world):
    assert errors(policy(route(fallbacks=[NANO])), world.production) == [
        (
            "routes[0].fallbacks",
            "production requires a fallback from a provider other than OpenAI (single-provider dependency)",
        )
    ]
    # One fallback elsewhere is enough, wherever it stands in the list.
    assert errors(policy(route(fallbacks=[NANO, GEMINI_FLASH])), world.production) == []


def test_staging_allows_a_single_provider(world):
    assert errors(policy(route(fallbacks=None)), world.staging) == []


# --- constraints --------------------------------------------------------------------------------


def test_constraints_must_be_positive_integers(world):
    text = policy(route(constraints={"max_latency_ms": 0, "max_cost_micro_usd": "cheap"}))
    assert errors(text, world.production) == [
        ("routes[0].constraints.max_latency_ms", "must be a positive integer"),
        ("routes[0].constraints.max_cost_micro_usd", "must be a positive integer"),
    ]
    assert errors(policy(route(constraints={"max_latency_ms": 1.5})), world.production) == [
        ("routes[0].constraints.max_latency_ms", "must be a positive integer")
    ]


def test_unknown_constraint(world):
    assert errors(policy(route(constraints={"max_tokens": 4000})), world.production) == [
        ("routes[0].constraints.max_tokens", "unknown key 'max_tokens'; expected max_cost_micro_usd, max_latency_ms")
    ]


def test_constraints_must_be_a_mapping(world):
    assert errors(policy(route(constraints=[8000])), world.production) == [
        ("routes[0].constraints", "must be a mapping with max_latency_ms and/or max_cost_micro_usd")
    ]


def test_valid_constraints(world):
    text = policy(route(constraints={"max_latency_ms": 8000, "max_cost_micro_usd": 2_000}))
    assert errors(text, world.production) == []
