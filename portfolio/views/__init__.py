"""Portfolio's pages, by concept: policies, change requests, the fleet, recommendations."""

from .changes import (
    change_request,
    change_requests,
    new_change_request,
    publish_change_request,
    rebase_change_request,
    review_change_request,
    revise_change_request,
    submit_change_request,
    validate_policy,
    withdraw_change_request,
)
from .fleet import fleet, revoke_router_token
from .policies import policy_set, policy_set_thresholds, policy_sets, policy_version, policy_versions

__all__ = [
    "change_request",
    "change_requests",
    "fleet",
    "new_change_request",
    "policy_set",
    "policy_set_thresholds",
    "policy_sets",
    "policy_version",
    "policy_versions",
    "publish_change_request",
    "rebase_change_request",
    "review_change_request",
    "revise_change_request",
    "revoke_router_token",
    "submit_change_request",
    "validate_policy",
    "withdraw_change_request",
]
