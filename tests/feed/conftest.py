"""The policy feed, end to end: the demo served by a live server, real router tokens,
``steward_client.PolicyClient`` talking real HTTP, and a small tampering proxy on 127.0.0.1.

``seed_demo`` costs 2.5–4.5 s here (measured: it prints the time once per run), so seeding before
each test would cost minutes. It runs once; the rows it leaves are copied out of PostgreSQL
(``COPY … TO STDOUT``) and put back before each test (``DELETE`` + ``COPY … FROM STDIN`` + the
sequences' values), which takes a fraction of a second.

The live server's request threads have database connections of their own, so the rows they read
must be committed: the tests run in autocommit, as transactional tests do. pytest-django's own
``transactional_db`` flushes after each test (``TRUNCATE`` of every table, then the post-migrate
signal), which costs more than most of these tests; this package overrides it with one that puts
the demo back before each test, and restores what it found once its last test is done.

portfolio/feed.py keeps tokens, releases and "last seen" in process memory and in Django's cache;
both are cleared around every test, since the restored database reuses primary keys and slugs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings

from portfolio import feed
from portfolio.models import PolicySet, Router
from steward import degraded
from steward_client import PolicyClient

from ..conftest import EPOCH_ONWARD

FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- the database: seed once, restore before each test -----------------------------------------


@dataclass
class Snapshot:
    tables: list[str]
    guarded: list[str]  # tables whose triggers refuse DELETE (the append-only audit trail)
    rows: dict[str, bytes]
    sequences: list[tuple[str, int | None]]


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _take_snapshot() -> Snapshot:
    tables = sorted(connection.introspection.django_table_names(only_existing=True, include_views=False))
    rows = {}
    with connection.cursor() as cursor:
        for table in tables:
            buffer = io.BytesIO()
            # The SELECT form: a partitioned table (the decision records) has no rows of its own to copy.
            with cursor.cursor.copy(f"COPY (SELECT * FROM {_quote(table)}) TO STDOUT") as copy:
                for chunk in copy:
                    buffer.write(chunk)
            rows[table] = buffer.getvalue()
        cursor.execute(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value "
            "FROM pg_sequences WHERE schemaname = current_schema()"
            # Never set back: a judging epoch handed out twice could match a book kept from before.
            " AND sequencename <> 'audits_judging_epoch_seq'"
        )
        sequences = list(cursor.fetchall())
        cursor.execute(
            "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace"
            " AND t.tgname <> 'audits_judging_changed'"  # it refuses nothing: moves the judging epoch on
        )
        guarded = sorted(name for (name,) in cursor.fetchall() if name in rows)
    return Snapshot(tables, guarded, rows, sequences)


def _restore(snapshot: Snapshot) -> None:
    """Put every table back as it was.

    DELETE rather than TRUNCATE, which is many times slower on small tables, except where a trigger
    refuses DELETE (the append-only audit trail): those are truncated. The audit trail refuses
    TRUNCATE too, so this transaction runs with triggers off (the test database's superuser may).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        if snapshot.guarded:
            cursor.execute(f"TRUNCATE {', '.join(_quote(t) for t in snapshot.guarded)} CASCADE")
        for table in snapshot.tables:
            if table not in snapshot.guarded:
                cursor.execute(f"DELETE FROM {_quote(table)}")
        for table, data in snapshot.rows.items():
            if data:
                with cursor.cursor.copy(f"COPY {_quote(table)} FROM STDIN") as copy:
                    copy.write(data)
        cursor.execute(EPOCH_ONWARD)
        for sequence, last_value in snapshot.sequences:
            if last_value is None:
                cursor.execute("SELECT setval(%s, 1, false)", [sequence])
            else:
                cursor.execute("SELECT setval(%s, %s, true)", [sequence, last_value])
    ContentType.objects.clear_cache()


@pytest.fixture(scope="package")
def demo_snapshot(django_db_setup, django_db_blocker) -> Iterator[Snapshot]:
    """The database right after ``seed_demo`` (production v1 and staging v1 published and signed)."""
    with django_db_blocker.unblock(), override_settings(PASSWORD_HASHERS=FAST_HASHERS):
        before = _take_snapshot()
        started = time.perf_counter()
        call_command("seed_demo", "--no-evaluations", stdout=io.StringIO(), stderr=io.StringIO())
        seeded = time.perf_counter() - started
        snapshot = _take_snapshot()
    print(f"\nseed_demo took {seeded:.2f}s; its rows are restored before each feed test instead")  # noqa: T201
    yield snapshot
    with django_db_blocker.unblock():
        _restore(before)  # leave the test database as this package found it


def _forget_feed_memory() -> None:
    with feed._lock:
        feed._tokens.clear()
        feed._releases.clear()
        feed._seen.clear()
    feed._last_flush = time.monotonic()
    feed._cache_down_since = None
    feed._pending_deletes.clear()
    degraded.forget()
    cache.clear()


@pytest.fixture(autouse=True)
def _feed_memory() -> Iterator[None]:
    """No test sees another's cached tokens, releases or "last seen" times."""
    _forget_feed_memory()
    yield
    _forget_feed_memory()


@pytest.fixture
def transactional_db(demo_snapshot: Snapshot, django_db_blocker) -> Iterator[None]:
    """Overrides pytest-django's for this package: committed rows, the demo restored before each test."""
    with django_db_blocker.unblock():
        _restore(demo_snapshot)
        _forget_feed_memory()
        yield


@pytest.fixture
def demo(transactional_db, live_server) -> None:
    """The freshly seeded demo behind pytest-django's live server, with the feed's caches empty."""


@pytest.fixture
def live_url(demo, live_server) -> str:
    return live_server.url


@pytest.fixture
def production(demo) -> PolicySet:
    return PolicySet.objects.get(slug="production")


@pytest.fixture
def staging(demo) -> PolicySet:
    return PolicySet.objects.get(slug="staging")


@pytest.fixture
def production_router(production) -> tuple[Router, str]:
    """A router registered for production and its raw token."""
    return feed.register_router(production, "edge-eu-1", by=None)


@pytest.fixture
def staging_router(staging) -> tuple[Router, str]:
    return feed.register_router(staging, "edge-staging-1", by=None)


@pytest.fixture
def production_token(production_router) -> str:
    return production_router[1]


@pytest.fixture
def staging_token(staging_router) -> str:
    return staging_router[1]


# --- HTTP ---------------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def http(method: str, url: str, headers: dict | None = None, body: bytes | None = None) -> Response:
    """One plain HTTP request; error statuses are answers, not exceptions."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - 127.0.0.1 in tests
            return Response(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def root_bytes(live_url) -> bytes:
    """The trust root as a router ships it: what GET /api/v1/trust/root.json serves now (v1)."""
    response = http("GET", f"{live_url}/api/v1/trust/root.json")
    assert response.status == 200, response.body
    return response.body


class Clock:
    """A settable clock for PolicyClient(clock=…): the real time shifted by ``offset``."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)
        self.fixed: dt.datetime | None = None

    def __call__(self) -> dt.datetime:
        return self.fixed if self.fixed is not None else dt.datetime.now(dt.UTC) + self.offset


@pytest.fixture
def client_factory(live_url, production_token, root_bytes, tmp_path) -> Callable[..., PolicyClient]:
    """``client_factory(state="state", url=…, policy_set=…, token=…, trust_root=…, **PolicyClient options)``."""

    def make(
        state: str = "state",
        *,
        url: str | None = None,
        policy_set: str = "production",
        token: str | None = None,
        trust_root: bytes | None = None,
        **options,
    ) -> PolicyClient:
        options.setdefault("timeout", 5.0)
        return PolicyClient(
            url or live_url,
            policy_set,
            token or production_token,
            trust_root or root_bytes,
            tmp_path / state,
            **options,
        )

    return make


# --- a tampering proxy --------------------------------------------------------------------------

RELAYED = ("content-type", "etag", "x-policy-version", "x-trust-version", "cache-control", "www-authenticate")
Override = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Tamper:
    """An HTTP server on 127.0.0.1 that relays to the live server, or answers what a test says.

    ``bundle``: a function of the real bundle's bytes (fetched without If-None-Match) returning the
    bytes to serve instead, with an ETag that matches them: a man in the middle who does it well.
    ``overrides``: path → a function writing the whole response itself (for broken answers).
    """

    upstream: str
    bundle: Callable[[bytes], bytes] | None = None
    overrides: dict[str, Override] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Tamper:
        tamper = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                tamper._handle(self)

            def do_POST(self) -> None:  # noqa: N802
                tamper._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path
        self.requests.append((handler.command, path))
        try:
            if path in self.overrides:
                self.overrides[path](handler)
                return
            length = int(handler.headers.get("Content-Length") or 0)
            body = handler.rfile.read(length) if length else None
            headers = {
                name: handler.headers[name]
                for name in ("Authorization", "If-None-Match", "Content-Type", "Accept")
                if handler.headers.get(name)
            }
            rewrite = self.bundle if path.endswith("/bundle") else None
            if rewrite is not None:
                headers.pop("If-None-Match", None)
            answer = http(handler.command, self.upstream + path, headers, body)
            served = answer.body
            if rewrite is not None and answer.status == 200:
                served = rewrite(answer.body)
                answer.headers["etag"] = f'"{hashlib.sha256(served).hexdigest()}"'
            handler.send_response(answer.status)
            for name in RELAYED:
                if name in answer.headers:
                    handler.send_header(name, answer.headers[name])
            handler.send_header("Content-Length", str(len(served)))
            handler.end_headers()
            handler.wfile.write(served)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading (the size cap): that is the point


@pytest.fixture
def tamper(live_url) -> Iterator[Tamper]:
    proxy = Tamper(live_url).start()
    yield proxy
    proxy.stop()


def state_files(path: Path) -> dict[str, bytes | None]:
    """The bytes of a client's persisted envelope and ETag (None when absent)."""
    return {name: (path / name).read_bytes() if (path / name).exists() else None for name in ("envelope.json", "etag")}
