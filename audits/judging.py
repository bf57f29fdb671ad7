"""What was in force when a decision was made, and what the decision broke: judged as of the moment.

``PolicyBook.in_force(decision)`` is the one answer. Ingest stores its violations; the decision's
chain page (and its API) shows what it found. Both read only what Steward had on record at the
moment of the decision, so asking again later gives the same answer.

The moment is the decision's ``occurred_at``, as the router's clock put it, with one correction:
a decision dated at most the clock slack before its policy version's publication is judged at the
publication (a router cannot apply a version before it is published: its clock runs behind).

At that moment:

- the policy version it names: published by then (else ``unpublished-policy``), not superseded by a
  version with other routes longer than the grace window before (else ``superseded-policy``), not
  expired (``expired-policy``), and allowing the model for the task and classification;
- the model version's lifecycle status, each matrix cell's decision, suspension and expiry, from
  their history, and the certification holdings recorded by then, valid on that day
  (``compliance.matrix.RecordedMatrix``).
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection
from django.db.models import Min, QuerySet
from django.utils import timezone

from compliance.matrix import RecordedMatrix, Verdict
from compliance.models import CertificationHolding, DataClassification, MatrixCell
from portfolio.models import PolicyRelease, PolicyVersion
from registry.models import ModelVersion

from .models import DecisionRecord, ViolationKind

MICROSECOND = dt.timedelta(microseconds=1)  # the step of a stored time: "after t" is "from t + 1 us on"
DAWN = dt.datetime.min.replace(tzinfo=dt.UTC)
NEVER = dt.datetime.max.replace(tzinfo=dt.UTC)


def clock_slack() -> dt.timedelta:
    return dt.timedelta(seconds=settings.STEWARD_DECISION_CLOCK_SLACK_SECONDS)


def policy_grace() -> dt.timedelta:
    return dt.timedelta(seconds=settings.STEWARD_POLICY_GRACE_SECONDS)


def _at(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


@dataclass(frozen=True, slots=True)
class Publication:
    """One version of the policy set on its timeline: when it was published and whose routes it carries."""

    number: int
    published_at: dt.datetime
    routes_of: int  # the version whose routes it carries: itself, or for a re-signed version its source


@dataclass
class InForce:
    """What stood at the moment a decision is judged, and the rules it broke then."""

    moment: dt.datetime
    moment_note: str  # why the moment is not ``occurred_at`` (a clock ahead or behind), or ""
    policy: PolicyVersion | None
    release: PolicyRelease | None
    published: bool  # the policy version was published by the moment
    superseded_by: int | None  # the version with other routes in force instead, beyond the grace window
    superseded_at: dt.datetime | None
    expired: bool
    allowed: tuple[str, ...] | None  # the models the version's route allows; None without a route
    model: ModelVersion | None
    classification: DataClassification | None
    status: str | None  # the model version's lifecycle status at the moment (None: not in the registry yet)
    verdict: Verdict | None
    violations: list[tuple[str, str]] = field(default_factory=list)


class PolicyBook:
    """The policy set's versions, the models, classifications and the recorded matrix that a batch
    of decisions refers to (or all of them, ``current_book``), loaded once (a fixed number of
    queries for any batch)."""

    def __init__(
        self,
        policy_set: str,
        records: Iterable[dict] | None,
        until: dt.datetime | None = None,
        models: QuerySet[ModelVersion] | None = None,
    ) -> None:
        """``until``: what Steward had recorded by then is all that counts (default now). Ingest reads
        up to the moment it receives a batch, the chain page up to the record's ``received_at``
        (the same moment), so a version published or a holding recorded after a record arrived,
        even one dated in the future, changes neither answer.

        ``records``: the decisions' versions, models and classifications are loaded; None loads every
        one (``current_book``). ``models``: the model versions' query (default with what the chain
        page shows of them)."""
        records = list(records) if records is not None else None
        self.policy_set = policy_set
        self.until = until or timezone.now()
        published = PolicyVersion.objects.filter(policy_set__slug=policy_set, published_at__lte=self.until)
        cited = published if records is None else published.filter(number__in={r["policy_version"] for r in records})
        self.versions = {v.number: v for v in cited.select_related("release")}
        # The whole timeline of the set (a few columns): which version was in force when.
        self.timeline = [
            Publication(number, published_at, source or pk)
            for number, published_at, source, pk in published.order_by("number").values_list(
                "number", "published_at", "source_version_id", "pk"
            )
        ]
        self._published_at = sorted(p.published_at for p in self.timeline)
        self._superseded: dict[tuple[int, int], tuple[int, dt.datetime] | None] = {}
        self._clean: dict[tuple, tuple[dt.datetime, dt.datetime]] = {}
        models = (ModelVersion.objects.with_related() if models is None else models).filter(proposed_at__lte=self.until)
        if records is not None:
            models = models.filter(ref__in={r["model"] for r in records})
        self.models = {v.ref: v for v in models}
        classifications = DataClassification.objects.all()
        if records is not None:
            classifications = classifications.filter(slug__in={r["classification"] for r in records})
        self.classifications = {c.slug: c for c in classifications}
        self.matrix = RecordedMatrix(self.models.values(), self.classifications.values(), until=self.until)

    @classmethod
    def for_decision(cls, decision: DecisionRecord) -> PolicyBook:
        return cls(
            decision.policy_set,
            [
                {
                    "policy_version": decision.policy_version,
                    "model": decision.model,
                    "classification": decision.classification,
                    "occurred_at": decision.occurred_at,
                }
            ],
            until=decision.received_at,
        )

    def allowed(self, version: PolicyVersion, task: str, classification: str) -> tuple[str, ...] | None:
        """Models the version allows for the route (primary, fallbacks, escalation); None without a route."""
        route = version.route_for(task, classification)
        return route.models if route is not None else None

    def moment_of(self, decision: DecisionRecord, version: PolicyVersion | None) -> tuple[dt.datetime, str]:
        """When the decision is judged, and why that is not its ``occurred_at`` (or "")."""
        moment = decision.occurred_at
        if version is not None and moment < version.published_at <= moment + clock_slack():
            # Never later than Steward received the record: a decision reported before its version
            # was published cannot have been made under it.
            if decision.received_at is None or version.published_at <= decision.received_at:
                note = (
                    f"dated {_at(moment)}, less than the clock slack ({clock_slack()}) before "
                    f"v{version.number} was published: judged at the publication"
                )
                return version.published_at, note
        return moment, ""

    def superseded(self, version: PolicyVersion, moment: dt.datetime) -> tuple[int, dt.datetime] | None:
        """The version with other routes that had been in force for longer than the grace window at
        ``moment`` instead of ``version``'s routes, and since when; None when ``version``'s routes
        (its own or a re-signed copy's) were in force at some time within the window.

        Which versions were published by ``moment`` is worked out once per number of them (and the
        routes asked about), not once per decision: a batch's decisions share a few such states."""
        count = bisect.bisect_right(self._published_at, moment)
        key = (version.content_origin_id, count)
        if key not in self._superseded:
            published = [p for p in self.timeline if p.published_at <= self._published_at[count - 1]] if count else []
            same = [p for p in published if p.routes_of == key[0]]
            later = [p for p in published if same and p.published_at > same[-1].published_at]
            self._superseded[key] = (published[-1].number, later[0].published_at) if later else None
        found = self._superseded[key]
        if found is None or moment - found[1] <= policy_grace():
            return None
        return found

    def in_force(self, decision: DecisionRecord) -> InForce:
        """What was in force for ``decision`` at its moment, with the violations it committed."""
        found: list[tuple[str, str]] = []
        version = self.versions.get(decision.policy_version)
        moment, note = self.moment_of(decision, version)
        release: PolicyRelease | None = getattr(version, "release", None) if version else None
        published = expired = False
        superseded = None
        allowed = None
        name = f"{decision.policy_set} v{decision.policy_version}"
        if version is None:
            found.append((ViolationKind.UNKNOWN_POLICY, f"{name} was never published"))
        else:
            published = version.published_at <= moment
            if not published:
                found.append(
                    (
                        ViolationKind.UNPUBLISHED_POLICY,
                        f"{name} was published at {_at(version.published_at)}, after the decision at {_at(moment)}",
                    )
                )
            else:
                superseded = self.superseded(version, moment)
                if superseded:
                    number, since = superseded
                    found.append(
                        (
                            ViolationKind.SUPERSEDED_POLICY,
                            f"{name} had been superseded since {_at(since)} (v{number} in force at the decision at "
                            f"{_at(moment)}), beyond the grace window of {policy_grace()}",
                        )
                    )
            if release is not None and moment > release.expires:
                expired = True
                found.append(
                    (
                        ViolationKind.EXPIRED_POLICY,
                        f"{name} expired at {release.expires:%Y-%m-%d %H:%M} UTC, before the decision at "
                        f"{moment:%Y-%m-%d %H:%M} UTC",
                    )
                )
            allowed = self.allowed(version, decision.task, decision.classification)
            if allowed is None:
                found.append(
                    (
                        ViolationKind.MODEL_NOT_ALLOWED,
                        f"v{version.number} has no route for {decision.task} / {decision.classification} "
                        "(default deny)",
                    )
                )
            elif decision.model not in allowed:
                found.append(
                    (
                        ViolationKind.MODEL_NOT_ALLOWED,
                        f"v{version.number} allows {', '.join(sorted(allowed))} for {decision.task} / "
                        f"{decision.classification}, not {decision.model}",
                    )
                )
        model = self.models.get(decision.model)
        classification = self.classifications.get(decision.classification)
        verdict = status = None
        if model is None:
            found.append((ViolationKind.NOT_USABLE, f"{decision.model} is not in the registry"))
        elif classification is None:
            found.append((ViolationKind.NOT_USABLE, f"unknown data classification {decision.classification!r}"))
        else:
            status, verdict = self.matrix.verdict_at(model, classification, moment)
            if not verdict.usable:
                found.append(
                    (
                        ViolationKind.NOT_USABLE,
                        f"{decision.model} may not process {decision.classification} at "
                        f"{moment:%Y-%m-%d %H:%M} UTC: {'; '.join(verdict.reasons)}",
                    )
                )
        return InForce(
            moment=moment,
            moment_note=note,
            policy=version,
            release=release,
            published=published,
            superseded_by=superseded[0] if superseded else None,
            superseded_at=superseded[1] if superseded else None,
            expired=expired,
            allowed=allowed,
            model=model,
            classification=classification,
            status=status,
            verdict=verdict,
            violations=found,
        )

    def violations(self, decision: DecisionRecord) -> list[tuple[str, str]]:
        """``in_force(decision).violations``, without judging again a decision made in a stretch of time
        in which another of the same version, route and model was found clean and nothing it was
        judged by changed (``_unchanged``): ingest's records come in time order, most of them clean."""
        # Not the decision's received_at: it moves the moment only in the clock slack before the
        # version's publication, which no clean stretch reaches into (``_unchanged``).
        key = (decision.policy_version, decision.task, decision.classification, decision.model)
        moment = decision.occurred_at
        stretch = self._clean.get(key)
        if stretch is not None and stretch[0] <= moment < stretch[1]:
            return []
        found = self.in_force(decision)
        if not found.violations and not found.moment_note:
            self._clean[key] = self._unchanged(found)
        return found.violations

    def _unchanged(self, found: InForce) -> tuple[dt.datetime, dt.datetime]:
        """The stretch ``[start, end)`` around a clean finding's moment in which nothing that ``in_force``
        holds against the moment changes: every version's publication (which was in force), the end
        of the grace window of the version that superseded it, the release's expiry, and what the
        matrix verdict depends on (``RecordedMatrix.changes_near``). Every comparison with the moment
        answers the same throughout, so does ``in_force``. (A clean finding's version was published
        by its moment, which begins the stretch: no moment in it falls in the clock slack before.)"""
        moment, version, release = found.moment, found.policy, found.release
        moments = [*self._published_at, version.published_at]
        count = bisect.bisect_right(self._published_at, moment)
        superseding = self._superseded.get((version.content_origin_id, count))
        if superseding is not None:
            moments.append(superseding[1] + policy_grace() + MICROSECOND)  # beyond the window from then on
        if release is not None:
            moments.append(release.expires + MICROSECOND)  # expired from then on
        moments += self.matrix.changes_near(found.model, found.classification, moment)
        start = max((m for m in moments if m <= moment), default=DAWN)
        end = min((m for m in moments if m > moment), default=NEVER)
        return start, end


# --- the book ingest keeps between batches ------------------------------------------------------

EPOCH_TABLE = "audits_judgingepoch"  # audits migration 0012: changes with every write to what a book reads
_kept = threading.local()  # a thread's book (a gunicorn sync worker has one thread): never shared


def current_book(policy_set: str, records: list[dict]) -> tuple[PolicyBook, dt.datetime]:
    """The book ingest judges a batch of ``records`` by, and the moment it answers for (the batch's
    ``received_at``). On PostgreSQL a book of everything on record now for ``policy_set``'s decisions:
    the one kept from an earlier batch while it holds exactly what loading it now would, else a new
    one (kept for the next). On SQLite, which has no judging epoch, a book of the batch's own.

    It holds exactly that while the judging epoch is the one it was loaded under (nothing it read was
    written since: audits migration 0012), nothing it read is dated after it was loaded but before
    now (a row written ahead of its time, ``_next_recorded``), and the clock slack and grace window
    are as they were.
    """
    if connection.vendor != "postgresql":
        book = PolicyBook(policy_set, records)
        return book, book.until  # what the book read is what Steward had on receiving the batch
    epoch = _epoch()  # read before the book's queries, so that a book is never older than its epoch
    now = timezone.now()
    key = (connection.alias, connection.settings_dict["NAME"], policy_set, clock_slack(), policy_grace())
    book = getattr(_kept, "books", {}).get(key)
    if book is not None and book.epoch == epoch and book.until <= now < book.fresh_until:
        return book, now
    # The registry's versions with their model and provider: what judging reads of them.
    book = PolicyBook(policy_set, None, until=now, models=ModelVersion.objects.select_related("model__provider"))
    book.epoch, book.fresh_until = epoch, _next_recorded(now)
    _kept.books = {key: book}  # one book a thread: a router reports for one policy set
    return book, now


def _epoch() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT value FROM {EPOCH_TABLE} WHERE id = 1")
        return cursor.fetchone()[0]


def _next_recorded(after: dt.datetime) -> dt.datetime:
    """The earliest moment after ``after`` at which a row the book reads is dated (published,
    proposed, a history entry, a holding recorded): written ahead of its time, it would count for a
    batch received from then on. Never, mostly."""
    ahead = [
        PolicyVersion.objects.filter(published_at__gt=after).aggregate(m=Min("published_at"))["m"],
        ModelVersion.objects.filter(proposed_at__gt=after).aggregate(m=Min("proposed_at"))["m"],
        ModelVersion.history.filter(history_date__gt=after).aggregate(m=Min("history_date"))["m"],
        MatrixCell.history.filter(history_date__gt=after).aggregate(m=Min("history_date"))["m"],
        CertificationHolding.objects.filter(recorded_at__gt=after).aggregate(m=Min("recorded_at"))["m"],
    ]
    return min((moment for moment in ahead if moment is not None), default=NEVER)
