"""Nothing invalid can ever be published.

Hypothesis writes policies from the world's pieces (tests/portfolio/conftest.py) — model refs of
every status and tier, unknown refs, fallbacks that repeat or name the primary, escalations up,
sideways and down, caps in and out of range — and drives each through the real workflow. An
independent check, written from the rules rather than from the validator, looks at everything
that does get published.
"""

from __future__ import annotations

import pytest
import yaml
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from compliance.matrix import Matrix
from compliance.models import DataClassification, MatrixCell
from portfolio.models import ChangeRequest, ChangeStatus, CostTier, PolicyVersion, Task
from portfolio.policy import normalise, to_yaml
from portfolio.publishing import publish, start_change
from portfolio.validation import ESCALATION_CONDITIONS, parse_document, validate_document
from registry.models import ModelVersion, Status

from .conftest import (
    CLASSIFICATIONS,
    NOT_APPROVED_CELLS,
    PROVIDERS,
    REFS,
    TASK_CLASSIFICATION,
    TASK_TIER,
    TIER_CEILING,
    TIER_RANK,
    VERSIONS,
)

pytestmark = pytest.mark.django_db

UNKNOWN_REF = "openai/gpt-5@2025-08-07"
ANY_REF = st.sampled_from([*REFS, UNKNOWN_REF])
REQUIRED = {slug: set(certifications) for slug, _, _, certifications in CLASSIFICATIONS}


def fitting(tier: str, classification: str, above: bool = False) -> list[str]:
    """Refs likely to pass for a route (to steer generation towards valid policies; the validator,
    not this, is the judge)."""
    return [
        v.ref
        for v in VERSIONS
        if (TIER_RANK[v.tier] > TIER_RANK[tier] if above else v.tier == tier)
        and v.status == Status.APPROVED
        and v.price <= TIER_CEILING[v.tier]
        and REQUIRED.get(classification, set()) <= set(PROVIDERS[v.provider][1])
        and (v.ref, classification) not in NOT_APPROVED_CELLS
    ]


def mostly(likely: st.SearchStrategy, anything: st.SearchStrategy) -> st.SearchStrategy:
    """``likely`` about nine times in ten (``one_of`` would pick each branch equally often)."""
    # Hypothesis favours the first element of sampled_from: make that the likely one.
    return st.sampled_from([True] * 9 + [False]).flatmap(lambda good: likely if good else anything)


@st.composite
def routes(draw) -> dict:
    task = draw(mostly(st.sampled_from(list(TASK_TIER)), st.just("translation")))
    classification = draw(
        mostly(st.just(TASK_CLASSIFICATION.get(task, "internal")), st.sampled_from(["pii", "secret"]))
    )
    route: dict = {"task": task, "classification": classification}
    tier = TASK_TIER.get(task, "small")
    if draw(st.integers(0, 7)) == 0:
        route["tier"] = draw(st.sampled_from(["small", "medium", "large", "huge", None]))
        tier = route["tier"] if route["tier"] in TIER_RANK else tier
    likely = st.sampled_from(fitting(tier, classification) or REFS)
    model = draw(mostly(likely, ANY_REF))
    route["model"] = model
    others = [ref for ref in fitting(tier, classification) if ref != model]
    fallbacks = draw(
        mostly(
            st.lists(st.sampled_from(others), min_size=1, max_size=3, unique=True) if others else st.just([]),
            # Anything: other tiers, unknown refs, repeats, the primary itself.
            st.lists(st.one_of(likely, ANY_REF, st.just(model)), max_size=3),
        )
    )
    if fallbacks or draw(st.booleans()):
        route["fallbacks"] = fallbacks
    targets = fitting(tier, classification, above=True)
    # Escalate sometimes; from the top tier (nowhere higher to go) only now and then.
    if draw(st.booleans()) and draw(mostly(st.just(bool(targets)), st.just(True))):
        condition = mostly(st.sampled_from(ESCALATION_CONDITIONS), st.just("sometimes"))
        when = draw(st.lists(condition, min_size=draw(mostly(st.just(1), st.just(0))), max_size=3, unique=True))
        escalation = {
            "to": draw(mostly(st.sampled_from(targets), ANY_REF) if targets else ANY_REF),
            "when": when,
            "max_rate_bp": draw(
                mostly(st.integers(0, 10_000), st.one_of(st.integers(-10, 20_000), st.sampled_from([2.5, "5%", True])))
            ),
        }
        if ("low_confidence" in when and draw(mostly(st.just(True), st.just(False)))) or draw(st.integers(0, 9)) == 0:
            escalation["confidence_threshold_bp"] = draw(mostly(st.integers(0, 10_000), st.integers(-1, 10_001)))
        route["escalation"] = escalation
    if draw(st.integers(0, 4)) == 0:
        key = draw(mostly(st.sampled_from(["max_latency_ms", "max_cost_micro_usd"]), st.just("max_tokens")))
        route["constraints"] = {key: draw(mostly(st.integers(1, 60_000), st.integers(-1, 0)))}
    return route


