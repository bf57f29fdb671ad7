"""steward_client: the router side of Steward's signed policy feed.

Pure Python: the standard library and ``cryptography``. Pull the signed policy, verify it
offline against the trust root, keep the last good one, answer routing questions, export a
LiteLLM proxy configuration.
"""

from .client import PolicyClient, UpdateResult
from .policy import Policy, PolicyDenied, RouteDecision
from .verify import RollbackError, TrustRoot, VerificationError

__all__ = [
    "Policy",
    "PolicyClient",
    "PolicyDenied",
    "RollbackError",
    "RouteDecision",
    "TrustRoot",
    "UpdateResult",
    "VerificationError",
]
