"""The change-impact preview: a seeded window of decisions (known volumes, tokens and latencies) replayed
through a proposal, every figure checked against values worked out by hand."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from audits.rollups import add_batch, bucket, bucket_value
from compliance.models import MatrixCell
from portfolio.impact import crossings, default_window, impact, proposed_policy, revision_impact, with_compliance
from portfolio.models import ChangeStatus
from portfolio.publishing import start_change
from registry.models import EvaluationRun, EvaluationSuite, RunStatus
from tests.factories import decision_rows

MINI = "openai/gpt-4o-mini@2024-07-18"  # 150,000 in / 600,000 out µUSD per million tokens
SMALL = "mistral/mistral-small@2501"  # 100,000 / 400,000
FLASH = "google/gemini-2.0-flash@001"
GPT4O = "openai/gpt-4o@2024-08-06"  # 2,500,000 / 10,000,000
SONNET = "anthropic/claude-3-5-sonnet@20241022"  # 3,000,000 / 12,000,000
LEGACY = "acme/legacy@0"  # not in the registry

# Production v1 with ticket-triage sent to mistral-small first (its old primary now a fallback), and a
# new code-review route that has had no traffic.
PROPOSAL = f"""\
default: deny
routes:
  - task: ticket-triage
    classification: internal
    model: {SMALL}
    fallbacks: [{MINI}, {FLASH}]
    escalation:
      to: {GPT4O}
      when: [low_confidence, context_overflow]
      confidence_threshold_bp: 7000
      max_rate_bp: 500
  - task: support-reply
    classification: pii
    model: {SONNET}
    fallbacks: [{GPT4O}]
    escalation:
      to: anthropic/claude-opus-4@20250514
      when: [error, low_confidence]
      confidence_threshold_bp: 6000
      max_rate_bp: 300
    constraints:
      max_latency_ms: 8000
  - task: code-review
    classification: internal
    model: {GPT4O}
    fallbacks: [{SONNET}]
"""


def seed_window(since: dt.datetime, until: dt.datetime) -> None:
    """The seeded window: decisions spread over hours inside it, and some just outside it."""
    early, late = since + dt.timedelta(hours=3), until - dt.timedelta(hours=2)
    rows = []
    # ticket-triage / internal: 1,400 on the primary (two hours), 140 on the fallback, 14 escalated.
    rows += decision_rows(700, "ticket-triage", "internal", MINI, "openai", 1000, 200, 400, early)
    rows += decision_rows(700, "ticket-triage", "internal", MINI, "openai", 1000, 200, 400, late)
    rows += decision_rows(140, "ticket-triage", "internal", SMALL, "mistral", 1000, 200, 300, early)
    rows += decision_rows(14, "ticket-triage", "internal", GPT4O, "openai", 2000, 500, 1500, late)
    # A model the registry does not know (an older router's name): 10 requests, 50 µUSD each as recorded.
    rows += decision_rows(10, "ticket-triage", "internal", LEGACY, "acme", 1000, 200, 400, early, cost=50)
    # support-reply / pii: unchanged, 700 requests.
    rows += decision_rows(700, "support-reply", "pii", SONNET, "anthropic", 500, 300, 800, late)
    # Outside the window: the hour before it, and the hour it ends with (excluded).
    rows += decision_rows(
        99, "ticket-triage", "internal", MINI, "openai", 1000, 200, 400, since - dt.timedelta(hours=1)
    )
    rows += decision_rows(99, "ticket-triage", "internal", MINI, "openai", 1000, 200, 400, until)
    add_batch(rows)


def sketch_ms(ms: float) -> int:
    """What the latency sketch answers for requests that all took ``ms``: its bucket's value, to the ms."""
    return int(bucket_value(bucket(ms)) + 0.5)


def guard(task, slug: str, scores: dict) -> EvaluationSuite:
    suite = EvaluationSuite.objects.create(name=slug, slug=slug, category="accuracy")
    task.suites.add(suite)
    finished = timezone.now() - dt.timedelta(hours=1)
    for version, score in scores.items():
        EvaluationRun.objects.create(
            suite=suite, model_version=version, status=RunStatus.COMPLETED, score_bp=score, finished_at=finished
        )
    return suite


