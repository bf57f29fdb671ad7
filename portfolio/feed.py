"""The policy feed routers poll: bundles with strong ETags, status reports, trust roots.

The poll path is built to be cheap: the router token and the current release's ETag come from
memory (then the shared cache, then the database), a matching ``If-None-Match`` is answered 304
without touching the ORM, and "last seen" is kept in memory and written to the database in one
batch every ``STEWARD_FEED_LAST_SEEN_FLUSH_SECONDS`` by a background thread, never by a poll.

When the shared cache (Redis) does not answer, the feed reads the database and remembers in memory
as before, so a revoked token stops working within ``STEWARD_FEED_TOKEN_MEMORY_SECONDS`` either way;
it stops asking the cache until the background thread sees it answer again and has forgotten what
changed meanwhile (tokens revoked, releases published). When the database does not answer, a poll
is answered from what memory and the cache hold (docs/operations.md, "When a service is down").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connections, transaction
from django.db.models import Max, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from audits import events as audit
from steward import degraded
from steward.columns import integer_range
from steward.parsers import JSONBodyError, parse_json

from .models import PolicyRelease, PolicySet, PolicyVersion, Router, RouterReport, TrustRoot

ROUTER_TOKEN_PREFIX = "swr_"
RELEASE_MEMORY_SECONDS = 1.0  # a new release reaches every process within this long
# What changed in the database while the cache did not answer is forgotten from the cache when it
# answers again: changes since this long before the first failure this process saw.
CACHE_OUTAGE_SLACK_SECONDS = 60.0
HOUSEKEEPING_TICK_SECONDS = 1.0
MAX_STATUS_BYTES = 64 * 1024
MEMORY_ENTRIES = 10_000
# Optional members of a status report: what the router's decision spool holds (docs/policy-feed.md).
SPOOL_FIELDS = ("spool_records", "spool_bytes", "spool_age_seconds", "spool_dropped")


@dataclass(frozen=True)
class RouterIdentity:
    router_id: int
    policy_set: str
    expires_at: float | None = None  # the token's expiry as a Unix time; None: it does not expire


@dataclass(frozen=True)
class CachedRelease:
    etag: str
    version: int
    body: bytes


_MISSING = object()
_lock = threading.Lock()
_tokens: dict[str, tuple[float, RouterIdentity | None]] = {}
_releases: dict[str, tuple[float, CachedRelease | None]] = {}
_seen: dict[int, float] = {}
_last_flush = time.monotonic()
_cache_down_since: float | None = None  # Unix time of the first cache failure not yet recovered from
_pending_deletes: set[str] = set()  # cache keys this process could not delete while the cache was down
_housekeeper: tuple[int, threading.Thread] | None = None  # (process id, thread)
logger = logging.getLogger(__name__)


def token_memory_seconds() -> float:
    """A revoked token stops working within this long in every process, with or without the cache."""
    return float(settings.STEWARD_FEED_TOKEN_MEMORY_SECONDS)


def hash_router_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_router_token() -> str:
    return ROUTER_TOKEN_PREFIX + secrets.token_urlsafe(32)


# --- tokens -------------------------------------------------------------------------------------


def identify(raw_token: str) -> RouterIdentity | None:
    """The router a token belongs to (None for unknown or revoked), remembered briefly in memory.

    When the database does not answer, the last identity this process remembers for the token is
    used however old (a token cannot be revoked while the database is down); with none, the
    database's error propagates (503).
    """
    token_hash = hash_router_token(raw_token)
    now = time.monotonic()
    remembered = _tokens.get(token_hash)
    if remembered is not None and remembered[0] > now:
        return _unexpired(remembered[1])
    key = f"feed:token:{token_hash}"
    identity = _cache_get(key)
    if identity is _MISSING:
        try:
            router = (
                Router.objects.filter(token_hash=token_hash, revoked_at__isnull=True)
                .values_list("pk", "policy_set__slug", "token_expires_at")
                .first()
            )
        except Exception as error:
            if remembered is None or not degraded.is_database_outage(error):
                raise
            degraded.noted("database", error)
            return _unexpired(remembered[1])
        identity = (
            RouterIdentity(router[0], router[1], router[2].timestamp() if router[2] else None) if router else None
        )
        _cache_set(key, identity, _shared_cache_seconds())
    with _lock:
        if len(_tokens) > MEMORY_ENTRIES:
            _tokens.clear()  # many unknown tokens: someone is guessing; start again rather than grow
        _tokens[token_hash] = (now + token_memory_seconds(), identity)
    return _unexpired(identity)


def _unexpired(identity: RouterIdentity | None) -> RouterIdentity | None:
    """An expired token is refused at once, whatever the caches remember."""
    if identity is not None and identity.expires_at is not None and identity.expires_at <= time.time():
        return None
    return identity


def _cache_is_shared() -> bool:
    backend = settings.CACHES["default"]["BACKEND"].lower()
    return "redis" in backend or "memcached" in backend


def _shared_cache_seconds() -> float:
    # A per-process cache cannot hear of a revocation in another process: keep entries as short as memory's.
    return 300 if _cache_is_shared() else token_memory_seconds()


def forget_token(token_hash: str) -> None:
    _cache_delete(f"feed:token:{token_hash}")
    _tokens.pop(token_hash, None)


def router_from_request(request: HttpRequest) -> RouterIdentity | None:
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return None
    return identify(raw.strip())


def unauthorised() -> JsonResponse:
    # The same answer for a missing, unknown or revoked token: it does not say whether a router exists.
    response = JsonResponse({"detail": "Invalid or missing router token."}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="steward-feed"'
    return response


def _wrong_set(slug: str) -> JsonResponse:
    return JsonResponse({"detail": f"This router token may not read or report for policy set {slug!r}."}, status=403)


def _router_for_set(request: HttpRequest, slug: str) -> RouterIdentity | HttpResponse:
    """The router behind the request's token, or the 401/403 answer when it may not act for ``slug``."""
    identity = router_from_request(request)
    if identity is None:
        return unauthorised()
    if identity.policy_set != slug:
        return _wrong_set(slug)
    return identity


