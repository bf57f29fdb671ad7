"""Runs of the suite in several processes (pytest-xdist, ``-p tests.parallel -n 2``): each process
gets a test database of its own from pytest-django (``test_steward_gw0``, ``test_steward_gw1``…) and,
from this plugin, Redis databases of its own, so that one process's workers never take another's
tasks and one process's cache never answers another's.

It runs when pytest loads it, before Django reads its settings, and rewrites the environment, so the
Celery workers, web servers and gateways the tests start as subprocesses inherit the same databases.
Worker ``gwN`` uses Redis database ``D + N`` for every Redis URL that names database ``D``."""

from __future__ import annotations

import os
import re

REDIS_VARIABLES = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "STEWARD_REDIS_URL")
REDIS_DATABASES = 16


def _shifted(url: str, offset: int) -> str:
    match = re.fullmatch(r"(rediss?://[^/]+)(?:/(\d+))?", url)
    if match is None:
        return url
    database = int(match.group(2) or 0) + offset
    if database >= REDIS_DATABASES:
        raise RuntimeError(
            f"{url}: a test process needs Redis database {database}, past the last one ({REDIS_DATABASES - 1}); "
            "choose a lower database in the URL or fewer processes"
        )
    return f"{match.group(1)}/{database}"


def _separate_redis_databases() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return
    offset = int(worker[2:])
    for name in REDIS_VARIABLES:
        if os.environ.get(name):
            os.environ[name] = _shifted(os.environ[name], offset)


_separate_redis_databases()
