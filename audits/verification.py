"""Checking that nobody rewrote the audit trail, and the signed checkpoints that anchor it.

``make_checkpoint`` signs the chain's count and head hash (``audits.checkpoints``); ``verify_chain``
walks the whole chain and holds it against every checkpoint, from the database and from the log
outside it; ``verify_recent`` walks only what came after the last verified checkpoint.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from . import checkpoints
from .checkpoints import Checkpoint, Statement
from .events import GENESIS, event_hash, record
from .models import AuditChainHead, AuditCheckpoint, AuditEvent, AuditVerification, VerificationKind

logger = logging.getLogger(__name__)


# --- checkpoints ----------------------------------------------------------------------------------


def make_checkpoint(reason: str, now: dt.datetime | None = None) -> AuditCheckpoint:
    """Sign the chain's current count and head hash, append the checkpoint to the log outside the
    database (fsynced), and store it.

    The chain head stays locked meanwhile, so the count and hash are those of a committed chain and
    no event slips in between. The log is written before the database commits: if the log cannot be
    written there is no checkpoint (CheckpointLogError), and the log is never behind the table.
    """
    now = now or timezone.now()
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
        key, created = checkpoints.audit_key()
        if created:
            record("audit_key.create", obj=key, object_repr=str(key), after={"keyid": key.keyid})
            head.refresh_from_db()
        number = (AuditCheckpoint.objects.aggregate(Max("number"))["number__max"] or 0) + 1
        statement = Statement(number, head.last_seq, head.last_hash, checkpoints.statement_time(now))
        envelope = checkpoints.sign(statement, key)
        checkpoint = AuditCheckpoint.objects.create(
            number=number,
            count=statement.count,
            head=statement.head,
            made_at=now.replace(microsecond=0),
            keyid=key.keyid,
            envelope=envelope,
            reason=reason[:200],
        )
        checkpoints.append_to_log(envelope, key.public_key)
    return checkpoint


# --- verification ---------------------------------------------------------------------------------


@dataclass
class Finding:
    seq: int | None  # the first event it concerns (None: a checkpoint that cannot be trusted)
    reason: str
    proof: str = ""  # the checkpoint that proves it, by name

    def order(self) -> tuple:
        return (self.seq if self.seq is not None else float("inf"), not self.proof)


@dataclass
class ChainReport:
    """What a verification found. ``reason`` and ``proof`` are the first finding's; ``findings``
    holds every one of them, ``notes`` what is worth knowing but proves nothing."""

    ok: bool
    checked: int  # events walked (and found linked) by this verification
    broken_seq: int | None = None
    reason: str = ""
    proof: str = ""
    from_seq: int = 1
    through_seq: int = 0  # verified up to this event
    through_hash: str = GENESIS
    checkpoints_checked: int = 0
    newest_checkpoint: Checkpoint | None = None  # the newest checkpoint the chain matched
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _head() -> tuple[int, str]:
    head = AuditChainHead.objects.filter(pk=1).first()
    return (head.last_seq, head.last_hash) if head is not None else (0, GENESIS)


def _walk(anchor: Checkpoint | None, loaded: checkpoints.Checkpoints, batch: int) -> ChainReport:
    """Walk the events after ``anchor`` (a verified checkpoint; None: from the first event) and hold
    them, the head and every loaded checkpoint against each other.

    The checkpoints were loaded before the walk began, so none counts events the walk cannot see.
    """
    findings = [Finding(None, f"{c.name()} cannot be trusted: {c.problem}", c.name()) for c in loaded.untrusted]
    start = anchor.statement.count if anchor else 0
    prev_hash = anchor.statement.head if anchor else GENESIS
    matched: list[Checkpoint] = [anchor] if anchor else []
    compared = 0

    def compare(checkpoint: Checkpoint, actual: str | None, chain_end: int | None) -> None:
        nonlocal compared
        compared += 1
        count, signed = checkpoint.statement.count, checkpoint.statement.head
        if actual == signed:
            matched.append(checkpoint)
            return
        if actual is None:
            findings.append(
                Finding(
                    chain_end + 1,
                    f"the chain ends at #{chain_end}, but {checkpoint.name()} counted {count} events: "
                    f"events #{chain_end + 1}–#{count} were removed",
                    checkpoint.name(),
                )
            )
            return
        vouched = [c for c in matched if c.statement.count < count]
        good = max(vouched, key=lambda c: c.statement.count) if vouched else None
        first = good.statement.count + 1 if good else 1
        since = f" ({good.name()} still vouches for the chain up to #{first - 1})" if good else ""
        findings.append(
            Finding(
                first,
                f"event #{count} has hash {actual[:16]}…, but {checkpoint.name()} signed {signed[:16]}…: "
                f"events #{first}–#{count} were rewritten after it was signed{since}",
                checkpoint.name(),
            )
        )

    pending: dict[int, list[Checkpoint]] = defaultdict(list)
    earlier = []
    for checkpoint in loaded.trusted:
        (pending[checkpoint.statement.count] if checkpoint.statement.count >= start else earlier).append(checkpoint)
    # The anchor, and any checkpoint counting fewer events than it, against the events' rows.
    looked_up = {c.statement.count for c in earlier} | ({start} if anchor and start else set())
    stored = dict(AuditEvent.objects.filter(seq__in=looked_up).values_list("seq", "hash"))
    stored[0] = GENESIS
    chain_end = None
    if any(count not in stored for count in looked_up):
        chain_end = AuditEvent.objects.filter(seq__lte=start).aggregate(Max("seq"))["seq__max"] or 0
    if anchor and stored.get(start) != prev_hash:
        matched.clear()
        compare(anchor, stored.get(start), chain_end)
    for checkpoint in sorted(earlier, key=lambda c: c.statement.count):
        compare(checkpoint, stored.get(checkpoint.statement.count), chain_end)
    for checkpoint in pending.pop(start, []):
        compare(checkpoint, prev_hash, start)

    expected, checked, stopped = start + 1, 0, False
    events = AuditEvent.objects.filter(seq__gt=start).order_by("seq")
    for event in events.iterator(chunk_size=batch):
        if event.seq != expected:
            findings.append(Finding(event.seq, f"event #{expected} is missing (next is #{event.seq})"))
        elif event.prev_hash != prev_hash:
            findings.append(Finding(event.seq, f"event #{event.seq} does not link to #{event.seq - 1}"))
        elif event_hash(prev_hash, event) != event.hash:
            findings.append(Finding(event.seq, f"event #{event.seq} was changed after it was written"))
        else:
            for checkpoint in pending.pop(event.seq, []):
                compare(checkpoint, event.hash, event.seq)
            prev_hash, expected, checked = event.hash, expected + 1, checked + 1
            continue
        stopped = True
        break
    end = expected - 1
    if not stopped:
        # Read after the walk: an append commits its event and the head together, so a head behind
        # the walk was moved back; one ahead of it is fine if its events were appended meanwhile.
        head_seq, head_hash = _head()
        if end > head_seq:
            findings.append(Finding(head_seq + 1, f"events go on to #{end}, past the chain head at #{head_seq}"))
        elif end < head_seq and not AuditEvent.objects.filter(seq=end + 1).exists():
            findings.append(Finding(end + 1, f"the chain ends at #{end} but its head says #{head_seq}"))
        elif end == head_seq and head_hash != prev_hash:
            findings.append(Finding(end, f"the chain head's hash is not event #{end}'s: the head was swapped"))
        for count in sorted(pending):
            for checkpoint in pending[count]:
                compare(checkpoint, None, end)
    findings.sort(key=Finding.order)
    in_database = [c for c in matched if c.row_id is not None]
    report = ChainReport(
        ok=not findings,
        checked=checked,
        from_seq=start + 1,
        through_seq=end,
        through_hash=prev_hash,
        checkpoints_checked=compared,
        newest_checkpoint=max(in_database, key=lambda c: c.statement.number) if in_database else None,
        findings=[f.reason for f in findings],
        notes=loaded.notes,
    )
    if findings:
        report.broken_seq, report.reason, report.proof = findings[0].seq, findings[0].reason, findings[0].proof
    return report


def verify_chain(batch: int = 2000) -> ChainReport:
    """Walk the whole chain in order and hold it against every checkpoint, from the database and
    from the log outside it; report the first link, head or checkpoint that does not hold."""
    loaded = checkpoints.load(checkpoints.trusted_keys())
    return _walk(None, loaded, batch)


def record_verification(report: ChainReport, kind: str, started_at: dt.datetime) -> AuditVerification:
    """Store a verification's result: the audit page shows the newest, and the next incremental
    verification starts from the checkpoint of the newest that held."""
    if not report.ok:
        logger.error("Audit chain verification failed: %s (%s)", report.reason, report.proof or "no checkpoint")
    newest = report.newest_checkpoint
    return AuditVerification.objects.create(
        kind=kind,
        started_at=started_at,
        finished_at=timezone.now(),
        ok=report.ok,
        from_seq=report.from_seq,
        through_seq=report.through_seq,
        through_hash=report.through_hash,
        checkpoint_id=newest.row_id if newest else None,
        checkpoints_checked=report.checkpoints_checked,
        broken_seq=report.broken_seq,
        reason=report.reason,
        proved_by=report.proof[:300],
        notes=[*report.findings[1:], *report.notes],
    )


def verify_full(batch: int = 2000) -> tuple[ChainReport, AuditVerification]:
    """``verify_chain``, its result stored."""
    started = timezone.now()
    report = verify_chain(batch)
    return report, record_verification(report, VerificationKind.FULL, started)


def verify_recent(batch: int = 2000) -> AuditVerification:
    """Verify what was appended since the newest checkpoint a verification found intact, and store
    the result.

    From that checkpoint (its signature checked again, and its event's hash against it) the walk
    covers only the events after it and the checkpoints made since. A rewrite that recomputed the
    hashes up to the newest event moves that checkpoint's event too, so it is found; a change
    below it that breaks a link without recomputing is the full walk's (``verify_chain``, nightly).
    """
    started = timezone.now()
    keys = checkpoints.trusted_keys()
    last_good = (
        AuditVerification.objects.filter(ok=True, checkpoint__isnull=False)
        .select_related("checkpoint")
        .order_by("-finished_at", "-pk")
        .first()
    )
    anchor = next(iter(checkpoints.from_rows([last_good.checkpoint], keys)), None) if last_good else None
    if anchor is not None and anchor.problem:
        anchor = None  # walk from the first event; loading from #0 reports the anchor itself
    loaded = checkpoints.load(keys, after=anchor.number if anchor else 0)
    report = _walk(anchor, loaded, batch)
    return record_verification(report, VerificationKind.INCREMENTAL, started)