@pytest.fixture
def window():
    since, until = default_window()
    seed_window(since, until)
    return since, until


@pytest.fixture
def scored(world):
    versions = world.versions
    # The latest run counts: an older, better score of mistral-small is ignored.
    accuracy = guard(world.tasks["ticket-triage"], "triage-accuracy", {versions[MINI]: 9000, versions[SMALL]: 9500})
    EvaluationRun.objects.filter(suite=accuracy, model_version=versions[SMALL]).update(
        finished_at=timezone.now() - dt.timedelta(days=3)
    )
    EvaluationRun.objects.create(
        suite=accuracy,
        model_version=versions[SMALL],
        status=RunStatus.COMPLETED,
        score_bp=8700,
        finished_at=timezone.now() - dt.timedelta(minutes=5),
    )
    guard(world.tasks["ticket-triage"], "triage-safety", {versions[MINI]: 9900})
    return world


def test_figures_equal_the_hand_computed_values(scored, window, django_assert_max_num_queries):
    since, until = window
    with django_assert_max_num_queries(8):
        result = impact(scored.production, proposed_policy(PROPOSAL), since, until)
    assert result["window"]["days"] == 14
    routes = {(r["task"], r["classification"]): r for r in result["routes"]}

    triage = routes[("ticket-triage", "internal")]
    assert triage["change"] == "changed"
    assert (triage["before_model"], triage["after_model"]) == (MINI, SMALL)
    assert triage["requests"] == 1400 + 140 + 14 + 10
    assert triage["requests_per_day"] == 112  # 1,564 / 14 = 111.7
    # The primary's 1,400 and the unknown model's 10 move to mistral-small; the fallback's and the
    # escalation's stay where they were.
    assert triage["moved_requests"] == 1410
    assert triage["moved_share_bp"] == 9015  # 1,410 / 1,564
    # Cost per rollup group, rounded up: gpt-4o-mini 1.4M in x 0.15 + 280k out x 0.6 = 378,000;
    # mistral-small's 140: 14,000 + 11,200 = 25,200; gpt-4o's 14: 28k x 2.5 + 7k x 10 = 140,000;
    # the unknown model keeps its recorded 10 x 50 = 500.
    assert triage["before"]["cost_micro_usd"] == 378_000 + 25_200 + 140_000 + 500
    assert triage["before"]["cost_per_day_micro_usd"] == 38_836  # 543,700 / 14 = 38,835.7, rounded up
    assert triage["before"]["cost_per_1k_micro_usd"] == 347_635  # 543,700,000 / 1,564 = 347,634.3
    # After: the 1,400 at mistral-small's prices are 140,000 + 112,000 = 252,000; the unknown model's
    # 10 at mistral-small's prices are 1,000 + 800 = 1,800.
    assert triage["after"]["cost_micro_usd"] == 252_000 + 25_200 + 140_000 + 1_800
    assert triage["after"]["cost_per_day_micro_usd"] == 29_929  # 419,000 / 14 = 29,928.6
    assert triage["after"]["cost_per_1k_micro_usd"] == 267_903  # 419,000,000 / 1,564 = 267,902.8
    assert {m["model"]: m["requests"] for m in triage["before"]["by_model"]} == {
        MINI: 1400,
        SMALL: 140,
        GPT4O: 14,
        LEGACY: 10,
    }
    assert {m["model"]: m["requests"] for m in triage["after"]["by_model"]} == {SMALL: 1550, GPT4O: 14}
    legacy = next(m for m in triage["before"]["by_model"] if m["model"] == LEGACY)
    assert legacy["in_registry"] is False
    assert result["unknown_models"] == [LEGACY]

    # Latency before: 140 at 300 ms, 1,410 at 400, 14 at 1,500: the median and p95 fall at 400 ms.
    assert (triage["before"]["latency_p50_ms"], triage["before"]["latency_p95_ms"]) == (sketch_ms(400),) * 2
    assert triage["before"]["latency_source"] == "observed"
    # After: mistral-small served traffic in the window (its 140 at 300 ms): observed.
    assert (triage["after"]["latency_p50_ms"], triage["after"]["latency_p95_ms"]) == (sketch_ms(300),) * 2
    assert triage["after"]["latency_source"] == "observed"

    # Quality: the latest runs (mistral-small's newest 87.0 against gpt-4o-mini's 90.0), and a suite
    # mistral-small was never run on.
    assert triage["quality"] == [
        {
            "suite": "triage-accuracy",
            "before_score_bp": 9000,
            "after_score_bp": 8700,
            "change_bp": -300,
            "warning": f"{SMALL} scores 3 points lower than {MINI} on triage-accuracy (more than 2)",
        },
        {
            "suite": "triage-safety",
            "before_score_bp": 9900,
            "after_score_bp": None,
            "change_bp": None,
            "warning": f"{SMALL} has not been evaluated on triage-safety",
        },
    ]

    support = routes[("support-reply", "pii")]
    assert support["change"] == "unchanged"
    assert (support["requests"], support["moved_requests"]) == (700, 0)
    # 350k in x 3 + 210k out x 12 = 3,570,000, before and after.
    assert support["before"]["cost_micro_usd"] == support["after"]["cost_micro_usd"] == 3_570_000
    assert support["after"]["latency_p95_ms"] == sketch_ms(800)

    code_review = routes[("code-review", "internal")]
    assert (code_review["change"], code_review["has_traffic"], code_review["requests"]) == ("added", False, 0)
    assert code_review["before"]["cost_per_1k_micro_usd"] is None
    assert result["no_traffic"] == ["code-review / internal"]

    totals = result["totals"]
    assert totals["requests"] == 2264
    assert totals["requests_per_day"] == 162  # 161.7
    assert (totals["moved_requests"], totals["moved_share_bp"]) == (1410, 6228)  # 1,410 / 2,264 = 62.28 %
    assert totals["before"]["cost_micro_usd"] == 4_113_700
    assert totals["after"]["cost_micro_usd"] == 3_989_000
    assert totals["before"]["cost_per_day_micro_usd"] == 293_836  # 293,835.7
    assert totals["after"]["cost_per_day_micro_usd"] == 284_929  # 284,928.6
    assert totals["cost_change_bp"] == -303  # −124,700 / 4,113,700 = −3.03 %

    # Providers: before openai 1,414, anthropic 700, mistral 140, acme 10 (the rollup's own provider).
    assert result["providers"]["before"] == [
        {"provider": "openai", "requests": 1414, "share_bp": 6246},
        {"provider": "anthropic", "requests": 700, "share_bp": 3092},
        {"provider": "mistral", "requests": 140, "share_bp": 618},
        {"provider": "acme", "requests": 10, "share_bp": 44},
    ]
    assert result["providers"]["after"] == [
        {"provider": "mistral", "requests": 1550, "share_bp": 6846},
        {"provider": "anthropic", "requests": 700, "share_bp": 3092},
        {"provider": "openai", "requests": 14, "share_bp": 62},
    ]


