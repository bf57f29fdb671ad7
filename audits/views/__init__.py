"""Audit pages, by concept: the trail and changes feed, the decisions explorer, violations."""

from .decisions import decision, decision_charts, decisions, decisions_csv, decisions_jsonl
from .trail import audit_trail, audit_trail_csv, changes, field_diff, object_links
from .violations import violations

__all__ = [
    "audit_trail",
    "audit_trail_csv",
    "changes",
    "decision",
    "decision_charts",
    "decisions",
    "decisions_csv",
    "decisions_jsonl",
    "field_diff",
    "object_links",
    "violations",
]
