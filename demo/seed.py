"""The demo loader: the demo portfolio, users, compliance data and routing from ``demo/data/*.yaml``,
written through the product's own domain functions (proposals, lifecycle decisions, matrix
decisions, change requests with reviews), so timelines, history and the audit trail look exactly as
if people had clicked through them.

Running it again changes nothing: everything is found by its slug or ref first, and what already
exists is left alone. The demo models and their suites are ``demo.evaluations``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import CommandError
from django.utils import timezone

from compliance.alerts import record_alerts
from compliance.catalogue import ensure_catalogue
from compliance.matrix import Matrix
from compliance.models import Certification, CertificationHolding, DataClassification, MatrixCell
from portfolio.models import CostTier, PolicySet, Task
from portfolio.publishing import publish, start_change
from portfolio.validation import validate_document
from registry.models import Model, ModelVersion, Provider, Status
from steward import strict_yaml
from steward.roles import AUDITORS, ENGINEERS, OFFICERS

DATA = Path(__file__).resolve().parent / "data"
PASSWORD_ENV = "STEWARD_DEMO_PASSWORD"
ROLES = {"officer": OFFICERS, "engineer": ENGINEERS, "auditor": AUDITORS}


@cache
def data(name: str) -> dict:
    """One demo data file (``demo/data/<name>.yaml``), read once."""
    return strict_yaml.load((DATA / f"{name}.yaml").read_text(encoding="utf-8"))


def demo_users() -> list[dict]:
    """The demo people: username, names, email and the role group they get."""
    return [{**person, "role": ROLES[person["role"]]} for person in data("portfolio")["users"]]


def portfolio_providers() -> list[dict]:
    """The demo providers, each with its endpoint and its models and versions (and their lifecycle steps)."""
    return data("portfolio")["providers"]


# --- people -----------------------------------------------------------------------------------------


@dataclass
class SeedResult:
    """What a run found and created, for the summary."""

    providers: int = 0
    new_providers: int = 0
    models: int = 0
    new_models: int = 0
    versions: int = 0
    new_versions: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    logins: list[tuple[str, str, str, str]] = field(default_factory=list)  # username, password, name, role


def demo_password(username: str) -> str:
    """The demo user's password: ``STEWARD_DEMO_PASSWORD`` if set, else ``steward-demo-<username>``."""
    return os.environ.get(PASSWORD_ENV) or f"steward-demo-{username}"


def ensure_demo_users(result: SeedResult) -> dict[str, AbstractUser]:
    """Create the demo users, or bring existing ones back to their role and demo password.

    An existing user keeps the names and email they have; only blank ones are filled in. Nothing is
    saved when nothing differs, so a second run writes nothing.
    """
    User = get_user_model()
    users: dict[str, AbstractUser] = {}
    for spec in demo_users():
        try:
            group = Group.objects.get(name=spec["role"])
        except Group.DoesNotExist as error:
            raise CommandError(f"The group {spec['role']!r} is missing; run `manage.py migrate` first.") from error
        password = demo_password(spec["username"])
        user = User.objects.filter(username=spec["username"]).first()
        try:
            validate_password(password, user or User(**{k: v for k, v in spec.items() if k != "role"}))
        except ValidationError as error:
            raise CommandError(f"{PASSWORD_ENV}: {' '.join(error.messages)}", returncode=2) from error
        if user is None:
            user = User.objects.create_user(
                spec["username"],
                spec["email"],
                password,
                first_name=spec["first_name"],
                last_name=spec["last_name"],
            )
        else:
            changed = [name for name in ("first_name", "last_name", "email") if not getattr(user, name)]
            for name in changed:
                setattr(user, name, spec[name])
            if not user.check_password(password):
                user.set_password(password)
                changed.append("password")
            if changed:
                user.save(update_fields=changed)
        user.groups.add(group)
        # A fresh instance: permissions are cached per instance and the group may be new.
        users[spec["username"]] = User.objects.get(pk=user.pk)
        result.logins.append((spec["username"], password, user.get_full_name(), spec["role"]))
    return users


# --- the registry -----------------------------------------------------------------------------------


