"""Benchmark: the registry list costs the same at 20 and at 2,000 model versions.

Prints the median time of a page at each size and their ratio; the floor is the 20-version
figure measured in the same run. A ratio near 1 means paging and constant queries hold.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward .venv/bin/python bench/registry_list.py
"""

from __future__ import annotations

import harness

harness.setup_django()

from steward.roles import ENGINEERS  # noqa: E402
from tests.factories import make_versions  # noqa: E402

URLS = ["/registry/", "/registry/?status=approved&sort=-input_price", "/api/v1/model-versions"]
REPEATS = 30


def main() -> None:
    with harness.test_database():
        bob = harness.member("bench-bob", ENGINEERS)
        client = harness.signed_in(bob)
        make_versions(20, bob)
        floor = harness.medians(client, URLS, REPEATS)
        for _ in range(9):
            make_versions(220, bob)
        print(f"versions: 20 → {bob.proposed_versions.count()}")
        for url, (large, large_queries) in harness.medians(client, URLS, REPEATS).items():
            small, small_queries = floor[url]
            print(
                f"{url:48s} 20: {small * 1000:6.1f} ms ({small_queries} queries)  "
                f"2000: {large * 1000:6.1f} ms ({large_queries} queries)  ratio {large / small:.2f}"
            )


if __name__ == "__main__":
    harness.main(main)
