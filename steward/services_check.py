"""Check that PostgreSQL and Redis answer before the test suite starts, and say how to start them.

Run as ``python -m steward.services_check`` with DATABASE_URL and CELERY_BROKER_URL set.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse

HOW_TO_START = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": (
        'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
        "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
    ),
}


def check_postgres(url: str) -> str | None:
    import psycopg

    parsed = urlparse(url)
    try:
        # Connect to the maintenance database: the test database is created by the suite.
        with psycopg.connect(
            host=parsed.hostname,
            port=parsed.port or 5432,
            user=parsed.username,
            password=parsed.password,
            dbname="postgres",
            connect_timeout=5,
        ) as connection:
            connection.execute("SELECT 1")
    except Exception as error:  # noqa: BLE001
        return str(error).strip()
    return None


def check_redis(url: str) -> str | None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=5).ping()
    except Exception as error:  # noqa: BLE001
        return str(error).strip()
    return None


def main() -> int:
    failures = []
    database_url = os.environ.get("DATABASE_URL", "")
    broker_url = os.environ.get("CELERY_BROKER_URL", "")
    if not database_url.startswith("postgres"):
        failures.append(("PostgreSQL", "DATABASE_URL must be a postgres:// URL for the test suite"))
    elif error := check_postgres(database_url):
        failures.append(("PostgreSQL", error))
    if not broker_url.startswith("redis"):
        failures.append(("Redis", "CELERY_BROKER_URL must be a redis:// URL for the test suite"))
    elif error := check_redis(broker_url):
        failures.append(("Redis", error))
    for service, error in failures:
        print(f"{service} does not answer: {error}", file=sys.stderr)
        print(f"  start it with: {HOW_TO_START[service]}", file=sys.stderr)
    if not failures:
        print("PostgreSQL and Redis answer.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
