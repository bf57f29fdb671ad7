"""Demo compliance data for ``manage.py seed_demo``: classifications, holdings and matrix cells.

Dates are relative to the day of the first run so that the demo always shows a certification
about to expire and one that has expired. Running it again changes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractUser
from django.utils import timezone

from registry.models import ModelVersion, Provider, Status

from .alerts import record_alerts
from .catalogue import ensure_catalogue
from .matrix import Matrix
from .models import Certification, CertificationHolding, DataClassification, MatrixCell, StorageRule

# slug, name, level, required certifications, allowed regions, storage, description
CLASSIFICATIONS: list[tuple[str, str, int, list[str], list[str], str, str]] = [
    ("public", "Public", 0, [], [], StorageRule.CONTENT, "Published material; no restriction."),
    ("internal", "Internal", 1, ["soc2-type2"], [], StorageRule.CONTENT, "Internal documents and tickets."),
    (
        "confidential",
        "Confidential",
        2,
        ["soc2-type2", "iso27001"],
        [],
        StorageRule.DIGEST,
        "Contracts, strategy, source code.",
    ),
    (
        "pii",
        "Personal data",
        3,
        ["soc2-type2", "gdpr-dpa"],
        [],
        StorageRule.DIGEST,
        "Personal data of customers and staff.",
    ),
    (
        "pii-eu",
        "Personal data (EU residency)",
        3,
        ["gdpr-dpa", "iso27001"],
        ["eu-*", "swedencentral"],
        StorageRule.DIGEST,
        "Personal data that must stay in the EU.",
    ),
    (
        "phi",
        "Protected health information",
        4,
        ["hipaa-baa", "iso27001"],
        ["us-*", "eu-*"],
        StorageRule.DIGEST,
        "Health data under HIPAA.",
    ),
    (
        "pci",
        "Payment card data",
        4,
        ["pci-dss"],
        ["us-*", "eu-*"],
        StorageRule.DIGEST,
        "Cardholder data under PCI DSS.",
    ),
]

# provider slug → certifications held. Special validity: "expiring" (in 20 days) or "expired" (5 days ago).
HOLDINGS: dict[str, list[tuple[str, str]]] = {
    "openai": [("soc2-type2", ""), ("iso27001", ""), ("gdpr-dpa", ""), ("hipaa-baa", "")],
    "azure-openai": [
        ("soc2-type2", ""),
        ("iso27001", ""),
        ("iso42001", ""),
        ("hipaa-baa", ""),
        ("pci-dss", ""),
        ("gdpr-dpa", ""),
        ("fedramp-moderate", ""),
    ],
    "anthropic": [("soc2-type2", ""), ("iso27001", ""), ("iso42001", ""), ("hipaa-baa", ""), ("gdpr-dpa", "")],
    "google": [
        ("soc2-type2", ""),
        ("iso27001", ""),
        ("iso42001", ""),
        ("hipaa-baa", ""),
        ("pci-dss", ""),
        ("gdpr-dpa", ""),
    ],
    "mistral": [("soc2-type2", ""), ("iso27001", "expiring"), ("gdpr-dpa", "")],
    "cohere": [("soc2-type2", ""), ("iso27001", "expired"), ("gdpr-dpa", "")],
    "aws-bedrock": [
        ("soc2-type2", ""),
        ("iso27001", ""),
        ("hipaa-baa", ""),
        ("pci-dss", ""),
        ("gdpr-dpa", ""),
        ("fedramp-moderate", ""),
    ],
}

TRUST_PAGES = {
    "openai": "https://trust.openai.com/",
    "azure-openai": "https://servicetrust.microsoft.com/",
    "anthropic": "https://trust.anthropic.com/",
    "google": "https://cloud.google.com/security/compliance",
    "mistral": "https://trust.mistral.ai/",
    "cohere": "https://trustcenter.cohere.com/",
    "aws-bedrock": "https://aws.amazon.com/compliance/",
}

# Sensitive classifications: a few cells approved, others requested and awaiting an officer.
REQUESTED = {"pci", "phi"}
APPROVED_SENSITIVE = {
    ("phi", "aws-bedrock/claude-3-5-sonnet@20240620-v1"),
    ("phi", "openai/gpt-4o@2024-08-06"),
    ("phi", "anthropic/claude-3-7-sonnet@20250219"),
    ("pci", "aws-bedrock/nova-lite@v1"),
    ("pci", "aws-bedrock/nova-pro@v1"),
}
DENIED = [("pii", "google")]


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

    for slug, name, level, required, regions, storage, description in CLASSIFICATIONS:
        classification, created = DataClassification.objects.get_or_create(
            slug=slug,
            defaults={
                "name": name,
                "level": level,
                "allowed_regions": regions,
                "storage": storage,
                "description": description,
            },
        )
        if created:
            classification.required_certifications.set([certifications[r] for r in required])
            result.classifications += 1

    providers = {p.slug: p for p in Provider.objects.filter(slug__in=HOLDINGS)}
    for provider_slug, held in HOLDINGS.items():
        provider = providers.get(provider_slug)
        if provider is None:
            continue
        for certification_slug, special in held:
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
                evidence_url=TRUST_PAGES[provider_slug],
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
    for index, (version, row) in enumerate(matrix.rows()):
        for classification, verdict in row:
            cell = MatrixCell.for_pair(version, classification)
            provider_slug = version.model.provider.slug
            if (classification.slug, provider_slug) in DENIED:
                cell.deny(carol, "The global endpoint gives no data-location commitment for personal data.")
            elif not verdict.eligible:
                continue
            elif (classification.slug, version.ref) in APPROVED_SENSITIVE:
                cell.request(bob, f"Needed to route {classification.name.lower()} workloads.")
                cell.approve(officers[index % 2], f"BAA/attestation and residency verified for {classification.name}.")
            elif classification.slug in REQUESTED:
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