# --- releases -----------------------------------------------------------------------------------


def current_release(slug: str) -> CachedRelease | None:
    """The policy set's current signed release, from memory, the shared cache or the database.

    When the database does not answer, the last release this process remembers is served however
    old (nothing can be published while the database is down).
    """
    now = time.monotonic()
    remembered = _releases.get(slug)
    if remembered is not None and remembered[0] > now:
        return remembered[1]
    key = f"feed:release:{slug}"
    release = _cache_get(key)
    if release is _MISSING:
        try:
            row = (
                PolicyRelease.objects.filter(policy_version__policy_set__slug=slug)
                .order_by("-policy_version__number")
                .values_list("sha256", "policy_version__number", "envelope")
                .first()
            )
        except Exception as error:
            if remembered is None or not degraded.is_database_outage(error):
                raise
            degraded.noted("database", error)
            return remembered[1]
        release = CachedRelease(f'"{row[0]}"', row[1], bytes(row[2])) if row else None
        _cache_set(key, release, 3600 if _cache_is_shared() else RELEASE_MEMORY_SECONDS)
    with _lock:
        if len(_releases) > MEMORY_ENTRIES:
            _releases.clear()
        _releases[slug] = (now + RELEASE_MEMORY_SECONDS, release)
    return release


def forget_release(slug: str) -> None:
    """Called when a release is published: the next poll reads the new one."""
    _cache_delete(f"feed:release:{slug}")
    _releases.pop(slug, None)


# --- the shared cache, which may not answer -------------------------------------------------------


def _cache_failed(error: Exception) -> None:
    global _cache_down_since
    with _lock:
        if _cache_down_since is None:
            _cache_down_since = time.time()
    degraded.noted("cache", error)
    _start_housekeeping()


def _cache_get(key: str) -> object:
    """The cached value, or ``_MISSING`` when it is absent or the cache does not answer."""
    if _cache_down_since is not None:
        return _MISSING
    try:
        return cache.get(key, _MISSING)
    except Exception as error:  # noqa: BLE001 - whatever the backend raises: read the database instead
        _cache_failed(error)
        return _MISSING


def _cache_set(key: str, value: object, timeout: float) -> None:
    if _cache_down_since is not None:
        return
    try:
        cache.set(key, value, timeout)
    except Exception as error:  # noqa: BLE001
        _cache_failed(error)


