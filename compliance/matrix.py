"""The one answer to "may model version V process data classification C at time T?".

``check`` answers for one pair; ``Matrix`` answers for many pairs with a constant number of
queries (the matrix page, policy validation). Both run the same code: ``check`` is a one-row
``Matrix``. ``Matrix`` takes each cell's decision and each version's status as they stand now and
certifications valid on the day asked; ``RecordedMatrix`` answers as Steward had things on record at
each moment asked (cells and statuses from their history, holdings recorded by then): decision
records are judged with it, as of the moment they were made.
"""

from __future__ import annotations

import bisect
import copy
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Q
from django.utils import timezone

from registry.models import ModelVersion, Status

from .models import CellDecision, CertificationHolding, DataClassification, HoldingEffect, MatrixCell


class CellState:
    """What a cell shows, in the order that explains it best (the first that applies wins)."""

    INELIGIBLE = "ineligible"
    DENIED = "denied"
    SUSPENDED = "suspended"
    EXPIRED = "expired"
    AWAITING = "awaiting"  # eligible, requested, awaiting an officer
    NOT_REQUESTED = "not-requested"  # eligible, nobody asked yet
    VERSION_NOT_APPROVED = "version-not-approved"
    USABLE = "usable"

    LABELS = {
        INELIGIBLE: "Ineligible",
        DENIED: "Denied",
        SUSPENDED: "Suspended",
        EXPIRED: "Approval expired",
        AWAITING: "Eligible, awaiting approval",
        NOT_REQUESTED: "Eligible, not requested",
        VERSION_NOT_APPROVED: "Version not approved",
        USABLE: "Usable",
    }