def test_a_route_whose_models_share_one_provider_is_warned_of(world, window):
    since, until = window
    document = "default: deny\nroutes:\n  - task: ticket-triage\n    classification: internal\n    model: " + SMALL
    result = impact(world.staging, proposed_policy(document), since, until)
    triage = next(r for r in result["routes"] if r["task"] == "ticket-triage")
    assert triage["after"]["single_provider"] == "mistral"
    assert "the primary and every fallback are from mistral: no fallback at another provider" in triage["warnings"]
    # staging v1's code-review route is removed by this document: its traffic (none) is listed, not hidden.
    removed = next(r for r in result["routes"] if r["task"] == "code-review")
    assert (removed["change"], removed["has_traffic"]) == ("removed", False)


def test_removed_route_traffic_would_be_denied(world, window):
    since, until = window
    document = PROPOSAL.split("  - task: support-reply")[0]
    result = impact(world.production, proposed_policy(document), since, until)
    support = next(r for r in result["routes"] if r["task"] == "support-reply")
    assert (support["change"], support["moved_requests"], support["after"]["cost_micro_usd"]) == ("removed", 700, 0)
    assert support["after"]["by_model"] == []


def test_unusable_classification_is_refused_by_validation_and_shown_when_the_matrix_changes(world, window, bob, carol):
    # google may not process pii: a proposal routing pii there is refused when written.
    refused = start_change(world.production, bob, "pii to google", "", PROPOSAL.replace(SONNET, FLASH, 1))
    assert any("may not process pii" in e["message"] for e in refused.latest_revision().errors)
    with pytest.raises(ValidationError, match="validation error"):
        refused.submit(bob)

    change = start_change(world.production, bob, "triage to mistral", "", PROPOSAL)
    change.submit(bob)
    assert change.status == ChangeStatus.IN_REVIEW
    figures = revision_impact(change.latest_revision())
    assert with_compliance(figures)["compliance"] == {"requests": 0}
    # After submission, mistral-small's internal cell is suspended: the traffic it would take shows.
    MatrixCell.for_pair(world.versions[SMALL], world.classifications["internal"]).suspend(carol, "Incident.")
    shown = with_compliance(revision_impact(change.latest_revision()))
    assert shown["compliance"] == {"requests": 1550}
    triage = next(r for r in shown["routes"] if r["task"] == "ticket-triage")
    assert triage["compliance"]["models"][0]["model"] == SMALL
    assert triage["compliance"]["requests"] == 1550