@contextmanager
def _refused_as(what: str) -> Iterator[None]:
    """Turn the domain's refusal of a demo item into a command error that names the item.

    Raised inside the transaction, so nothing of the run is kept.
    """
    try:
        yield
    except ValidationError as error:
        if hasattr(error, "error_dict"):
            detail = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in error.message_dict.items())
        else:
            detail = " ".join(error.messages)
        raise CommandError(f"{what}: {detail} Nothing was written.") from error
    except PermissionDenied as error:
        raise CommandError(f"{what}: {error} Nothing was written.") from error


def _create(instance: Provider | Model, by: AbstractUser) -> None:
    """Validate and save a new provider or model, attributed to ``by`` in its history."""
    with _refused_as(f"{type(instance).__name__.lower()} {instance.slug}"):
        instance.full_clean()
    instance._history_user = by
    instance.save()


def seed_registry(users: dict[str, AbstractUser], result: SeedResult) -> None:
    """Create whatever part of the demo portfolio is missing; versions go through their lifecycle."""
    proposer = users[data("portfolio")["proposer"]]
    refs = []
    for provider_spec in portfolio_providers():
        provider = Provider.objects.filter(slug=provider_spec["slug"]).first()
        if provider is None:
            provider = Provider(**{k: v for k, v in provider_spec.items() if k not in ("endpoint", "models")})
            _create(provider, proposer)
            result.new_providers += 1
        result.providers += 1
        for model_spec in provider_spec["models"]:
            model = Model.objects.filter(provider=provider, slug=model_spec["slug"]).first()
            if model is None:
                model = Model(provider=provider, **{k: v for k, v in model_spec.items() if k != "versions"})
                _create(model, proposer)
                result.new_models += 1
            result.models += 1
            for version_spec in model_spec["versions"]:
                fields = {**provider_spec["endpoint"], **version_spec}
                steps = fields.pop("steps")
                ref = ModelVersion.make_ref(provider.slug, model.slug, fields["version"])
                refs.append(ref)
                result.versions += 1
                if ModelVersion.objects.filter(ref=ref).exists():
                    continue
                with _refused_as(ref):
                    version = ModelVersion.propose(proposer, model=model, **fields)
                    for step in steps:
                        version.transition(step["action"], users[step["by"]], step["comment"])
                result.new_versions += 1
    result.statuses.update(ModelVersion.objects.filter(ref__in=refs).values_list("status", flat=True))


# --- compliance -------------------------------------------------------------------------------------


@dataclass
class ComplianceSeedResult:
    classifications: int = 0
    holdings: int = 0
    cells: int = 0
    notes: list[str] = field(default_factory=list)