@dataclass(slots=True)
class CellFacts:
    """What the matrix needs of a cell, read as plain values (no model instances)."""

    COLUMNS = (
        "pk",
        "model_version_id",
        "classification_id",
        "decision",
        "decided_by__username",
        "decided_at",
        "justification",
        "expires_at",
        "suspended_at",
        "suspended_by__username",
        "suspension_reason",
        "requested_by_id",
        "requested_by__username",
    )

    pk: int
    model_version_id: int
    classification_id: int
    decision: str
    decided_by_name: str | None
    decided_at: dt.datetime | None
    justification: str
    expires_at: dt.datetime | None
    suspended_at: dt.datetime | None
    suspended_by_name: str | None
    suspension_reason: str
    requested_by_id: int | None
    requested_by_name: str | None

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None

    @property
    def decision_label(self) -> str:
        return CellDecision(self.decision).label if self.decision else "No decision"

    def is_expired_at(self, at: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= at


@dataclass(slots=True)
class Verdict:
    """The answer for one pair: usable or not, why, and the cell behind it."""

    usable: bool
    state: str
    reasons: list[str]
    eligible: bool
    cell: CellFacts | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        return CellState.LABELS[self.state]


class Matrix:
    """Verdicts for model versions x classifications at one time, loaded in a fixed number of queries."""

    def __init__(
        self,
        versions: Iterable[ModelVersion],
        classifications: Iterable[DataClassification] | None = None,
        at: dt.datetime | None = None,
    ) -> None:
        self.at = at or timezone.now()
        self.day = self.at.astimezone(dt.UTC).date()
        self.versions = list(versions)
        if classifications is None:
            classifications = DataClassification.objects.all()
        self.classifications = list(classifications)
        classification_ids = [c.pk for c in self.classifications]
        # Required certifications of each classification (one query).
        through = DataClassification.required_certifications.through
        self.required: dict[int, list] = defaultdict(list)
        rows = through.objects.filter(dataclassification_id__in=classification_ids).select_related("certification")
        for row in rows:
            self.required[row.dataclassification_id].append(row.certification)
        for certifications in self.required.values():
            certifications.sort(key=lambda c: c.name)
        version_ids = [v.pk for v in self.versions]
        provider_ids = {v.model.provider_id for v in self.versions}
        # Holdings of the providers and overrides of the versions (one query).
        self._use_holdings(
            CertificationHolding.objects.filter(Q(provider_id__in=provider_ids) | Q(model_version_id__in=version_ids))
        )
        self._load_cells(version_ids, classification_ids)
        # Answers shared by many cells, worked out once per matrix.
        self._certification_reasons: dict[tuple, str | None] = {}
        self._eligibility: dict[tuple, list[str]] = {}
        self._status_words = {status.value: status.label.lower() for status in Status}

    def _use_holdings(self, holdings: Iterable[CertificationHolding]) -> None:
        self.provider_holdings: dict[tuple[int, int], list[CertificationHolding]] = defaultdict(list)
        self.version_holdings: dict[tuple[int, int], list[CertificationHolding]] = defaultdict(list)
        for holding in holdings:
            if holding.provider_id:
                self.provider_holdings[(holding.provider_id, holding.certification_id)].append(holding)
            else:
                self.version_holdings[(holding.model_version_id, holding.certification_id)].append(holding)
        self._overridden = {version_id for version_id, _ in self.version_holdings}

    def _load_cells(self, version_ids: list[int], classification_ids: list[int]) -> None:
        # Cells (one query), as plain facts: thousands of them make up a matrix page.
        rows = MatrixCell.objects.filter(
            model_version_id__in=version_ids, classification_id__in=classification_ids
        ).values_list(*CellFacts.COLUMNS)
        self.cells: dict[tuple[int, int], CellFacts] = {}
        for row in rows:
            facts = CellFacts(*row)
            self.cells[(facts.model_version_id, facts.classification_id)] = facts

    def cell_facts(self, version: ModelVersion, classification: DataClassification) -> CellFacts | None:
        """The cell of the pair (its decision, suspension and expiry), None when nobody asked or decided."""
        return self.cells.get((version.pk, classification.pk))

    def status_of(self, version: ModelVersion) -> str | None:
        """The version's lifecycle status; None when it was not in the registry yet (``RecordedMatrix``)."""
        return version.status

    def at_time(self, at: dt.datetime) -> Matrix:
        """The same loaded matrix asked about another moment (decision records span many)."""
        other = copy.copy(self)
        other.at = at
        other.day = at.astimezone(dt.UTC).date()
        other._certification_reasons = {}
        other._eligibility = {}
        return other

    # --- eligibility ---------------------------------------------------------------------------

    def _certification_reason(self, version: ModelVersion, certification) -> str | None:
        """None when ``version`` holds ``certification`` on the day asked; otherwise why not."""
        overrides = self.version_holdings.get((version.pk, certification.pk))
        # Without overrides the answer is the provider's, shared by all its versions.
        key = (
            ("version", version.pk, certification.pk)
            if overrides
            else ("provider", version.model.provider_id, certification.pk)
        )
        if key not in self._certification_reasons:
            self._certification_reasons[key] = self._holding_reason(overrides, version, certification)
        return self._certification_reasons[key]

    def _holding_reason(self, overrides, version: ModelVersion, certification) -> str | None:
        if overrides:
            # The version's own deployment decides; its provider's holdings do not apply.
            if any(h.effect == HoldingEffect.REVOKES and h.is_valid_on(self.day) for h in overrides):
                return f"{certification.name} does not cover this deployment (version override)"
            holdings = [h for h in overrides if h.effect == HoldingEffect.GRANTS]
        else:
            holdings = self.provider_holdings.get((version.model.provider_id, certification.pk), [])
        if not holdings:
            return f"no {certification.name}"
        if any(h.is_valid_on(self.day) for h in holdings):
            return None
        past = [h.valid_until for h in holdings if h.valid_until < self.day]
        if past:
            return f"{certification.name} expired on {max(past).isoformat()}"
        return f"{certification.name} valid only from {min(h.valid_from for h in holdings).isoformat()}"

    def eligibility_reasons(self, version: ModelVersion, classification: DataClassification) -> list[str]:
        """Why ``version`` may not process ``classification`` on the day asked; empty when eligible."""
        # Versions without overrides share their provider's answer for a region.
        key = (
            ("version", version.pk, classification.pk)
            if version.pk in self._overridden
            else ("provider", version.model.provider_id, version.region, classification.pk)
        )
        if key not in self._eligibility:
            reasons = [
                reason
                for certification in self.required.get(classification.pk, [])
                if (reason := self._certification_reason(version, certification))
            ]
            if not classification.allows_region(version.region):
                reasons.append(f"region {version.region} not allowed for {classification.slug}")
            self._eligibility[key] = reasons
        return list(self._eligibility[key])

    # --- verdicts ------------------------------------------------------------------------------

    def verdict(self, version: ModelVersion, classification: DataClassification) -> Verdict:
        reasons = self.eligibility_reasons(version, classification)
        eligible = not reasons
        cell = self.cell_facts(version, classification)
        status = self.status_of(version)
        decision = cell.decision if cell else ""
        if cell and decision == CellDecision.DENIED:
            who = cell.decided_by_name or "an officer"
            reasons.append(f"denied by {who}: {cell.justification}")
        if cell and cell.is_suspended:
            who = cell.suspended_by_name or "an officer"
            reasons.append(f"suspended by {who} on {cell.suspended_at:%Y-%m-%d}: {cell.suspension_reason}")
        expired = bool(cell and decision == CellDecision.APPROVED and cell.is_expired_at(self.at))
        if expired:
            reasons.append(f"approval expired on {cell.expires_at:%Y-%m-%d %H:%M} UTC")
        if decision == CellDecision.REQUESTED:
            reasons.append("awaiting an officer's approval")
        elif not decision:
            reasons.append("not approved for this classification (not requested)")
        if status is None:
            reasons.append("model version was not in the registry yet")
        elif status != Status.APPROVED:
            reasons.append(f"model version is {self._status_words[status]}, not approved")

        if not eligible:
            state = CellState.INELIGIBLE
        elif decision == CellDecision.DENIED:
            state = CellState.DENIED
        elif cell and cell.is_suspended:
            state = CellState.SUSPENDED
        elif expired:
            state = CellState.EXPIRED
        elif decision == CellDecision.REQUESTED:
            state = CellState.AWAITING
        elif status != Status.APPROVED:
            state = CellState.VERSION_NOT_APPROVED
        elif not decision:
            state = CellState.NOT_REQUESTED
        else:
            state = CellState.USABLE
        return Verdict(usable=state == CellState.USABLE, state=state, reasons=reasons, eligible=eligible, cell=cell)

    def rows(self) -> list[tuple[ModelVersion, list[tuple[DataClassification, Verdict]]]]:
        return [(v, [(c, self.verdict(v, c)) for c in self.classifications]) for v in self.versions]


class RecordedMatrix(Matrix):
    """The matrix as Steward had it on record at the moment asked (``at_time``): each cell's
    decision, suspension and expiry and each version's lifecycle status as their history held them
    then, and only the certification holdings recorded by then (holdings are added, never edited:
    a renewal is a new holding). Loaded once, for moments up to ``until``, in a fixed number of
    queries; asking about a moment is then free of queries.

    Nothing recorded after the moment changes the answer, so asking again later answers the same:
    the ingest of decision records and the decision's chain page agree.
    """

    def __init__(
        self,
        versions: Iterable[ModelVersion],
        classifications: Iterable[DataClassification] | None = None,
        at: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> None:
        self.until = until or timezone.now()
        super().__init__(versions, classifications, at)
        version_ids = [v.pk for v in self.versions]
        self._statuses: dict[int, tuple[list[dt.datetime], list[str | None]]] = {}
        rows = (
            ModelVersion.history.filter(id__in=version_ids, history_date__lte=self.until)
            .order_by("history_date", "history_id")
            .values_list("id", "history_date", "history_type", "status")
        )
        for version_id, when, kind, status in rows:
            moments, statuses = self._statuses.setdefault(version_id, ([], []))
            moments.append(when)
            statuses.append(None if kind == "-" else status)
        self._use_holdings(self._recorded[: bisect.bisect_right(self._recorded_at, self.at)])
        self._verdicts: dict[tuple, tuple[str | None, Verdict]] = {}

    def _use_holdings(self, holdings: Iterable[CertificationHolding]) -> None:
        if not hasattr(self, "_recorded"):
            # First call, from ``Matrix.__init__``: keep every holding, ordered by when it was recorded.
            self._recorded = sorted(
                (h for h in holdings if h.recorded_at <= self.until), key=lambda h: (h.recorded_at, h.pk)
            )
            self._recorded_at = [h.recorded_at for h in self._recorded]
            self._by_count: dict[int, tuple] = {}
            holdings = []
        super()._use_holdings(holdings)

    def _load_cells(self, version_ids: list[int], classification_ids: list[int]) -> None:
        columns = ["id" if c == "pk" else c for c in CellFacts.COLUMNS]
        rows = (
            MatrixCell.history.filter(
                model_version_id__in=version_ids, classification_id__in=classification_ids, history_date__lte=self.until
            )
            .order_by("history_date", "history_id")
            .values_list("history_date", "history_type", *columns)
        )
        self.cells = {}
        self._cell_history: dict[tuple[int, int], tuple[list[dt.datetime], list[CellFacts | None]]] = {}
        for when, kind, *row in rows:
            facts = CellFacts(*row)
            moments, states = self._cell_history.setdefault((facts.model_version_id, facts.classification_id), ([], []))
            moments.append(when)
            states.append(None if kind == "-" else facts)

    def at_time(self, at: dt.datetime) -> RecordedMatrix:
        other = super().at_time(at)
        # The holdings on record at ``at``: the first ``count`` by recording time (built once per count).
        count = bisect.bisect_right(self._recorded_at, at)
        if count not in self._by_count:
            other._use_holdings(self._recorded[:count])
            self._by_count[count] = (other.provider_holdings, other.version_holdings, other._overridden)
        other.provider_holdings, other.version_holdings, other._overridden = self._by_count[count]
        return other

    def verdict_at(
        self, version: ModelVersion, classification: DataClassification, at: dt.datetime
    ) -> tuple[str | None, Verdict]:
        """The version's status and the pair's verdict at ``at``: ``at_time(at)``'s answers, worked out
        once for each state of the record they depend on (the day, the holdings recorded by then, the
        entries of the status and cell history in force, whether the cell's approval had expired), so
        the many decisions of a batch made under the same state share one answer (not to be changed)."""
        cells = self._cell_history.get((version.pk, classification.pk))
        cell_entry = bisect.bisect_right(cells[0], at) if cells else 0
        cell = cells[1][cell_entry - 1] if cell_entry else None
        statuses = self._statuses.get(version.pk)
        key = (
            version.pk,
            classification.pk,
            at.astimezone(dt.UTC).date(),
            bisect.bisect_right(self._recorded_at, at),
            cell_entry,
            bisect.bisect_right(statuses[0], at) if statuses else 0,
            cell is not None and cell.is_expired_at(at),
        )
        answer = self._verdicts.get(key)
        if answer is None:
            matrix = self.at_time(at)
            answer = self._verdicts[key] = (matrix.status_of(version), matrix.verdict(version, classification))
        return answer

    def changes_near(self, version: ModelVersion, classification: DataClassification, at: dt.datetime) -> list:
        """The moments at which what ``verdict_at`` depends on for the pair may change, around ``at``:
        the bounds of its UTC day, when each holding was recorded, each entry of the cell's and the
        version's history, and when the cell in force at ``at`` expires. Between two of them (from
        one, up to but not including the next) ``verdict_at`` answers the same."""
        day = dt.datetime.combine(at.astimezone(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)
        moments = [day, day + dt.timedelta(days=1), *self._recorded_at]
        cells = self._cell_history.get((version.pk, classification.pk))
        if cells:
            moments += cells[0]
            entry = bisect.bisect_right(cells[0], at)
            cell = cells[1][entry - 1] if entry else None
            if cell is not None and cell.expires_at is not None:
                moments.append(cell.expires_at)  # expired from that moment on (``is_expired_at``)
        statuses = self._statuses.get(version.pk)
        if statuses:
            moments += statuses[0]
        return moments

    @staticmethod
    def _then(history: tuple[list, list] | None, at: dt.datetime):
        if not history:
            return None
        index = bisect.bisect_right(history[0], at)
        return history[1][index - 1] if index else None

    def cell_facts(self, version: ModelVersion, classification: DataClassification) -> CellFacts | None:
        return self._then(self._cell_history.get((version.pk, classification.pk)), self.at)

    def status_of(self, version: ModelVersion) -> str | None:
        return self._then(self._statuses.get(version.pk), self.at)


def check(version: ModelVersion, classification: DataClassification, at: dt.datetime | None = None) -> Verdict:
    """May ``version`` process ``classification`` at ``at`` (default now)? With the reasons."""
    return Matrix([version], [classification], at).verdict(version, classification)


def eligibility_reasons(version: ModelVersion, classification: DataClassification, at: dt.datetime) -> list[str]:
    """Why ``version`` is not eligible for ``classification`` at ``at``; empty when it is."""
    return Matrix([version], [classification], at).eligibility_reasons(version, classification)
