"""Audits: hash-chained audit events, decision records from routers and violations."""
