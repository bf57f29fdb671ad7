"""Shared fixtures: the named users of every role (alice and carol the officers, bob the engineer,
dave the auditor), clients signed in as them, and a little registry data; and the two things the
harness does around the audit trail's guards (emptying the database past its triggers, and a
checkpoint log of each test's own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.db.backends.postgresql.operations import DatabaseOperations
from django.test import Client, override_settings

from steward.roles import AUDITORS, ENGINEERS, OFFICERS

from .factories import make_model, make_provider, make_version


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # Signing in is not what the suite measures; a slow hasher only costs time per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # seed_demo's demo evaluation runs take seconds; the tests that are about them turn them back on.
    settings.STEWARD_SEED_EVALUATION_RUNS = False


@pytest.fixture(autouse=True)
def _no_last_seen_across_tests() -> Iterator[None]:
    """The feed's thread writes the "last seen" times that polls left in memory; a later test's
    routers reuse the primary keys, so what one test's polls left is not written into another's."""
    yield
    from portfolio import feed

    with feed._lock:
        feed._seen.clear()


REPLICA = "SET LOCAL session_replication_role = replica"
# With triggers off, the judging epoch does not move with what is written (audits migration 0012):
# moved on by hand, so that no book kept by ingest outlives the rows it read.
EPOCH_ONWARD = (
    "DO $$ BEGIN IF to_regclass('audits_judgingepoch') IS NOT NULL THEN"
    " UPDATE audits_judgingepoch SET value = nextval('audits_judging_epoch_seq'); END IF; END $$"
)


@pytest.fixture(scope="session", autouse=True)
def _flush_past_the_audit_triggers() -> Iterator[None]:
    """pytest-django empties the database after each transactional test with Django's flush, one
    ``TRUNCATE`` of every table, which the audit trail's triggers refuse (as they must in
    production). The flush's own transaction runs with triggers off (``SET LOCAL
    session_replication_role = replica``, as the test database's superuser); every test itself runs
    with the triggers on."""
    original = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list: list[str]) -> None:
        original(self, [REPLICA, *sql_list, EPOCH_ONWARD] if sql_list else sql_list)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "execute_sql_flush", execute_sql_flush)
        yield


@pytest.fixture(autouse=True)
def _an_empty_audit_trail_for_each_test(request) -> None:
    """A test in a transaction starts with an empty audit trail, whatever ran before it in this process.

    The test database may hold events no test made: the migrations' own (the certification
    catalogue is recorded as it is created), until a transactional test's flush empties it; and with
    several processes (``-n 2``) a plain test may follow a transactional one whose servers and
    workers were still recording after its flush. They are cleared inside the test's own
    transaction, so they come back when it rolls back and nothing outside the test changes."""
    marker = request.node.get_closest_marker("django_db")
    names = request.fixturenames
    if marker is None and "db" not in names:
        return
    if (marker is not None and marker.kwargs.get("transaction")) or {"transactional_db", "live_server"} & set(names):
        return
    request.getfixturevalue("db")
    from django.db import connection

    if connection.vendor != "postgresql":
        return

    from audits.events import GENESIS
    from audits.models import AuditEvent

    if not AuditEvent.objects.exists():
        return
    with connection.cursor() as cursor:
        cursor.execute(REPLICA)
        cursor.execute("DELETE FROM audits_auditverification")
        cursor.execute("DELETE FROM audits_auditcheckpoint")
        cursor.execute("DELETE FROM audits_auditevent")
        cursor.execute("UPDATE audits_auditchainhead SET last_seq = 0, last_hash = %s", [GENESIS])
        cursor.execute("SET LOCAL session_replication_role = origin")


@pytest.fixture(scope="session", autouse=True)
def _static_files_served_as_in_production() -> Iterator[None]:
    """pytest-django's live server answers /static/ itself, from the source directories, where the
    fingerprinted names of ``collectstatic`` do not exist; it leaves them to WhiteNoise here, as
    Steward serves them in production (steward/storage.py)."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StaticFilesHandler, "_should_handle", lambda self, path: False)
        yield


@pytest.fixture(scope="session", autouse=True)
def _session_checkpoint_log(tmp_path_factory) -> Iterator[None]:
    """Checkpoints made by module- and package-scoped fixtures (seed_demo) go to a directory of the
    test run, never into the project's var/."""
    with override_settings(STEWARD_AUDIT_CHECKPOINT_DIR=str(tmp_path_factory.mktemp("audit-checkpoints"))):
        yield


@pytest.fixture(autouse=True)
def checkpoint_dir(settings, tmp_path) -> Path:
    """Each test its own checkpoint log: the database is emptied between tests, the log must be too."""
    directory = tmp_path / "audit-checkpoints"
    settings.STEWARD_AUDIT_CHECKPOINT_DIR = str(directory)
    return directory


def _user(username: str, *roles: str, **extra) -> User:
    user = User.objects.create_user(username, f"{username}@example.org", "correct-horse-battery", **extra)
    for role in roles:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def alice(db) -> User:
    return _user("alice", OFFICERS)


@pytest.fixture
def carol(db) -> User:
    return _user("carol", OFFICERS)


@pytest.fixture
def bob(db) -> User:
    return _user("bob", ENGINEERS)


@pytest.fixture
def dave(db) -> User:
    return _user("dave", AUDITORS)


@pytest.fixture
def erin(db) -> User:
    """Signed in, but with no role at all."""
    return _user("erin")


@pytest.fixture
def admin_user(db) -> User:
    return _user("root", is_superuser=True, is_staff=True)


@pytest.fixture
def client_for():
    """``client_for(user)`` → a test client signed in as ``user``."""

    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def mistral_large(db):
    provider = make_provider(name="Mistral AI", slug="mistral", regions=["eu-west-1"])
    return make_model(provider=provider, name="Mistral Large", slug="mistral-large", family="mistral")


@pytest.fixture
def proposed_version(bob, mistral_large):
    """A version bob proposed, awaiting an officer."""
    return make_version(bob, model=mistral_large, version="2411", cost_tier="large")
