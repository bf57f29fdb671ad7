"""``manage.py seed_demo``: a realistic demo portfolio and the demo users, built through the
lifecycle methods, in one transaction, and idempotent."""

from __future__ import annotations

import copy
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from compliance.models import CertificationHolding, ComplianceAlert, DataClassification, MatrixCell
from demo import seed as demo_seed
from registry.models import Model, ModelVersion, Provider, Status, VersionTransition
from steward.roles import AUDITORS, ENGINEERS, OFFICERS

pytestmark = pytest.mark.django_db

DEMO_ROLES = {"alice": OFFICERS, "carol": OFFICERS, "bob": ENGINEERS, "dave": AUDITORS}


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def row_counts() -> dict[str, int]:
    tables = [
        Provider,
        Model,
        ModelVersion,
        VersionTransition,
        Provider.history.model,
        Model.history.model,
        ModelVersion.history.model,
        User,
        User.groups.through,
        DataClassification,
        CertificationHolding,
        MatrixCell,
        ComplianceAlert,
        CertificationHolding.history.model,
        MatrixCell.history.model,
    ]
    return {table._meta.label: table.objects.count() for table in tables}


def test_seeds_providers_and_versions_across_tiers_and_regions():
    seed()

    versions = list(ModelVersion.objects.all())
    regions = {version.region for version in versions}
    assert Provider.objects.count() >= 8
    assert len(versions) >= 25
    assert {version.cost_tier for version in versions} == {"small", "medium", "large"}
    assert any(region.startswith("eu-") for region in regions)
    assert any(region.startswith("us-") for region in regions)
    assert {"text", "multimodal", "embedding"} <= set(Model.objects.values_list("modality", flat=True))


def test_statuses_are_a_realistic_mix():
    seed()

    counts = {status: ModelVersion.objects.filter(status=status).count() for status in Status}
    assert counts[Status.APPROVED] > ModelVersion.objects.count() / 2
    assert counts[Status.PROPOSED] >= 2
    assert counts[Status.REJECTED] == 1
    assert counts[Status.RESTRICTED] >= 1
    assert counts[Status.DEPRECATED] >= 1
    assert counts[Status.RETIRED] >= 1
    awaiting = ModelVersion.objects.filter(status=Status.PROPOSED)
    assert set(awaiting.values_list("proposed_by__username", flat=True)) == {"bob"}


def test_demo_users_have_names_roles_and_the_printed_passwords():
    output = seed()

    assert set(User.objects.values_list("username", flat=True)) == set(DEMO_ROLES)
    for username, role in DEMO_ROLES.items():
        user = User.objects.get(username=username)
        assert list(user.groups.values_list("name", flat=True)) == [role]
        assert user.first_name and user.last_name
        assert user.check_password(f"steward-demo-{username}")
        assert f"steward-demo-{username}" in output
    assert User.objects.get(username="alice").has_perm("registry.review_modelversion")
    assert not User.objects.get(username="dave").has_perm("registry.add_modelversion")


def test_summary_counts_what_is_in_the_registry():
    output = seed()

    # The summary counts the real portfolio; the demo endpoint's models are reported on their own line.
    providers = Provider.objects.exclude(slug="demo").count()
    versions = ModelVersion.objects.exclude(model__provider__slug="demo")
    assert f"{providers} providers ({providers} new)" in output
    assert f"{versions.count()} model versions ({versions.count()} new)" in output
    assert f"{versions.filter(status=Status.APPROVED).count()} approved" in output
    demo = ModelVersion.objects.filter(model__provider__slug="demo").count()
    assert f"Evaluations: {demo} new demo model versions" in output


def test_second_run_changes_nothing():
    seed()
    before = row_counts()
    passwords = dict(User.objects.values_list("username", "password"))
    history_dates = list(ModelVersion.history.values_list("history_date", flat=True))

    output = seed()

    assert row_counts() == before
    assert dict(User.objects.values_list("username", "password")) == passwords
    assert list(ModelVersion.history.values_list("history_date", flat=True)) == history_dates
    real = ModelVersion.objects.exclude(model__provider__slug="demo").count()
    assert f"{real} model versions (0 new)" in output


def test_no_version_is_decided_by_its_proposer():
    seed()

    decisions = VersionTransition.objects.exclude(action="propose").select_related("version", "actor")
    assert decisions.filter(action="approve").exists()
    for decision in decisions:
        assert decision.actor_id != decision.version.proposed_by_id, decision
        assert decision.actor.groups.filter(name=OFFICERS).exists(), decision
    for version in ModelVersion.objects.filter(status=Status.APPROVED):
        assert version.transitions.filter(action="approve").exclude(actor=version.proposed_by).exists()


def test_every_timeline_is_a_real_lifecycle_with_history():
    seed()

    for version in ModelVersion.objects.prefetch_related("transitions"):
        steps = list(version.transitions.all())
        assert (steps[0].action, steps[0].from_status, steps[0].actor.username) == ("propose", "", "bob")
        for previous, step in zip(steps, steps[1:], strict=False):
            assert step.from_status == previous.to_status, version.ref
            assert step.comment.strip(), version.ref
        assert steps[-1].to_status == version.status, version.ref
        # One history record for the proposal and one for each decision.
        assert version.history.count() == len(steps), version.ref


