"""Benchmark: decision ingest under gunicorn, against PostgreSQL's ``COPY`` of the same rows in the same run.

One run creates a throwaway PostgreSQL database, migrates it, runs ``seed_demo`` (the demo's policy
sets, models, classifications and matrix), registers a router and writes N demo-like decision records
(``demo.traffic.demo_records``: every production route, the demo's models, fallbacks and escalations;
content of a few hundred characters where the classification keeps content, digests elsewhere; one
record in a hundred on a model its route does not allow), dated over the past week in time order as a
router's spool sends them, so each batch covers the next stretch of it. That database is the template
of the two each measurement gets:

- **ingest**: Steward under gunicorn with production settings (DEBUG off, PostgreSQL, the Django
  cache on Redis, ``--workers 2 --worker-class sync``) on one copy; 2 client threads on keep-alive
  connections POST the records in batches (``POST /api/v1/decisions`` with the router's token),
  each thread taking the next batch when it has its answer. Records/s is N over the wall time from
  the first request to the last answer.
- **floor**: the rows ingest stored, read back from its database with ``COPY (SELECT …) TO STDOUT``
  (the decision table, and the content table where decisions keep content apart), then written
  with ``COPY … FROM STDIN`` into the other copy (``CREATE DATABASE … TEMPLATE``: the same tables,
  partitions, indexes and triggers) from 2 connections, one transaction per batch of the same size.
  That is the least any way of storing these rows in this schema can cost: no parsing, no
  validation, no judging, no idempotence key, no rollups, no violations.

and prints both in rows/s and their ratio (target: ingest >= 20,000 records/s and >= 0.5 of the
floor). Afterwards it checks that ingest stored every record exactly once (each request id once,
the rollups counting N requests, the violations the answers reported) and the floor as many rows.

    .venv/bin/python bench/ingest.py
    .venv/bin/python bench/ingest.py --records 200000 --batch 1000 --runs 3

Needs PostgreSQL on 127.0.0.1 (user postgres, trust auth) and Redis on 127.0.0.1:6379. The databases
are created and dropped by the bench (it refuses to drop one that existed before unless its name
contains "bench"); the cache keys live under a per-run prefix and are deleted at the end. Every
request goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import queue
import statistics
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import harness
from harness import BenchError

TARGET_RATE = 20_000.0
TARGET_RATIO = 0.5
DECISIONS_PATH = "/api/v1/decisions"
READY_PATH = "/login/"
CONTENT_TABLE = "audits_decisioncontent"  # where content lives when decisions keep it apart (partitioned)

SETTINGS_MODULE = '''\
"""Steward's production settings with a per-run cache key prefix."""

from steward.settings import *  # noqa: F403