@st.composite
def documents(draw) -> str:
    document = {
        "default": draw(mostly(st.just("deny"), st.just("allow"))),
        "routes": draw(
            mostly(
                st.lists(routes(), min_size=1, max_size=3, unique_by=lambda r: (r["task"], r["classification"])),
                # No routes at all, or perhaps two routes for the same key.
                st.one_of(st.just([]), st.lists(routes(), min_size=2, max_size=3)),
            )
        ),
    }
    text = yaml.safe_dump(document, sort_keys=False)
    # Now and then something only the loader can catch.
    return text + draw(
        st.sampled_from([""] * 12 + ["default: deny\n", "notes: &n x\n", "notes: !!python/name:os.system\n"])
    )


def assert_obeys_every_rule(spec: dict, policy_set) -> None:
    """The rules, checked from the registry and the compliance matrix without the validator."""
    assert spec["default"] == "deny"
    keys = [(r["task"], r["classification"]) for r in spec["routes"]]
    assert len(keys) == len(set(keys))
    tiers = {t.slug: t for t in CostTier.objects.all()}
    tasks = {t.slug: t for t in Task.objects.select_related("tier")}
    versions = {v.ref: v for v in ModelVersion.objects.with_related()}
    classifications = {c.slug: c for c in DataClassification.objects.all()}
    matrix = Matrix(versions.values(), classifications.values())

    def usable(ref: str, tier: CostTier, classification: DataClassification) -> ModelVersion:
        version = versions[ref]
        assert version.status == Status.APPROVED, ref
        assert matrix.verdict(version, classification).usable, (ref, classification.slug)
        assert version.cost_tier == tier.slug, ref
        assert version.input_price_micro_usd <= tier.price_ceiling_micro_usd, ref
        return version

    for route in spec["routes"]:
        tier = tiers[route["tier"]] if route["tier"] else tasks[route["task"]].tier
        classification = classifications[route["classification"]]
        primary = usable(route["model"], tier, classification)
        fallbacks = [usable(ref, tier, classification) for ref in route["fallbacks"]]
        assert route["model"] not in route["fallbacks"]
        assert len(set(route["fallbacks"])) == len(route["fallbacks"])
        if policy_set.require_provider_diversity:
            assert any(f.model.provider_id != primary.model.provider_id for f in fallbacks), route
        if escalation := route["escalation"]:
            target_tier = tiers[versions[escalation["to"]].cost_tier]
            usable(escalation["to"], target_tier, classification)
            assert target_tier.rank > tier.rank
            assert escalation["when"] and set(escalation["when"]) <= set(ESCALATION_CONDITIONS)
            assert type(escalation["max_rate_bp"]) is int and 0 <= escalation["max_rate_bp"] <= 10_000
            if "low_confidence" in escalation["when"]:
                threshold = escalation["confidence_threshold_bp"]
                assert type(threshold) is int and 0 <= threshold <= 10_000
        for value in route["constraints"].values():
            assert type(value) is int and value > 0


@settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=documents(), set_slug=st.sampled_from(["production", "staging"]))
def test_nothing_invalid_is_ever_published(world, alice, carol, bob, text, set_slug):
    # Rows written by earlier examples stay (one database transaction per test): count from here.
    policy_set = world.production if set_slug == "production" else world.staging
    current = policy_set.current_version()
    versions_before = PolicyVersion.objects.filter(policy_set=policy_set).count()
    result = validate_document(text, policy_set)
    event("valid" if result.ok else "invalid")
    if result.ok:
        event(f"valid with {len(result.document['routes'])} route(s)")

    change = start_change(policy_set, bob, "Generated", "Hypothesis wrote this.", text)
    assert change.latest_revision().errors == [error.as_dict() for error in result.errors]

    if not result.ok:
        with pytest.raises(ValidationError) as refused:
            change.submit(bob)
        assert "policy" in refused.value.message_dict
        assert ChangeRequest.objects.get(pk=change.pk).status == ChangeStatus.DRAFT
        # Even a request that somehow reached "approved" is validated again at publish.
        ChangeRequest.objects.filter(pk=change.pk).update(status=ChangeStatus.APPROVED)
        with pytest.raises(ValidationError) as refused:
            publish(change, alice)
        assert refused.value.message_dict["policy"] == [str(error) for error in result.errors]
        assert PolicyVersion.objects.filter(policy_set=policy_set).count() == versions_before
        assert ChangeRequest.objects.get(pk=change.pk).status == ChangeStatus.APPROVED
        return

    change.submit(bob)
    for officer in [alice, carol][: policy_set.required_approvals]:
        change.review(officer, "approve", "Generated, checked by the property.")
    version = publish(change, alice)
    assert version.number == current.number + 1
    assert PolicyVersion.objects.filter(policy_set=policy_set).count() == versions_before + 1
    assert version.document == text
    assert version.spec == normalise(result.document)
    assert_obeys_every_rule(version.spec, policy_set)
    # The export of the spec reads back as the same policy (pipelines start changes from it).
    assert normalise(parse_document(to_yaml(version.spec))) == version.spec


def test_publish_validates_again_when_the_matrix_changed_after_approval(world, alice, carol, bob):
    text = world.production.current_version().document.replace("max_rate_bp: 500", "max_rate_bp: 400")
    change = start_change(world.production, bob, "Lower the triage cap", "Fewer escalations.", text)
    change.submit(bob)
    change.review(alice, "approve", "ok")
    change.review(carol, "approve", "ok")
    assert change.status == ChangeStatus.APPROVED
    # After the approvals, an officer suspends a cell the policy relies on.
    gpt_4o = world.versions["openai/gpt-4o@2024-08-06"]
    MatrixCell.for_pair(gpt_4o, world.classifications["pii"]).suspend(carol, "incident at the provider")

    with pytest.raises(ValidationError) as refused:
        publish(change, alice)

    [message] = refused.value.message_dict["policy"]
    assert message.startswith(
        "routes[1].fallbacks[0]: openai/gpt-4o@2024-08-06 may not process pii: suspended by carol"
    )
    assert world.production.current_version().number == 1
    assert ChangeRequest.objects.get(pk=change.pk).status == ChangeStatus.APPROVED


def test_publish_validates_again_when_a_version_was_retired_after_approval(world, alice, carol, bob):
    support = "  - task: support-reply\n    classification: pii\n    model: anthropic/claude-3-5-sonnet@20241022\n"
    text = world.staging.current_version().document + support
    change = start_change(world.staging, bob, "Route support replies", "", text)
    change.submit(bob)
    change.review(alice, "approve", "ok")
    sonnet = world.versions["anthropic/claude-3-5-sonnet@20241022"]
    sonnet.status = Status.RETIRED
    sonnet.save()

    with pytest.raises(ValidationError) as refused:
        publish(change, carol)

    assert refused.value.message_dict["policy"][0] == (
        "routes[2].model: anthropic/claude-3-5-sonnet@20241022 is retired, not approved"
    )
    assert world.staging.current_version().number == 1