def test_prices_are_non_negative_integers_and_versions_are_valid():
    seed()

    for version in ModelVersion.objects.select_related("model__provider"):
        for price in (version.input_price_micro_usd, version.output_price_micro_usd):
            assert isinstance(price, int) and price >= 0, version.ref
        # Real providers over TLS; the demo models on Steward's own endpoint on this machine.
        expected = "http://127.0.0.1:" if version.model.provider.slug == "demo" else "https://"
        assert version.base_url.startswith(expected), version.ref
        version.full_clean()
    for model in Model.objects.all():
        model.full_clean()
    for provider in Provider.objects.all():
        provider.full_clean()


def test_cost_tiers_follow_the_input_list_price():
    seed()

    for version in ModelVersion.objects.all():
        price = version.input_price_micro_usd
        expected = "small" if price < 500_000 else "medium" if price <= 5_000_000 else "large"
        assert version.cost_tier == expected, version.ref


def test_existing_users_are_reused_and_get_the_demo_password(alice):
    seed()

    alice.refresh_from_db()
    assert User.objects.filter(username="alice").count() == 1
    assert alice.check_password("steward-demo-alice")
    assert (alice.first_name, alice.last_name) == ("Alice", "Moreau")
    assert list(alice.groups.values_list("name", flat=True)) == [OFFICERS]


def test_existing_version_is_left_alone(proposed_version):
    seed()

    proposed_version.refresh_from_db()
    assert proposed_version.status == Status.PROPOSED
    assert proposed_version.transitions.count() == 1
    assert ModelVersion.objects.filter(ref="mistral/mistral-large@2411").count() == 1
    assert Provider.objects.filter(slug="mistral").count() == 1


def test_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("STEWARD_DEMO_PASSWORD", "lantern-orchard-seventeen")

    output = seed()

    for username in DEMO_ROLES:
        assert User.objects.get(username=username).check_password("lantern-orchard-seventeen")
    assert "from STEWARD_DEMO_PASSWORD" in output


def test_weak_password_from_the_environment_is_refused_and_nothing_is_written(monkeypatch):
    monkeypatch.setenv("STEWARD_DEMO_PASSWORD", "demo")

    with pytest.raises(CommandError, match="STEWARD_DEMO_PASSWORD") as raised:
        seed()

    assert raised.value.returncode == 2
    assert User.objects.count() == 0
    assert Provider.objects.count() == 0


def test_invalid_demo_data_names_the_version_and_writes_nothing(monkeypatch):
    portfolio = copy.deepcopy(demo_seed.portfolio_providers())
    last_version = portfolio[-1]["models"][-1]["versions"][-1]
    last_version["input_price_micro_usd"] = -1
    monkeypatch.setattr(demo_seed, "portfolio_providers", lambda: portfolio)

    with pytest.raises(CommandError, match="deepseek/deepseek-v3@0324: input_price_micro_usd"):
        seed()

    assert row_counts() == dict.fromkeys(row_counts(), 0)


def test_seeds_classifications_holdings_and_a_matrix_with_every_kind_of_cell():
    seed()
    assert set(DataClassification.objects.values_list("slug", flat=True)) >= {
        "public",
        "internal",
        "confidential",
        "pii",
        "pii-eu",
        "phi",
        "pci",
    }
    phi = DataClassification.objects.get(slug="phi")
    assert "hipaa-baa" in phi.required_certifications.values_list("slug", flat=True)
    assert DataClassification.objects.get(slug="pii-eu").allows_region("eu-west-1")
    assert not DataClassification.objects.get(slug="pii-eu").allows_region("us-east-1")
    decisions = set(MatrixCell.objects.values_list("decision", flat=True))
    assert decisions == {"approved", "requested", "denied"}
    assert MatrixCell.objects.filter(suspended_at__isnull=False).exists()
    # no cell was approved by the engineer who requested it, and every approval was eligible
    assert not MatrixCell.objects.filter(decision="approved", decided_by__username="bob").exists()
    assert ComplianceAlert.objects.filter(resolved_at__isnull=True).exists()


def test_seeding_runs_every_demo_suite_once_against_every_demo_model(settings):
    from registry.models import EvaluationRun, EvaluationSuite

    settings.STEWARD_SEED_EVALUATION_RUNS = True
    seed()
    suites = EvaluationSuite.objects.all()
    assert suites.count() >= 3 and all(suite.cases.count() >= 50 for suite in suites)
    runs = EvaluationRun.objects.all()
    assert runs.count() == suites.count() * 4
    assert set(runs.values_list("status", flat=True)) == {"completed"}
    assert all(run.done == run.total and run.errors == 0 for run in runs)
    # The demo models differ: the oracle passes the ticket suite, the budget model does not.
    triage = {r.model_version.ref: r for r in runs.filter(suite__slug="ticket-triage-accuracy")}
    assert triage["demo/oracle@1"].passed and not triage["demo/budget@1"].passed
    seed()  # a second run starts no new evaluations
    assert EvaluationRun.objects.count() == runs.count()