def test_thresholds_name_what_the_change_crosses(scored, window):
    since, until = window
    result = impact(scored.production, proposed_policy(PROPOSAL), since, until)
    production = scored.production
    assert crossings(result, production) == []
    production.threshold_cost_increase_percent = 20
    production.threshold_quality_drop_bp = 200
    production.threshold_provider_share_percent = 60
    found = crossings(result, production)
    assert [c.code for c in found] == ["quality", "provider"]  # the cost falls by 3.03 %
    assert found[0].text == "Quality drops more than 2 points: ticket-triage / internal on triage-accuracy (3)"
    assert found[1].text == "mistral would carry 68.46 % of the traffic, above the 60 % threshold"


def test_a_dearer_primary_crosses_the_cost_threshold(world, window):
    since, until = window
    haiku = "anthropic/claude-3-haiku@20240307"  # 250,000 / 1,000,000
    result = impact(
        world.production, proposed_policy(PROPOSAL.replace(f"model: {SMALL}", f"model: {haiku}")), since, until
    )
    triage = next(r for r in result["routes"] if r["task"] == "ticket-triage")
    # The primary's 1,400 and the unknown model's 10 go to haiku (630,000 and 4,500); mistral-small was
    # the first fallback and no longer is: its 140 go to the new first fallback, gpt-4o-mini (37,800).
    assert {m["model"]: m["cost_micro_usd"] for m in triage["after"]["by_model"]} == {
        haiku: 634_500,
        MINI: 37_800,
        GPT4O: 140_000,
    }
    assert result["totals"]["after"]["cost_micro_usd"] == 4_382_300
    assert result["totals"]["cost_change_bp"] == 653  # 268,600 / 4,113,700 = 6.53 %
    world.production.threshold_cost_increase_percent = 5
    assert [c.text for c in crossings(result, world.production)] == [
        "Cost rises 6.53 % (293,836 → 313,022 µUSD a day), above the 5 % threshold"
    ]
    world.production.threshold_cost_increase_percent = 7
    assert crossings(result, world.production) == []


def test_revision_impact_is_worked_out_once(world, window, bob, django_assert_num_queries):
    change = start_change(world.production, bob, "triage to mistral", "", PROPOSAL)
    revision = change.latest_revision()
    first = revision_impact(revision)
    revision.refresh_from_db()
    assert revision.impact == first
    with django_assert_num_queries(0):
        assert revision_impact(revision) == first
