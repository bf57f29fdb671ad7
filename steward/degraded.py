"""What Steward answers while PostgreSQL, Redis or the Celery broker does not answer.

Each service that can be down has one documented answer (docs/operations.md, "When a service is
down"); ``ANSWERS`` holds them as /health/ shows them. Code that meets an outage calls ``noted``: the
outage is logged once when it begins (and once a minute while it lasts, not once per request) and
counted, per process, so /health/ shows which degraded answers this process is giving and how many.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger("steward.degraded")

ANSWERS = {
    "database": (
        "Routers' polls are answered from the cache (the last signed bundle, 304 when unchanged); "
        "everything else answers 503 with Retry-After."
    ),
    "cache": (
        "The policy feed and decision reports read PostgreSQL instead; a revoked router token stops "
        "working within the same bound as with the cache."
    ),
    "broker": "Starting an evaluation run answers 503 with Retry-After and starts or records nothing.",
    "worker": "Evaluation runs wait in the queue until a worker takes them.",
}
# How long clients are asked to wait before retrying (Retry-After, in seconds).
RETRY_AFTER_SECONDS = 30
# An outage seen within this long is still shown on /health/ after the service answers again.
SHOWN_SECONDS = 60.0
LOG_EVERY_SECONDS = 60.0


class ServiceUnavailable(Exception):
    """A service Steward needs for this request does not answer; the request changed nothing."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(reason)
        self.service = service
        self.reason = reason


@dataclass
class Outage:
    since: float  # Unix time of the first failure seen
    last: float
    count: int
    reason: str
    logged_at: float
    answered_again_at: float | None = None


_lock = threading.Lock()
_outages: dict[str, Outage] = {}


def noted(service: str, error: BaseException | str) -> None:
    """Record that ``service`` failed just now (logged at the start, then at most once a minute)."""
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}".strip()
    now = time.time()
    with _lock:
        outage = _outages.get(service)
        if outage is None or outage.answered_again_at is not None or now - outage.last > SHOWN_SECONDS:
            outage = _outages[service] = Outage(since=now, last=now, count=0, reason=reason, logged_at=0.0)
        outage.last, outage.reason, outage.count = now, reason, outage.count + 1
        log = now - outage.logged_at >= LOG_EVERY_SECONDS
        if log:
            outage.logged_at = now
        count = outage.count
    if log:
        logger.warning(
            "%s does not answer (%d failure(s) so far): %s; meanwhile: %s", service, count, reason, ANSWERS[service]
        )


def recovered(service: str) -> None:
    """Record that ``service`` answers again (logged once); /health/ still shows the outage a minute."""
    now = time.time()
    with _lock:
        outage = _outages.get(service)
        if outage is None or outage.answered_again_at is not None:
            return
        outage.answered_again_at = now
        count, since = outage.count, outage.since
    logger.warning("%s answers again after %d failure(s) since %s", service, count, time.ctime(since))


def recent() -> dict[str, dict]:
    """The outages this process met within ``SHOWN_SECONDS``: service → since, last, count, reason."""
    now = time.time()
    with _lock:
        return {
            service: {
                "since": o.since,
                "last": o.last,
                "count": o.count,
                "reason": o.reason,
                "answered_again_at": o.answered_again_at,
            }
            for service, o in _outages.items()
            if now - o.last <= SHOWN_SECONDS
        }


def forget() -> None:
    """Clear what was noted (tests)."""
    with _lock:
        _outages.clear()


def is_database_outage(error: BaseException | None) -> bool:
    """True for an error that means the database does not answer (not a bad query or a constraint)."""
    return isinstance(error, OperationalError | InterfaceError)


def unavailable_message(reason: str) -> str:
    return f"Steward cannot answer this request now: {reason}. Try again in {RETRY_AFTER_SECONDS} seconds."


def unavailable_body(service: str, reason: str) -> dict:
    """The API's 503 body: what does not answer, and when to try again."""
    return {"detail": unavailable_message(reason), "service": service, "retry_after": RETRY_AFTER_SECONDS}


def unavailable_headers() -> dict[str, str]:
    return {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}


def unavailable_response(request: HttpRequest, service: str, reason: str) -> HttpResponse:
    """503 with Retry-After: a JSON reason for the API, a plain page for browsers."""
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse(unavailable_body(service, reason), status=503)
    else:
        response = HttpResponse(unavailable_message(reason), status=503, content_type="text/plain; charset=utf-8")
    for name, value in unavailable_headers().items():
        response[name] = value
    return response