def seed_compliance(users: dict[str, AbstractUser], today: dt.date | None = None) -> ComplianceSeedResult:
    """Create whatever part of the compliance demo is missing. Call inside a transaction."""
    today = today or timezone.now().date()
    result = ComplianceSeedResult()
    alice, carol, bob = users["alice"], users["carol"], users["bob"]
    ensure_catalogue(Certification)  # a flushed test database has lost the migration's rows
    certifications = {c.slug: c for c in Certification.objects.all()}

    spec = data("compliance")
    for entry in spec["classifications"]:
        fields = {k: v for k, v in entry.items() if k not in ("slug", "requires")}
        classification, created = DataClassification.objects.get_or_create(slug=entry["slug"], defaults=fields)
        if created:
            classification.required_certifications.set([certifications[r] for r in entry["requires"]])
            result.classifications += 1

    holdings = spec["holdings"]
    providers = {p.slug: p for p in Provider.objects.filter(slug__in=holdings)}
    for provider_slug, held in holdings.items():
        provider = providers.get(provider_slug)
        if provider is None:
            continue
        for entry in held:
            certification_slug, special = entry["certification"], entry.get("validity", "")
            if CertificationHolding.objects.filter(provider=provider, certification__slug=certification_slug).exists():
                continue
            valid_from, valid_until = today - dt.timedelta(days=300), today + dt.timedelta(days=430)
            if special == "expiring":
                valid_until = today + dt.timedelta(days=20)
            elif special == "expired":
                valid_from, valid_until = today - dt.timedelta(days=370), today - dt.timedelta(days=5)
            holding = CertificationHolding(
                provider=provider,
                certification=certifications[certification_slug],
                valid_from=valid_from,
                valid_until=valid_until,
                evidence_url=spec["trust_pages"][provider_slug],
                recorded_by=alice,
                notes="Report reviewed by the governance office.",
            )
            holding.full_clean()
            holding._history_user = alice
            holding.save()
            result.holdings += 1

    if MatrixCell.objects.exists():
        return result  # cells were seeded before; officers may have changed them since
    versions = list(ModelVersion.objects.with_related().filter(status=Status.APPROVED))
    matrix = Matrix(versions, DataClassification.objects.all())
    officers = [alice, carol]
    denied = {(d["classification"], d["provider"]) for d in spec["denied"]}
    approved_sensitive = {(a["classification"], a["version"]) for a in spec["approved_sensitive"]}
    requested = set(spec["requested"])
    for index, (version, row) in enumerate(matrix.rows()):
        for classification, verdict in row:
            cell = MatrixCell.for_pair(version, classification)
            provider_slug = version.model.provider.slug
            if (classification.slug, provider_slug) in denied:
                cell.deny(carol, "The global endpoint gives no data-location commitment for personal data.")
            elif not verdict.eligible:
                continue
            elif (classification.slug, version.ref) in approved_sensitive:
                cell.request(bob, f"Needed to route {classification.name.lower()} workloads.")
                cell.approve(officers[index % 2], f"BAA/attestation and residency verified for {classification.name}.")
            elif classification.slug in requested:
                if index % 3 == 0:
                    cell.request(bob, f"Needed to route {classification.name.lower()} workloads.")
                else:
                    continue
            else:
                cell.approve(officers[index % 2], f"Certifications and residency verified for {classification.name}.")
            result.cells += 1

    # One approved cell under investigation, so the demo shows a suspension.
    suspended = MatrixCell.objects.filter(decision="approved", classification__slug="pii").order_by("pk").first()
    if suspended:
        suspended.suspend(carol, "Provider incident report pending review.")
    record_alerts()
    return result


# --- routing ----------------------------------------------------------------------------------------


def seed_routing(users: dict[str, AbstractUser]) -> dict:
    """Create the missing tiers, tasks, policy sets and first policy versions. Call inside a transaction."""
    created: dict = {"tiers": 0, "tasks": 0, "policy_sets": 0, "versions": 0, "notes": []}
    notes = created["notes"]
    spec = data("routing")
    for entry in spec["tiers"]:
        _, new = CostTier.objects.get_or_create(
            slug=entry["slug"], defaults={k: v for k, v in entry.items() if k != "slug"}
        )
        created["tiers"] += new
    tiers = {t.slug: t for t in CostTier.objects.all()}
    classifications = {c.slug: c for c in DataClassification.objects.all()}
    for entry in spec["tasks"]:
        fields = {k: v for k, v in entry.items() if k not in ("slug", "classification", "tier")}
        _, new = Task.objects.get_or_create(
            slug=entry["slug"],
            defaults={
                **fields,
                "default_classification": classifications[entry["classification"]],
                "tier": tiers[entry["tier"]],
            },
        )
        created["tasks"] += new
    for entry in spec["policy_sets"]:
        slug, document = entry["slug"], entry["first_policy"]
        fields = {k: v for k, v in entry.items() if k not in ("slug", "first_policy")}
        policy_set, new = PolicySet.objects.get_or_create(slug=slug, defaults=fields)
        created["policy_sets"] += new
        if policy_set.versions.exists():
            continue
        check = validate_document(document, policy_set)
        if not check.ok:
            # The registry differs from the demo's (an existing installation): leave the set empty.
            problems = "; ".join(str(error) for error in check.errors[:3])
            notes.append(f"{slug}: demo policy not published, the registry differs ({problems} …)")
            continue
        change = start_change(
            policy_set, users["bob"], f"First {slug} routing policy", "Routes for the tasks we run today.", document
        )
        change.submit(users["bob"])
        officers = [users["alice"], users["carol"]][: policy_set.required_approvals]
        for officer in officers:
            change.review(officer, "approve", "Checked every route against the matrix and the tiers.")
        publish(change, users["alice"])
        created["versions"] += 1
    return created