def _cache_delete(key: str) -> None:
    # While the cache is down a delete is not tried: the recovery makes it, with what changed elsewhere.
    if _cache_down_since is not None:
        with _lock:
            _pending_deletes.add(key)
        return
    try:
        cache.delete(key)
    except Exception as error:  # noqa: BLE001
        with _lock:
            _pending_deletes.add(key)
        _cache_failed(error)


def _recover_cache() -> bool:
    """When the cache answers again, forget what changed while it did not; True once done.

    Until then the feed keeps reading the database: the cache may still hold a token revoked or a
    release replaced during the outage.
    """
    global _cache_down_since
    since = _cache_down_since
    if since is None:
        return True
    try:
        cache.get("feed:probe")
    except Exception as error:  # noqa: BLE001
        degraded.noted("cache", error)
        return False
    changed_since = dt.datetime.fromtimestamp(since - CACHE_OUTAGE_SLACK_SECONDS, tz=dt.UTC)
    revoked = Router.objects.filter(revoked_at__gte=changed_since).values_list("token_hash", flat=True)
    published = PolicyRelease.objects.filter(issued_at__gte=changed_since).values_list(
        "policy_version__policy_set__slug", flat=True
    )
    keys = {f"feed:token:{token_hash}" for token_hash in revoked}
    keys |= {f"feed:release:{slug}" for slug in published}
    with _lock:
        pending = set(_pending_deletes)
    try:
        cache.delete_many(list(keys | pending))
    except Exception as error:  # noqa: BLE001
        degraded.noted("cache", error)
        return False
    with _lock:
        _cache_down_since = None
        late = _pending_deletes - pending  # deletes this process skipped since the query above
        _pending_deletes.clear()
    for key in late:
        _cache_delete(key)
    degraded.recovered("cache")
    return True


# --- last seen ----------------------------------------------------------------------------------


def _saw(router_id: int) -> None:
    _seen[router_id] = time.time()
    _start_housekeeping()


def flush_last_seen() -> int:
    """Write the remembered "last seen" times in one batch; returns how many routers were written.

    When the database does not answer, the times are kept for the next flush and the error raised.
    """
    global _last_flush
    with _lock:
        seen = dict(_seen)
        _seen.clear()
        _last_flush = time.monotonic()
    if not seen:
        return 0
    try:
        routers = list(Router.objects.filter(pk__in=seen).only("pk", "last_seen_at"))
        for router in routers:
            moment = dt.datetime.fromtimestamp(seen[router.pk], tz=dt.UTC)
            if router.last_seen_at is None or moment > router.last_seen_at:
                router.last_seen_at = moment
        Router.objects.bulk_update(routers, ["last_seen_at"])
    except Exception:
        with _lock:
            for router_id, moment in seen.items():
                _seen[router_id] = max(moment, _seen.get(router_id, 0.0))
        raise
    degraded.recovered("database")
    return len(routers)


def _housekeeping() -> None:
    """This process's feed thread: flush "last seen", and recover from a cache outage."""
    while True:
        time.sleep(HOUSEKEEPING_TICK_SECONDS)
        try:
            if _cache_down_since is not None:
                _recover_cache()
            if time.monotonic() - _last_flush >= settings.STEWARD_FEED_LAST_SEEN_FLUSH_SECONDS:
                flush_last_seen()
        except Exception as error:  # noqa: BLE001 - the thread must outlive an outage
            if degraded.is_database_outage(error):
                degraded.noted("database", error)
            else:
                logger.exception("the feed's housekeeping failed; trying again")
        finally:
            # A connection held between ticks would be one per process that nothing else uses.
            connections.close_all()


def _start_housekeeping() -> None:
    """Start this process's feed thread once (after a fork, the child starts its own)."""
    global _housekeeper
    running = _housekeeper
    if running is not None and running[0] == os.getpid() and running[1].is_alive():
        return
    with _lock:
        running = _housekeeper
        if running is not None and running[0] == os.getpid() and running[1].is_alive():
            return
        thread = threading.Thread(target=_housekeeping, name="steward-feed", daemon=True)
        _housekeeper = (os.getpid(), thread)
    thread.start()


# --- conditional requests (RFC 9110, section 13.1.2) ----------------------------------------------

