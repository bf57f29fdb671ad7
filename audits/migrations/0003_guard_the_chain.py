"""Guard the whole chain in the database, not only its rows: TRUNCATE of the events is refused, a new
event must link to the chain head, and the head only ever moves forward one linked event at a time.

What a trigger can check, it checks: an UPDATE of the head must raise ``last_seq`` by exactly one,
to an event that exists with that seq, whose hash is the new ``last_hash`` and whose ``prev_hash``
is the old one. (Recomputing the event's hash needs the canonical JSON of its content, which only
the application computes; ``verify_audit_chain`` does that.) The head row cannot be deleted or
truncated, and it can only be created empty (row 1, #0, the genesis hash).

SQLite has no TRUNCATE (its ``DELETE FROM`` without WHERE is refused by the DELETE triggers).
A database superuser can still switch triggers off; the signed checkpoints kept outside the
database are what catches that.
"""

from django.db import migrations

GENESIS = "0" * 64

POSTGRES = f"""
CREATE OR REPLACE FUNCTION audits_refuse_truncate() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: TRUNCATE refused on %', TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audits_auditevent_no_truncate
    BEFORE TRUNCATE ON audits_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION audits_refuse_truncate();
CREATE TRIGGER audits_auditchainhead_no_truncate
    BEFORE TRUNCATE ON audits_auditchainhead
    FOR EACH STATEMENT EXECUTE FUNCTION audits_refuse_truncate();

CREATE OR REPLACE FUNCTION audits_event_links_to_head() RETURNS trigger AS $$
DECLARE
    head_seq bigint;
    head_hash varchar;
BEGIN
    SELECT last_seq, last_hash INTO head_seq, head_hash FROM audits_auditchainhead WHERE id = 1;
    head_seq := COALESCE(head_seq, 0);
    head_hash := COALESCE(head_hash, '{GENESIS}');
    IF NEW.seq <> head_seq + 1 OR NEW.prev_hash <> head_hash THEN
        RAISE EXCEPTION 'audit event #% must follow the chain head #% and link to its hash', NEW.seq, head_seq;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audits_auditevent_links_to_head
    BEFORE INSERT ON audits_auditevent
    FOR EACH ROW EXECUTE FUNCTION audits_event_links_to_head();

CREATE OR REPLACE FUNCTION audits_head_moves_forward() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'the audit chain head cannot be deleted';
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.id <> 1 OR NEW.last_seq <> 0 OR NEW.last_hash <> '{GENESIS}' THEN
            RAISE EXCEPTION 'the audit chain head is created once, empty: row 1 at #0 with the genesis hash';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.id <> OLD.id OR NEW.last_seq <> OLD.last_seq + 1 THEN
        RAISE EXCEPTION 'the audit chain head only moves forward one event at a time: #% to #% refused',
            OLD.last_seq, NEW.last_seq;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM audits_auditevent
        WHERE seq = NEW.last_seq AND hash = NEW.last_hash AND prev_hash = OLD.last_hash
    ) THEN
        RAISE EXCEPTION 'the audit chain head must point at event #%, linked to #%, with that event''s hash',
            NEW.last_seq, OLD.last_seq;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audits_auditchainhead_forward_only
    BEFORE INSERT OR UPDATE OR DELETE ON audits_auditchainhead
    FOR EACH ROW EXECUTE FUNCTION audits_head_moves_forward();
"""

POSTGRES_REVERSE = """
DROP TRIGGER IF EXISTS audits_auditchainhead_forward_only ON audits_auditchainhead;
DROP TRIGGER IF EXISTS audits_auditevent_links_to_head ON audits_auditevent;
DROP TRIGGER IF EXISTS audits_auditchainhead_no_truncate ON audits_auditchainhead;
DROP TRIGGER IF EXISTS audits_auditevent_no_truncate ON audits_auditevent;
DROP FUNCTION IF EXISTS audits_head_moves_forward();
DROP FUNCTION IF EXISTS audits_event_links_to_head();
DROP FUNCTION IF EXISTS audits_refuse_truncate();
"""

HEAD_SEQ = "COALESCE((SELECT last_seq FROM audits_auditchainhead WHERE id = 1), 0)"
HEAD_HASH = f"COALESCE((SELECT last_hash FROM audits_auditchainhead WHERE id = 1), '{GENESIS}')"

SQLITE = [
    f"""CREATE TRIGGER audits_auditevent_links_to_head BEFORE INSERT ON audits_auditevent
        WHEN NEW.seq <> {HEAD_SEQ} + 1 OR NEW.prev_hash <> {HEAD_HASH}
        BEGIN SELECT RAISE(ABORT, 'an audit event must follow the chain head and link to its hash'); END;""",
    f"""CREATE TRIGGER audits_auditchainhead_created_empty BEFORE INSERT ON audits_auditchainhead
        WHEN NEW.id <> 1 OR NEW.last_seq <> 0 OR NEW.last_hash <> '{GENESIS}'
        BEGIN SELECT RAISE(ABORT, 'the audit chain head is created once, empty: row 1 at #0 with the genesis hash');
        END;""",
    """CREATE TRIGGER audits_auditchainhead_forward_only BEFORE UPDATE ON audits_auditchainhead
        WHEN NEW.id <> OLD.id OR NEW.last_seq <> OLD.last_seq + 1 OR NOT EXISTS (
            SELECT 1 FROM audits_auditevent
            WHERE seq = NEW.last_seq AND hash = NEW.last_hash AND prev_hash = OLD.last_hash)
        BEGIN SELECT RAISE(ABORT, 'the audit chain head only moves forward one linked event at a time'); END;""",
    """CREATE TRIGGER audits_auditchainhead_no_delete BEFORE DELETE ON audits_auditchainhead
        BEGIN SELECT RAISE(ABORT, 'the audit chain head cannot be deleted'); END;""",
]

SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS audits_auditevent_links_to_head;",
    "DROP TRIGGER IF EXISTS audits_auditchainhead_created_empty;",
    "DROP TRIGGER IF EXISTS audits_auditchainhead_forward_only;",
    "DROP TRIGGER IF EXISTS audits_auditchainhead_no_delete;",
]


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE:
            schema_editor.execute(statement)
    else:
        raise RuntimeError(f"No audit chain triggers for the {vendor} database; Steward supports PostgreSQL and SQLite.")


def remove(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_REVERSE, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_REVERSE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("audits", "0002_append_only")]

    operations = [migrations.RunPython(install, remove)]