CACHES["default"]["KEY_PREFIX"] = {prefix!r}  # noqa: F405
'''

# Run once with the bench settings on the template database: registers the router and writes the
# batches' bodies, one JSON document a line.
SETUP_SCRIPT = """\
import json, random, sys
from pathlib import Path

import django

django.setup()

from django.conf import settings

from demo.traffic import WEIGHTS, TaskSize, _governed_since, demo_records
from portfolio.feed import register_router
from portfolio.models import PolicyRelease, PolicySet, Task
from registry.models import ModelVersion
from steward_client import Policy
from steward_client.verify import strict_json

if settings.DEBUG or not settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
    sys.exit(f"not production settings: DEBUG={{settings.DEBUG}}, cache {{settings.CACHES['default']['BACKEND']}}")
out, count, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
release = (
    PolicyRelease.objects.filter(policy_version__policy_set__slug="production")
    .order_by("-policy_version__number")
    .first()
)
if release is None:
    sys.exit("seed_demo published no production release")
policy = Policy(strict_json(bytes(release.payload), "policy payload"))
sizes = {{
    task.slug: TaskSize(task.typical_input_tokens, task.typical_output_tokens, WEIGHTS.get(task.slug, 1))
    for task in Task.objects.all()
}}
# In time order, as a router's spool sends them: each batch covers the next stretch of the week.
records = demo_records(policy, sizes, count, since=_governed_since(), seed=29)[:count]
records.sort(key=lambda record: record["occurred_at"])
rng = random.Random(31)
words = "the customer asks about an invoice a refund their account an order shipping a contract clause".split()
refs = list(ModelVersion.objects.values_list("ref", flat=True))
for index, record in enumerate(records):
    if record["input"]:  # a classification that keeps content: a realistic prompt and answer
        record["input"] += " " + " ".join(rng.choices(words, k=rng.randint(40, 80)))
        record["output"] += " " + " ".join(rng.choices(words, k=rng.randint(20, 50)))
    if index % 100 == 50:  # a router on a model its route does not allow
        record["model"] = rng.choice([ref for ref in refs if ref != record["model"]])
ids = [record["request_id"] for record in records]
if len(set(ids)) != len(ids):
    sys.exit("the generated request ids repeat")
_, token = register_router(PolicySet.objects.get(slug="production"), "ingest-bench", by=None)
with open(out / "bodies.jsonl", "w") as bodies:
    for start in range(0, len(records), batch):
        bodies.write(json.dumps({{"records": records[start : start + batch]}}, separators=(",", ":")) + "\\n")
content = sum(1 for record in records if record["input"])
size = (out / "bodies.jsonl").stat().st_size
(out / "setup.json").write_text(json.dumps({{"token": token, "content": content, "bytes": size}}))
"""


@dataclass
class Measured:
    rate: float
    seconds: float
    rows: int


def delete_cache_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)


def url_for(database_url: str, name: str) -> str:
    return urlparse(database_url)._replace(path=f"/{name}").geturl()


def copy_database(bench: harness.Run, template: harness.Database, url: str) -> harness.Database:
    """A database made from ``template`` (same tables, partitions, indexes, rows), dropped at the end."""
    database = harness.Database(url)
    bench.callback(database.drop)
    if database.exists():
        if "bench" not in database.name:
            raise BenchError(f"database {database.name!r} exists and its name does not contain 'bench'")
        database._execute(f'DROP DATABASE "{database.name}" WITH (FORCE)')
    database._execute(f'CREATE DATABASE "{database.name}" TEMPLATE "{template.name}"')
    database.created = True
    return database


def connect(url: str):
    import psycopg

    return psycopg.connect(urlparse(url)._replace(scheme="postgresql").geturl(), connect_timeout=10)


# --- ingest: POST the batches under gunicorn ------------------------------------------------------


def post_batches(port: int, token: str, bodies: list[bytes], clients: int) -> tuple[float, list[dict]]:
    """Every body POSTed by ``clients`` threads on keep-alive connections; the seconds and the answers.

    A client opens a new connection when the server closed its last one (gunicorn's sync workers
    close after each answer)."""
    work: queue.SimpleQueue = queue.SimpleQueue()
    for index, body in enumerate(bodies):
        work.put((index, body))
    answers: list[dict | None] = [None] * len(bodies)
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def client() -> None:
        connection = http.client.HTTPConnection(harness.HOST, port, timeout=120)
        try:
            while not failures:
                try:
                    index, body = work.get_nowait()
                except queue.Empty:
                    return
                connection.request("POST", DECISIONS_PATH, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                if response.will_close:
                    connection.close()
                if response.status != 200:
                    failures.append(f"batch {index}: {response.status} {payload[:500]!r}")
                    return
                answers[index] = json.loads(payload)
        except (OSError, http.client.HTTPException) as error:
            failures.append(f"{type(error).__name__}: {error}")
        finally:
            connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(1800)
    elapsed = time.perf_counter() - started
    if failures or any(answer is None for answer in answers):
        raise BenchError(f"ingest failed: {failures[:3] or 'a client did not finish'}")
    return elapsed, answers  # type: ignore[return-value]


def measure_ingest(
    bench: harness.Run, args: argparse.Namespace, env: dict, log, token: str, bodies: list[bytes]
) -> tuple[float, list[dict], harness.CpuUse, float]:
    """The seconds ``post_batches`` took against a gunicorn of its own (stopped afterwards), its answers,
    the CPU gunicorn (and everything else) used meanwhile and the CPU seconds of its database backends."""
    port = harness.free_port()
    server = harness.gunicorn(bench, env, port, log, READY_PATH, workers=args.workers, worker_class="sync", threads=1)
    with harness.cpu_use(server.pid) as cpu, BackendWatch(env["DATABASE_URL"]) as database:
        elapsed, answers = post_batches(port, token, bodies, args.clients)
    if server.poll() is not None:
        raise BenchError(f"gunicorn died during the run:\n{harness.log_tail(log)}")
    harness.stop(server)
    return elapsed, answers, cpu, database.cpu


class BackendWatch:
    """The CPU seconds the database's backends used while the block ran: their pids read every half
    second, since a worker's connection is replaced once older than CONN_MAX_AGE (a backend's CPU is
    known only while it lives; the last half second of one that ended is lost)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: dict[int, float] = {}
        self.start: dict[int, float] = {}
        self.done = threading.Event()
        self.cpu = 0.0

    def sample(self, connection, first: bool = False) -> None:
        """Each live backend's CPU so far; those alive at the start count from then, later ones from 0."""
        pids = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        for (pid,) in pids:
            used = backends_cpu([pid])
            self.start.setdefault(pid, used if first else 0.0)
            self.seen[pid] = used

    def watch(self) -> None:
        with connect(self.url) as connection:
            connection.autocommit = True
            self.sample(connection, first=True)
            while not self.done.wait(0.5):
                self.sample(connection)
            self.sample(connection)

    def __enter__(self) -> BackendWatch:
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(30)
        self.cpu = sum(used - self.start.get(pid, 0.0) for pid, used in self.seen.items())


def backends_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) that these PostgreSQL backends used since they started (Linux /proc)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / harness.CLOCK_TICKS
    return total


def check_stored(url: str, request_ids: list[str], answers: list[dict]) -> dict[str, int]:
    """That ingest stored each record once (request ids, rollups, violations as answered); the counts."""
    accepted = sum(answer["accepted"] for answer in answers)
    rejected = sum(answer["rejected"] for answer in answers)
    duplicates = sum(answer["duplicates"] for answer in answers)
    violations = sum(answer["violations"] for answer in answers)
    if accepted != len(request_ids) or rejected or duplicates:
        raise BenchError(f"answers: {accepted} accepted, {rejected} rejected, {duplicates} duplicates")
    with connect(url) as connection:
        rows, distinct = connection.execute(
            "SELECT count(*), count(DISTINCT request_id) FROM audits_decisionrecord"
        ).fetchone()
        stored_ids = {row[0] for row in connection.execute("SELECT request_id FROM audits_decisionrecord")}
        rolled = connection.execute("SELECT coalesce(sum(requests), 0) FROM audits_decisionrollup").fetchone()[0]
        flagged = connection.execute("SELECT count(*) FROM audits_violation").fetchone()[0]
        with_violation = connection.execute(
            "SELECT count(*) FROM audits_decisionrecord WHERE has_violation"
        ).fetchone()[0]
        content = 0
        if table_exists(connection, CONTENT_TABLE):
            content = connection.execute(f"SELECT count(*) FROM {CONTENT_TABLE}").fetchone()[0]
    if rows != len(request_ids) or distinct != rows or stored_ids != set(request_ids):
        raise BenchError(f"stored {rows} decision rows ({distinct} request ids) for {len(request_ids)} records")
    if rolled != rows:
        raise BenchError(f"the rollups count {rolled} requests for {rows} stored records")
    if flagged != violations or (violations == 0) != (with_violation == 0):
        raise BenchError(f"{flagged} violations stored, {violations} answered ({with_violation} records flagged)")
    return {"rows": rows, "violations": flagged, "flagged": with_violation, "content_rows": content}


def table_exists(connection, name: str) -> bool:
    return connection.execute("SELECT to_regclass(%s) IS NOT NULL", [name]).fetchone()[0]


# --- the floor: COPY of the same rows -------------------------------------------------------------


def stored_rows(url: str, batch: int) -> tuple[list[str], list[list[tuple[str, bytes]]]]:
    """The rows ingest stored (every column), in COPY's text format, in batches of ``batch`` decisions:
    the tables written, and per batch each table's rows. Content rows go with their decision's batch."""
    with connect(url) as connection:
        tables = ["audits_decisionrecord"]
        if table_exists(connection, CONTENT_TABLE):
            tables.append(CONTENT_TABLE)
        ids = [row[0] for row in connection.execute("SELECT id FROM audits_decisionrecord ORDER BY id")]
        bounds = [ids[start] for start in range(batch, len(ids), batch)]  # the first id of each later batch
        batches: list[list[tuple[str, bytes]]] = [[] for _ in range(len(bounds) + 1)]
        for table in tables:
            key = "id" if table == "audits_decisionrecord" else "decision_id"
            position = column_index(connection, table, key)
            with connection.cursor().copy(f"COPY (SELECT * FROM {table} ORDER BY {key}) TO STDOUT") as copy:
                lines = b"".join(bytes(data) for data in copy).split(b"\n")[:-1]  # text format: one row a line
            grouped: list[list[bytes]] = [[] for _ in batches]
            number = 0
            for line in lines:
                row_key = int(line.split(b"\t")[position])
                while number < len(bounds) and row_key >= bounds[number]:
                    number += 1
                grouped[number].append(line)
            for rows, lines_of_batch in zip(batches, grouped, strict=True):
                rows.append((table, b"".join(line + b"\n" for line in lines_of_batch)))
    return tables, batches


def column_index(connection, table: str, column: str) -> int:
    """Where ``column`` stands among the table's columns (as ``SELECT *`` lists them)."""
    names = [
        row[0]
        for row in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
            [table],
        )
    ]
    if column not in names:
        raise BenchError(f"{table} has no column {column}: the bench cannot tell its rows' batches")
    return names.index(column)


def copy_batches(url: str, batches: list[list[tuple[str, bytes]]], connections: int) -> tuple[float, float]:
    """Each batch's rows written with COPY FROM STDIN in a transaction of its own, from ``connections``
    connections taking the next batch in turn; the seconds from the first to the last commit, and the
    CPU seconds their backends used."""
    work: queue.SimpleQueue = queue.SimpleQueue()
    for batch in batches:
        work.put(batch)
    failures: list[str] = []
    opened = [connect(url) for _ in range(connections)]
    pids = [connection.execute("SELECT pg_backend_pid()").fetchone()[0] for connection in opened]
    for connection in opened:
        connection.commit()
    before = backends_cpu(pids)

    def writer(connection) -> None:
        try:
            while not failures:
                try:
                    batch = work.get_nowait()
                except queue.Empty:
                    return
                with connection.transaction():
                    cursor = connection.cursor()
                    for table, rows in batch:
                        if rows:
                            with cursor.copy(f"COPY {table} FROM STDIN") as copy:
                                copy.write(rows)
        except Exception as error:  # noqa: BLE001 - reported as the bench's failure
            failures.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=writer, args=(connection,), daemon=True) for connection in opened]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(1800)
    elapsed = time.perf_counter() - started
    database_cpu = backends_cpu(pids) - before
    for connection in opened:
        connection.close()
    if failures:
        raise BenchError(f"the COPY floor failed: {failures[0]}")
    return elapsed, database_cpu


def check_copied(url: str, tables: list[str], expected: dict[str, int]) -> None:
    with connect(url) as connection:
        for table in tables:
            count = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if count != expected[table]:
                raise BenchError(f"the floor stored {count} rows in {table}, expected {expected[table]}")


# --- the run ------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/steward_ingest_bench",
        help="throwaway PostgreSQL database (the template): created, migrated, seeded and dropped by the bench; "
        "each run's two copies are named after it",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8", help="Redis for the Django cache")
    parser.add_argument("--records", type=int, default=200_000, help="decision records per run (default 200,000)")
    parser.add_argument("--batch", type=int, default=1000, help="records per POST and per COPY transaction")
    parser.add_argument("--runs", type=int, default=1, help="measurements, each on fresh copies (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2: one per core)")
    parser.add_argument("--clients", type=int, default=2, help="client threads and COPY connections (default 2)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (gunicorn's log)")
    args = parser.parse_args()
    if not 1 <= args.records <= 5_000_000:
        parser.error("--records must be 1..5,000,000")
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be 1..1000 (what one POST may carry)")
    if not 1 <= args.runs <= 10 or not 1 <= args.workers <= 32 or not 1 <= args.clients <= 32:
        parser.error("--runs must be 1..10, --workers and --clients 1..32")
    return args


def run() -> int:
    args = parse_args()
    with harness.Run() as bench:
        tmp = bench.directory("ingestbench-", keep=args.keep_tmp)
        prefix = f"ingestbench-{uuid.uuid4().hex[:12]}"
        bench.callback(delete_cache_keys, args.redis_url, prefix)
        (tmp / "ingestbench_settings.py").write_text(SETTINGS_MODULE.format(prefix=prefix))
        (tmp / "ingestbench_setup.py").write_text(SETUP_SCRIPT.format())
        env = harness.environment(
            tmp,
            "ingestbench_settings",
            DATABASE_URL=args.database_url,
            CELERY_BROKER_URL=args.redis_url,
            STEWARD_REDIS_URL=args.redis_url,
        )
        started = time.monotonic()
        template = bench.database(args.database_url)
        harness.python(env, "manage.py", "migrate", "--noinput")
        harness.python(env, "manage.py", "seed_demo")
        harness.python(env, str(tmp / "ingestbench_setup.py"), str(tmp), str(args.records), str(args.batch))
        setup = json.loads((tmp / "setup.json").read_text())
        bodies = (tmp / "bodies.jsonl").read_bytes().splitlines()
        request_ids = [record["request_id"] for body in bodies for record in json.loads(body)["records"]]
        print(
            f"database {template.name}: migrated, seeded; {len(request_ids)} records in {len(bodies)} batches of "
            f"{args.batch} ({setup['bytes'] / len(request_ids):.0f} bytes a record in JSON, {setup['content']} "
            f"with content) ({time.monotonic() - started:.0f} s)"
        )
        print(
            f"ingest: gunicorn --workers {args.workers} --worker-class sync, DEBUG off, PostgreSQL, Redis cache; "
            f"{args.clients} client threads POST {DECISIONS_PATH} ({os.cpu_count()} cores)"
        )
        print(
            f"floor: the rows ingest stored, COPY ... FROM STDIN into a copy of the same schema, "
            f"{args.clients} connections, one transaction per {args.batch} decisions\n"
        )
        results: list[tuple[Measured, Measured]] = []
        for number in range(1, args.runs + 1):
            ingest_db = copy_database(bench, template, url_for(args.database_url, f"{template.name}_in{number}"))
            floor_db = copy_database(bench, template, url_for(args.database_url, f"{template.name}_copy{number}"))
            ingest_url = url_for(args.database_url, ingest_db.name)
            floor_url = url_for(args.database_url, floor_db.name)
            log = tmp / f"gunicorn-{number}.log"
            elapsed, answers, cpu, ingest_db_cpu = measure_ingest(
                bench, args, {**env, "DATABASE_URL": ingest_url}, log, setup["token"], bodies
            )
            counts = check_stored(ingest_url, request_ids, answers)
            ingest = Measured(len(request_ids) / elapsed, elapsed, len(request_ids))
            tables, batches = stored_rows(ingest_url, args.batch)
            expected = {
                table: sum(rows.count(b"\n") for batch in batches for name, rows in batch if name == table)
                for table in tables
            }
            copy_seconds, floor_db_cpu = copy_batches(floor_url, batches, args.clients)
            check_copied(floor_url, tables, expected)
            floor = Measured(len(request_ids) / copy_seconds, copy_seconds, len(request_ids))
            results.append((ingest, floor))
            ingest_db.drop()
            floor_db.drop()
            per_record = 1e6 / len(request_ids)
            print(
                f"run {number}: ingest {ingest.rate:8,.0f} records/s ({elapsed:6.2f} s)   COPY floor "
                f"{floor.rate:8,.0f} rows/s ({copy_seconds:6.2f} s into {', '.join(tables)})   "
                f"ratio {ingest.rate / floor.rate:.2f}",
                flush=True,
            )
            print(
                f"       CPU a record: ingest gunicorn {cpu.server * per_record:.0f} us + PostgreSQL "
                f"{ingest_db_cpu * per_record:.0f} us; floor PostgreSQL {floor_db_cpu * per_record:.0f} us; "
                f"other processes took {max(0.0, cpu.other - ingest_db_cpu) / (elapsed * (os.cpu_count() or 1)):.0%} "
                "of the machine during ingest",
                flush=True,
            )
            if ingest_db_cpu > 0 and floor_db_cpu > 0:
                # Both keep the cores busy, so the ratio is about the floor's CPU a record over ingest's:
                # ingest's PostgreSQL alone, with no Python at all, would bound it at about this.
                print(
                    f"       ingest's PostgreSQL alone costs {ingest_db_cpu / floor_db_cpu:.1f}x the floor's a record: "
                    f"with no Python at all the ratio would be about {floor_db_cpu / ingest_db_cpu:.2f} at most",
                    flush=True,
                )
            print(
                f"       verified: {counts['rows']} records stored once, rollups count them all, "
                f"{counts['violations']} violations on {counts['flagged']} records as answered"
                + (f", {counts['content_rows']} content rows" if CONTENT_TABLE in tables else "")
                + f"; the floor stored {', '.join(f'{expected[t]} rows in {t}' for t in tables)}",
                flush=True,
            )
        rates = [ingest.rate for ingest, _ in results]
        ratios = [ingest.rate / floor.rate for ingest, floor in results]
        rate, ratio = statistics.median(rates), statistics.median(ratios)

        def mark(ok: bool) -> str:
            return "OK  " if ok else "MISS"

        print(f"\n=== ingest of {len(request_ids)} records in batches of {args.batch}, {len(results)} run(s) ===")
        print(
            f"[{mark(rate >= TARGET_RATE)}] ingest {rate:,.0f} records/s, median of the runs "
            f"(target >= {TARGET_RATE:,.0f}; runs {', '.join(f'{r:,.0f}' for r in rates)})"
        )
        print(
            f"[{mark(ratio >= TARGET_RATIO)}] ingest / COPY floor {ratio:.2f}, median of the runs "
            f"(target >= {TARGET_RATIO:.2f}; runs {', '.join(f'{r:.2f}' for r in ratios)})"
        )
        ok = rate >= TARGET_RATE and ratio >= TARGET_RATIO
        print(f"\n{'ALL TARGETS MET' if ok else 'SOME TARGETS MISSED'} ({time.monotonic() - started:.0f} s)")
        return 0 if ok else 1


if __name__ == "__main__":
    harness.main(run)
