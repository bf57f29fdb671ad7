"""steward_client: the router side of Steward's signed policy feed.

Pure Python: the standard library and ``cryptography``. Pull the signed policy, verify it
offline against the trust root, keep the last good one, answer routing questions, enforce it on
requests, report decision records (batched, spooled to disk), export a LiteLLM proxy
configuration. ``steward_client.litellm.steward_guard`` is the LiteLLM proxy plugin (the
``[litellm]`` extra).
"""

from .client import ApplyError, PolicyClient, UpdateResult
from .enforcement import Enforcer, Plan, Refusal
from .policy import Policy, PolicyDenied, RouteDecision
from .reporter import DecisionReporter, SpoolState
from .verify import RollbackError, TrustRoot, VerificationError

__all__ = [
    "ApplyError",
    "DecisionReporter",
    "Enforcer",
    "Plan",
    "Policy",
    "PolicyClient",
    "PolicyDenied",
    "Refusal",
    "RollbackError",
    "RouteDecision",
    "SpoolState",
    "TrustRoot",
    "UpdateResult",
    "VerificationError",
]
