"""Benchmark: the compliance matrix page against the registry list, both showing the same 300 versions.

One run creates 300 model versions x 10 classifications (with certification holdings and cells in
every state), then prints the median server time of the matrix page, its CSV export and the
registry list page rendering the same 300 versions, and the ratios against the list. The floor is
the list page measured in the same run; the target is a matrix page at most 2x the list.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward_matrixbench .venv/bin/python bench/matrix_page.py
"""

from __future__ import annotations

import datetime as dt

import harness

harness.setup_django()

from django.contrib.auth.models import User  # noqa: E402
from django.utils import timezone  # noqa: E402

from compliance.models import Certification, CertificationHolding, DataClassification, MatrixCell  # noqa: E402
from steward.roles import ENGINEERS, OFFICERS  # noqa: E402
from tests.factories import make_versions  # noqa: E402

VERSIONS = 300
REPEATS = 20
TARGET = 2.0
LIST = f"/registry/?per_page={VERSIONS}"
MATRIX = f"/compliance/matrix/?per_page={VERSIONS}"
CSV = "/compliance/matrix.csv"

# slug, level, required certifications, allowed regions
CLASSIFICATIONS = [
    ("public", 0, [], []),
    ("internal", 1, ["soc2-type2"], []),
    ("confidential", 2, ["soc2-type2", "iso27001"], []),
    ("pii", 3, ["soc2-type2"], []),
    ("pii-eu", 3, ["gdpr-dpa"], ["eu-*"]),
    ("legal", 3, ["iso27001"], []),
    ("phi", 4, ["hipaa-baa"], []),
    ("pci", 4, ["pci-dss"], []),
    ("gov-us", 5, ["fedramp-moderate"], ["us-*"]),
    ("secret", 6, ["iso27001", "fedramp-moderate"], []),
]
HELD = ["soc2-type2", "iso27001", "gdpr-dpa", "hipaa-baa", "pci-dss"]


def populate(engineer: User, officer: User) -> None:
    """300 versions, 10 classifications, holdings (valid, expired, overrides) and cells in every state."""
    certifications = {c.slug: c for c in Certification.objects.all()}
    classifications = []
    for slug, level, required, regions in CLASSIFICATIONS:
        classification = DataClassification.objects.create(slug=slug, name=slug, level=level, allowed_regions=regions)
        classification.required_certifications.set([certifications[r] for r in required])
        classifications.append(classification)
    versions = make_versions(VERSIONS, engineer)
    today = timezone.localdate()
    providers = sorted({v.model.provider for v in versions}, key=lambda p: p.pk)
    for i, provider in enumerate(providers):
        for j, slug in enumerate(HELD[: 2 + i]):
            CertificationHolding.objects.create(
                provider=provider,
                certification=certifications[slug],
                valid_from=dt.date(2025, 1, 1),
                valid_until=today + dt.timedelta(days=[400, 200, -5, 90, 30][j]),
                evidence_url="https://trust.example.com/report.pdf",
                recorded_by=officer,
            )
    for version in versions[::25]:
        CertificationHolding.objects.create(
            model_version=version,
            certification=certifications["soc2-type2"],
            effect="revokes",
            valid_from=dt.date(2025, 1, 1),
            valid_until=today + dt.timedelta(days=100),
            recorded_by=officer,
        )
    for k, version in enumerate(versions):
        for n, classification in enumerate(classifications[:6]):
            cell = MatrixCell.for_pair(version, classification)
            mode = (k + n) % 6
            try:
                if mode == 0:
                    cell.request(engineer, "needed")
                elif mode in (1, 2):
                    cell.approve(officer, "reviewed")
                elif mode == 3:
                    cell.deny(officer, "not needed")
                elif mode == 4:
                    cell.approve(officer, "reviewed")
                    cell.suspend(officer, "incident")
            except Exception:  # noqa: BLE001 - ineligible cells stay as they are
                pass
    print(
        f"data: {len(versions)} versions x {len(classifications)} classifications, "
        f"{CertificationHolding.objects.count()} holdings, {MatrixCell.objects.count()} cells"
    )


def main() -> None:
    with harness.test_database():
        engineer = harness.member("bench-bob", ENGINEERS)
        officer = harness.member("bench-alice", OFFICERS)
        populate(engineer, officer)
        client = harness.signed_in(officer)
        for url in (LIST, MATRIX, CSV):  # warm up templates, plotly and caches
            client.get(url)
        results = harness.medians(client, [LIST, MATRIX, CSV], REPEATS)
        floor, floor_queries = results[LIST]
        print(f"{LIST:40s} {floor * 1000:7.1f} ms ({floor_queries} queries)  floor")
        ratios = {}
        for url in (MATRIX, CSV):
            seconds, queries = results[url]
            ratios[url] = seconds / floor
            print(f"{url:40s} {seconds * 1000:7.1f} ms ({queries} queries)  ratio {ratios[url]:.2f}")
        verdict = "ok" if ratios[MATRIX] <= TARGET else "OVER TARGET"
        print(f"matrix page / list page: {ratios[MATRIX]:.2f} (target <= {TARGET:.1f}) {verdict}")


if __name__ == "__main__":
    harness.main(main)
