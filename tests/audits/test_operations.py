"""docs/operations.md's database roles, tried for real: the app role's grants are run from the
document's own SQL; Steward then records events, makes checkpoints and verifies the chain as that
role, and everything that would rewrite the trail or switch its triggers off is refused."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from audits.events import record
from audits.models import AuditCheckpoint, AuditEvent
from audits.verification import verify_chain

PROJECT = Path(__file__).resolve().parents[2]
DOC = PROJECT / "docs" / "operations.md"
BLOCK = re.compile(r"<!-- sql:([a-z]+) -->\n```sql\n(.*?)\n```", re.DOTALL)


def database_url(role: str) -> str:
    db = connection.settings_dict
    return f"postgres://{role}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def app_role(transactional_db) -> Iterator[str]:
    """A login role with exactly the grants docs/operations.md gives ``steward_app``; dropped after."""
    if connection.vendor != "postgresql":
        pytest.skip("database roles are PostgreSQL's")
    role = f"steward_app_{uuid.uuid4().hex[:10]}"
    grants = dict(BLOCK.findall(DOC.read_text(encoding="utf-8")))["grants"]
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
    try:
        with connection.cursor() as cursor:
            cursor.execute(grants.replace("steward_app", role))
        yield role
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP OWNED BY {role}")
            cursor.execute(f"DROP ROLE {role}")


def manage(role: str, checkpoint_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """``manage.py`` as the app role, the way a web server or worker of Steward runs."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(role),
        "STEWARD_AUDIT_CHECKPOINT_DIR": str(checkpoint_dir),
    }
    return subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", *args], cwd=PROJECT, env=environment, capture_output=True, text=True, timeout=60
    )


@pytest.mark.django_db(transaction=True)
def test_steward_runs_as_the_app_role_which_cannot_rewrite_the_trail_or_switch_off_its_triggers(
    app_role, checkpoint_dir
):
    for i in range(3):
        record("test.step", comment=f"step {i}")
    expected = AuditEvent.objects.count() + 2  # with the app role's event and the audit key's
    made = manage(
        app_role,
        checkpoint_dir,
        "shell",
        "-c",
        "from audits.events import record; from audits.verification import make_checkpoint; "
        "record('test.as_app_role'); "
        "print('checkpoint count', make_checkpoint('as the app role').count)",
    )
    assert made.returncode == 0, made.stderr
    assert f"checkpoint count {expected}" in made.stdout
    assert AuditCheckpoint.objects.get().count == expected and (checkpoint_dir / "checkpoints.jsonl").exists()
    verified = manage(app_role, checkpoint_dir, "verify_audit_chain")
    assert verified.returncode == 0, verified.stderr
    assert f"Audit chain intact: {expected} events verified." in verified.stdout

    refused = {
        "UPDATE audits_auditevent SET comment = 'rewritten'": "permission denied for table audits_auditevent",
        "DELETE FROM audits_auditevent WHERE seq = 1": "permission denied for table audits_auditevent",
        "TRUNCATE audits_auditevent": "permission denied for table audits_auditevent",
        "DELETE FROM audits_auditcheckpoint": "permission denied for table audits_auditcheckpoint",
        "UPDATE audits_auditkey SET public_key = ''": "permission denied for table audits_auditkey",
        "DELETE FROM audits_auditchainhead": "permission denied for table audits_auditchainhead",
        "SET session_replication_role = replica": 'permission denied to set parameter "session_replication_role"',
        "ALTER TABLE audits_auditevent DISABLE TRIGGER ALL": "must be owner of table audits_auditevent",
        "DROP TRIGGER audits_auditevent_append_only ON audits_auditevent": "must be owner of",
        "CREATE FUNCTION steward_escape() RETURNS int AS 'SELECT 1' LANGUAGE sql": "permission denied for schema",
    }
    with psycopg.connect(database_url(app_role), autocommit=True) as app:
        for sql, message in refused.items():
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=re.escape(message)):
                app.execute(sql)
        # The head is the one row it may update, and the trigger lets it move forward only.
        with pytest.raises(psycopg.errors.RaiseException, match="only moves forward"):
            app.execute("UPDATE audits_auditchainhead SET last_seq = 1")
    assert AuditEvent.objects.count() == expected and verify_chain().ok
