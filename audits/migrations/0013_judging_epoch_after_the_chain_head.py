"""The judging epoch's trigger takes the audit chain head's lock before the epoch's.

Governance writes are audited in the same transaction: a writer takes the chain head's row lock
(``audits.events.record``) and, with migration 0012, the epoch's. A transaction that writes a judged
table before its audit event takes the epoch first; one that records an event before it writes one
(approving a change request and publishing it) takes the chain head first: two of them at once could
each wait for the other's. Taking the chain head's lock first, in the trigger, puts the two locks in
one order for every writer; it waits no longer than the audit event it records anyway.
"""

from django.db import migrations

TAKES_THE_HEAD_FIRST = """
CREATE OR REPLACE FUNCTION audits_judging_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  PERFORM 1 FROM audits_auditchainhead WHERE id = 1 FOR UPDATE;
  UPDATE audits_judgingepoch SET value = nextval('audits_judging_epoch_seq') WHERE id = 1;
  RETURN NULL;
END $$
"""

AS_IN_0012 = """
CREATE OR REPLACE FUNCTION audits_judging_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  UPDATE audits_judgingepoch SET value = nextval('audits_judging_epoch_seq') WHERE id = 1;
  RETURN NULL;
END $$
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TAKES_THE_HEAD_FIRST)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(AS_IN_0012)


class Migration(migrations.Migration):
    dependencies = [("audits", "0012_judging_epoch")]

    operations = [migrations.RunPython(forward, backward)]