_ENTITY_TAG = re.compile(r'\s*(?:W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


def none_match(if_none_match: str, etag: str) -> bool:
    """True when ``If-None-Match`` matches ``etag`` (a strong tag, quotes included): ``*``, or any
    tag of the list by weak comparison (``W/"x"`` matches ``"x"``). A malformed header matches nothing."""
    if not if_none_match:
        return False
    if if_none_match == etag:
        return True  # the poll path's usual case, without parsing
    if if_none_match.strip() == "*":
        return True
    position, tags = 0, []
    while position < len(if_none_match):
        match = _ENTITY_TAG.match(if_none_match, position)
        if match is None:
            return False
        tags.append(match.group(1))
        position = match.end()
    return etag in tags


def _conditional(request: HttpRequest, body: bytes, etag: str, content_type: str) -> HttpResponse:
    """304 when ``If-None-Match`` matches; otherwise the body (none for HEAD, with GET's length)."""
    if none_match(request.headers.get("If-None-Match", ""), etag):
        response = HttpResponse(status=304)
    elif request.method == "HEAD":
        response = HttpResponse(content_type=content_type)
        response["Content-Length"] = str(len(body))
    else:
        response = HttpResponse(body, content_type=content_type)
    response["ETag"] = etag
    response["Cache-Control"] = "no-cache"
    return response


# --- views --------------------------------------------------------------------------------------


@csrf_exempt
@require_safe
def bundle(request: HttpRequest, slug: str) -> HttpResponse:
    """The current signed bundle of ``slug``: 200 with the envelope bytes, or 304 when unchanged."""
    identity = _router_for_set(request, slug)
    if isinstance(identity, HttpResponse):
        return identity
    _saw(identity.router_id)
    release = current_release(slug)
    if release is None:
        return JsonResponse({"detail": f"Policy set {slug!r} has no published policy yet."}, status=404)
    response = _conditional(request, release.body, release.etag, "application/vnd.dsse.envelope+json")
    response["X-Policy-Version"] = str(release.version)
    return response


@csrf_exempt
@require_POST
def status(request: HttpRequest, slug: str) -> HttpResponse:
    """A router's ACK (applied version N) or NACK (refused a bundle, with the error)."""
    identity = _router_for_set(request, slug)
    if isinstance(identity, HttpResponse):
        return identity
    if len(request.body) > MAX_STATUS_BYTES:
        return JsonResponse({"detail": f"A status report may be at most {MAX_STATUS_BYTES} bytes."}, status=413)
    try:
        body = parse_json(request.body or b"null")
    except JSONBodyError as error:
        if "detail" in error.errors:
            messages = ["The body must be a JSON object.", *error.errors["detail"]]
            return JsonResponse({"non_field_errors": messages}, status=400)
        return JsonResponse(error.errors, status=400)
    errors = _status_errors(body)
    if errors:
        return JsonResponse(errors, status=400)
    state = body["status"].lower()
    now = timezone.now()
    with transaction.atomic():
        router = Router.objects.select_for_update().get(pk=identity.router_id)
        RouterReport.objects.create(
            router=router,
            status=state,
            version=body.get("version"),
            trust_version=body.get("trust_version"),
            error=body.get("error") or "",
            received_at=now,
        )
        router.last_status = state
        router.last_status_at = now
        router.last_seen_at = now
        if body.get("trust_version") is not None:
            router.trust_version = body["trust_version"]
        router.record_spool(body, now)
        if state == "ack":
            router.applied_version = body.get("version")
            router.last_error = ""
        else:
            router.last_error = body.get("error") or "no error detail given"
            router.last_nack_at = now
            if body.get("version") is not None:
                router.applied_version = body["version"]
        router.save()
    return JsonResponse({"received": state, "router": router.name})


def _status_errors(body: object) -> dict[str, list[str]]:
    if not isinstance(body, dict):
        return {"non_field_errors": ["The body must be a JSON object."]}
    errors: dict[str, list[str]] = {}
    if str(body.get("status", "")).lower() not in ("ack", "nack"):
        errors["status"] = ["Must be 'ack' or 'nack'."]
    for field in ("version", "trust_version"):
        value = body.get(field)
        _, most = integer_range(RouterReport, field)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most):
            errors[field] = [f"Must be a non-negative integer of at most {most}, what the column holds (or null)."]
    if str(body.get("status", "")).lower() == "ack" and body.get("version") is None:
        errors["version"] = ["An ACK names the version applied."]
    for field in SPOOL_FIELDS:
        value = body.get(field)
        # The spool's age is kept as the time of its oldest record; a 32-bit count of seconds is 68 years.
        _, most = integer_range(Router, "spool_records" if field == "spool_age_seconds" else field)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most):
            errors[field] = [f"Must be a non-negative integer of at most {most} (or absent)."]
    error = body.get("error")
    if error is not None and not isinstance(error, str):
        errors["error"] = ["Must be a string."]
    return errors


