"""The certification catalogue every organisation starts with; officers can add more."""

from __future__ import annotations

CATALOGUE: list[tuple[str, str, str]] = [
    (
        "soc2-type2",
        "SOC 2 Type II",
        "AICPA SOC 2 Type II report on security, availability and confidentiality controls.",
    ),
    ("iso27001", "ISO/IEC 27001", "Information security management system certification."),
    ("iso42001", "ISO/IEC 42001", "Artificial intelligence management system certification."),
    ("hipaa-baa", "HIPAA BAA", "A signed HIPAA Business Associate Agreement covering protected health information."),
    ("pci-dss", "PCI DSS", "Payment Card Industry Data Security Standard attestation of compliance."),
    ("gdpr-dpa", "GDPR DPA", "A GDPR Data Processing Agreement (Art. 28) with the provider."),
    ("fedramp-moderate", "FedRAMP Moderate", "US federal authorisation at the Moderate impact level."),
]


def ensure_catalogue(certification_model) -> int:
    """Create the catalogue's missing certifications; returns how many were created."""
    created = 0
    for slug, name, description in CATALOGUE:
        _, new = certification_model.objects.get_or_create(
            slug=slug, defaults={"name": name, "description": description}
        )
        created += new
    return created
