"""Benchmark: the registry list costs the same at 20 and at 2,000 model versions.

Prints the median time of a page at each size and their ratio; the floor is the 20-version
figure measured in the same run. A ratio near 1 means paging and constant queries hold.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/steward .venv/bin/python bench/registry_list.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "steward.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

from steward.roles import ENGINEERS  # noqa: E402
from tests.factories import make_versions  # noqa: E402

URLS = ["/registry/", "/registry/?status=approved&sort=-input_price", "/api/v1/model-versions"]
REPEATS = 30


def median_seconds(client: Client, url: str) -> tuple[float, int]:
    timings = []
    for _ in range(REPEATS):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
    return statistics.median(timings), len(queries)


def main() -> None:
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        bob = User.objects.create_user("bench-bob", password="x")
        bob.groups.add(Group.objects.get(name=ENGINEERS))
        client = Client()
        client.force_login(bob)
        make_versions(20, bob)
        floor = {url: median_seconds(client, url) for url in URLS}
        for _ in range(9):
            make_versions(220, bob)
        print(f"versions: 20 → {User.objects.get(pk=bob.pk).proposed_versions.count()}")
        for url in URLS:
            small, small_queries = floor[url]
            large, large_queries = median_seconds(client, url)
            print(
                f"{url:48s} 20: {small * 1000:6.1f} ms ({small_queries} queries)  "
                f"2000: {large * 1000:6.1f} ms ({large_queries} queries)  ratio {large / small:.2f}"
            )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