def _root_response(root: TrustRoot | None, request: HttpRequest) -> HttpResponse:
    if root is None:
        return JsonResponse({"detail": "No trust root has been published."}, status=404)
    body = bytes(root.document)
    response = _conditional(request, body, f'"{hashlib.sha256(body).hexdigest()}"', "application/json")
    response["X-Trust-Version"] = str(root.version)
    return response


@require_safe
def trust_root(request: HttpRequest) -> HttpResponse:
    """The latest trust root (public: it holds only public keys)."""
    return _root_response(TrustRoot.objects.order_by("-version").first(), request)


@require_safe
def trust_root_version(request: HttpRequest, version: int) -> HttpResponse:
    """Trust root version N: every version stays published so routers can walk N → N+1."""
    return _root_response(TrustRoot.objects.filter(version=version).first(), request)


def register_router(
    policy_set: PolicySet, name: str, by, description: str = "", expires_in_days: int | None = None
) -> tuple[Router, str]:
    """Register a router for ``policy_set``; returns it with its token, which is shown only once.

    ``expires_in_days`` bounds the token's life (None: until revoked).
    """
    if by is not None and not by.has_perm("portfolio.manage_router"):
        raise PermissionDenied("Only governance officers can register routers.")
    raw = new_router_token()
    now = timezone.now()
    router = Router(
        name=name,
        policy_set=policy_set,
        token_hash=hash_router_token(raw),
        token_prefix=raw[:10],
        description=description,
        created_by=by,
        created_at=now,
        token_expires_at=now + dt.timedelta(days=expires_in_days) if expires_in_days else None,
    )
    router.full_clean()
    router._history_user = by
    with transaction.atomic():
        router.save()
        audit.record(
            "router.token_issue",
            actor=by,
            obj=router,
            after={
                "policy_set": policy_set.slug,
                "token_prefix": router.token_prefix,
                "token_expires_at": router.token_expires_at,
            },
        )
    return router, raw


def revoke_router(router: Router, by) -> None:
    if by is not None and not by.has_perm("portfolio.manage_router"):
        raise PermissionDenied("Only governance officers can revoke router tokens.")
    if router.revoked_at is not None:
        raise ValidationError({"router": [f"{router.name}'s token is already revoked."]})
    router.revoked_at = timezone.now()
    router.revoked_by = by
    router._history_user = by
    router._change_reason = "token revoked"
    with transaction.atomic():
        router.save()
        audit.record("router.token_revoke", actor=by, obj=router, before={"active": True}, after={"active": False})
    transaction.on_commit(lambda: forget_token(router.token_hash))


def _stale_before(now: dt.datetime) -> dt.datetime:
    """Routers last seen before this moment count as stale."""
    return now - dt.timedelta(seconds=settings.STEWARD_ROUTER_STALE_SECONDS)


def stale_router_count(now: dt.datetime | None = None) -> int:
    """Active routers not seen recently, counted in the database (the dashboard's figure)."""
    now = now or timezone.now()
    before = _stale_before(now)
    return (
        Router.objects.filter(revoked_at__isnull=True)
        .filter(Q(token_expires_at__isnull=True) | Q(token_expires_at__gt=now))
        .filter(Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=before))
        .count()
    )


def fleet_rows(now=None) -> list[dict]:
    """Every router with how far behind its set's current version it runs and whether it is stale."""
    before = _stale_before(now or timezone.now())
    current = dict(PolicyVersion.objects.values("policy_set").annotate(n=Max("number")).values_list("policy_set", "n"))
    rows = []
    for router in Router.objects.select_related("policy_set").order_by("policy_set__slug", "name"):
        latest = current.get(router.policy_set_id)
        behind = latest - router.applied_version if latest and router.applied_version else None
        seen = router.last_seen_at
        rows.append(
            {
                "router": router,
                "current": latest,
                "behind": behind,
                "stale": router.is_active and (seen is None or seen < before),
                "never_applied": router.is_active and router.applied_version is None,
            }
        )
    return rows
