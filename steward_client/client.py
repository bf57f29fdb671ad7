"""PolicyClient: pull the signed policy, verify it, keep the last good one, report ACK or NACK.

One update takes the time once (a fixed start time for every check), fetches the bundle with
``If-None-Match``, walks the trust root forward when the policy names a newer one, verifies the
envelope, refuses rollbacks, persists the exact bytes atomically, and reports back. On any
failure the policy in force stays in force.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .policy import Policy
from .state import StateDir
from .verify import (
    DEFAULT_CLOCK_SLACK,
    MAX_ENVELOPE_BYTES,
    MAX_ROOT_BYTES,
    RollbackError,
    TrustRoot,
    VerificationError,
    VerifiedPolicy,
    load_initial_root,
    open_envelope,
    verify_next_root,
)

USER_AGENT = "steward-client/1"
MAX_ROOT_WALK = 1000


class ApplyError(VerificationError):
    """A verified policy the router could not put in force (``on_apply`` raised)."""


class FetchError(Exception):
    """The server could not be reached or answered something unusable."""

    def __init__(self, message: str, *, reachable: bool = True) -> None:
        super().__init__(message)
        self.reachable = reachable  # whether a NACK has a chance of reaching Steward


@dataclass
class UpdateResult:
    """What one update did: ``applied``, ``unchanged`` or ``failed``, and the policy in force after it."""

    outcome: str
    policy: Policy | None
    reason: str = ""
    alarm: bool = False

    @property
    def in_force(self) -> bool:
        return self.policy is not None


class PolicyClient:
    """The router side of the feed for one policy set.

    ``trust_root`` is the root shipped with the router (bytes or a path), trusted on first use;
    newer roots are accepted only through the N → N+1 walk.
    """

    def __init__(
        self,
        url: str,
        policy_set: str,
        token: str,
        trust_root: bytes | str | Path,
        state_dir: str | Path,
        *,
        timeout: float = 10.0,
        clock_slack: dt.timedelta = DEFAULT_CLOCK_SLACK,
        max_bytes: int = MAX_ENVELOPE_BYTES,
        clock: Callable[[], dt.datetime] | None = None,
        report: bool = True,
        on_apply: Callable[[Policy], None] | None = None,
        status_extra: Callable[[], dict] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.policy_set = policy_set
        self.token = token.strip()
        self.state = StateDir(state_dir)
        self.timeout = timeout
        self.clock_slack = clock_slack
        self.max_bytes = max_bytes
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.report = report
        # Called with each newly verified policy before it is ACKed (and with the last good one at
        # start); raising refuses it: a NACK carries the reason and the policy in force stays.
        self.on_apply = on_apply
        self.status_extra = status_extra  # extra members for every status report (the spool's state)
        shipped = trust_root if isinstance(trust_root, bytes) else Path(trust_root).read_bytes()
        self.root = self._initial_root(shipped)
        self._policy: VerifiedPolicy | None = None
        self._etag: str | None = None  # the ETag of the policy in force, not of what is on disk
        self._load_last_good()

    # --- state ---------------------------------------------------------------------------------

    def _initial_root(self, shipped: bytes) -> TrustRoot:
        """The shipped root, walked forward through the roots an earlier run saved, each verified again."""
        root = load_initial_root(shipped)
        while (saved := self.state.root_version(root.version + 1)) is not None:
            try:
                root = verify_next_root(root, saved)
            except VerificationError:
                break  # a damaged or planted file: stop at the last root that verifies
        return root

    def _load_last_good(self) -> None:
        envelope = self.state.envelope
        if not envelope:
            return
        try:
            verified = open_envelope(
                envelope,
                self.root,
                self.policy_set,
                self.clock(),
                self.clock_slack,
                self.max_bytes,
                check_times=False,
            )
        except VerificationError:
            return  # a damaged state file is never trusted
        if self.on_apply is not None:
            try:
                self.on_apply(Policy(verified.payload))
            except Exception:  # noqa: BLE001 - the next update fetches it again and NACKs the reason
                return
        self._policy, self._etag = verified, self.state.etag

    @property
    def policy(self) -> Policy | None:
        """The policy in force: the last good one, unless it has expired."""
        if self._policy is None or self._expired(self._policy, self.clock()):
            return None
        return Policy(self._policy.payload)

    @property
    def version(self) -> int | None:
        return self._policy.version if self._policy else None

    def _expired(self, policy: VerifiedPolicy, now: dt.datetime) -> bool:
        return policy.expires < now - self.clock_slack

    # --- HTTP ----------------------------------------------------------------------------------

    def _request(
        self, path: str, *, data: bytes | None = None, headers: dict | None = None, limit: int
    ) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method="POST" if data is not None else "GET",
            headers={"User-Agent": USER_AGENT, "Authorization": f"Bearer {self.token}", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - the configured URL
                body = response.read(limit + 1)
                status, response_headers = response.status, {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as error:
            body = error.read(64 * 1024)
            status, response_headers = error.code, {k.lower(): v for k, v in error.headers.items()}
            if status != 304:
                detail = _detail(body)
                raise FetchError(f"{self.url + path} answered {status}{': ' + detail if detail else ''}") from None
        except http.client.IncompleteRead:
            raise FetchError(f"{self.url + path}: truncated response") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            raise FetchError(f"cannot reach {self.url}: {reason}", reachable=False) from None
        if len(body) > limit:
            raise FetchError(f"{self.url + path}: response over the size cap of {limit} bytes")
        # read(n) returns short, without IncompleteRead, when the server closes early.
        declared = response_headers.get("content-length", "")
        if status != 304 and declared.isdigit() and len(body) < int(declared):
            raise FetchError(f"{self.url + path}: truncated response ({len(body)} of {declared} bytes)")
        return status, response_headers, body

    def _fetch_root(self, version: int) -> bytes:
        status, _, body = self._request(f"/api/v1/trust/{version}.root.json", limit=MAX_ROOT_BYTES)
        if status != 200:
            raise FetchError(f"trust root {version}: HTTP {status}")
        return body

    def send_status(self, status: str, version: int | None, error: str = "") -> None:
        """Report ACK or NACK; a report that cannot be delivered is not an error of the policy."""
        if not self.report:
            return
        report = {"status": status, "version": version, "trust_version": self.root.version, "error": error[:2000]}
        if self.status_extra is not None:
            report.update(self.status_extra())
        body = json.dumps(report).encode()
        try:
            self._request(
                f"/api/v1/policy-sets/{self.policy_set}/status",
                data=body,
                headers={"Content-Type": "application/json"},
                limit=64 * 1024,
            )
        except FetchError:
            pass

    # --- one update ----------------------------------------------------------------------------

    def update(self) -> UpdateResult:
        """Pull, verify and apply once. Never raises for a bad bundle or an unreachable server."""
        now = self.clock()  # the fixed start time of this update
        try:
            result = self._update(now)
        except RollbackError as error:
            self.send_status("nack", self.version, f"rollback refused: {error}")
            return UpdateResult("failed", self.policy, f"ALARM rollback refused: {error}", alarm=True)
        except (VerificationError, FetchError) as error:
            # Any failure is NACKed (an oversized or truncated answer too), unless Steward is unreachable.
            if isinstance(error, VerificationError) or error.reachable:
                self.send_status("nack", self.version, str(error))
            return UpdateResult("failed", self.policy, str(error))
        return result

    def _update(self, now: dt.datetime) -> UpdateResult:
        headers = {"Accept": "application/vnd.dsse.envelope+json"}
        if self._etag and self._policy is not None:
            headers["If-None-Match"] = self._etag
        status, response_headers, body = self._request(
            f"/api/v1/policy-sets/{self.policy_set}/bundle", headers=headers, limit=self.max_bytes
        )
        if status == 304:
            if self._policy is None or self._expired(self._policy, now):
                raise VerificationError(f"the policy in force (v{self.version}) has expired and none newer is offered")
            return UpdateResult("unchanged", self.policy)
        if status != 200:
            raise FetchError(f"bundle: HTTP {status}")
        served_etag = response_headers.get("etag")
        if served_etag and served_etag.strip('"') != hashlib.sha256(body).hexdigest():
            raise VerificationError("bundle does not match its ETag (truncated or altered in transit)")
        verified = self._verify(body, now)
        if self._policy is not None and verified.version < self._policy.version:
            raise RollbackError(f"offered v{verified.version} is older than v{self._policy.version} in force")
        if self._policy is not None and verified.version == self._policy.version:
            if verified.payload_bytes != self._policy.payload_bytes:
                raise VerificationError(f"two different payloads claim version {verified.version}")
            self.state.save_policy(body, served_etag, self._info(verified, now))
            self._etag = served_etag
            return UpdateResult("unchanged", self.policy)
        previous = self.state.snapshot()
        self.state.save_policy(body, served_etag, self._info(verified, now))
        if self.on_apply is not None:
            # After persisting, so that a reload command reads the new files; undone when it fails.
            try:
                self.on_apply(Policy(verified.payload))
            except Exception as error:  # noqa: BLE001 - whatever the router could not do is reported
                self.state.restore(previous)
                raise ApplyError(f"could not apply v{verified.version}: {error}") from error
        self._policy, self._etag = verified, served_etag
        self.send_status("ack", verified.version)
        return UpdateResult("applied", self.policy)

    def _verify(self, body: bytes, now: dt.datetime) -> VerifiedPolicy:
        """Open the envelope, first walking the trust root forward when the policy needs a newer one."""
        try:
            verified = open_envelope(body, self.root, self.policy_set, now, self.clock_slack, self.max_bytes)
        except VerificationError:
            verified = None
        # Learn the trust version the payload claims (unverified) to know whether to walk the root.
        claimed = _claimed_trust_version(body)
        if claimed is not None and claimed > self.root.version:
            self._walk_root(claimed)
            verified = None
        if verified is None:
            verified = open_envelope(body, self.root, self.policy_set, now, self.clock_slack, self.max_bytes)
        if verified.trust_version > self.root.version:
            raise VerificationError(f"policy needs trust root {verified.trust_version}, have {self.root.version}")
        return verified

    def _walk_root(self, target: int) -> None:
        root = self.root
        steps = 0
        while root.version < target:
            steps += 1
            if steps > MAX_ROOT_WALK:
                raise VerificationError("trust root walk too long")
            data = self._fetch_root(root.version + 1)
            root = verify_next_root(root, data)
            self.state.save_root(root.version, data)
        self.root = root

    def _info(self, verified: VerifiedPolicy, now: dt.datetime) -> dict:
        return {
            "policy_set": verified.policy_set,
            "version": verified.version,
            "trust_version": self.root.version,
            "issued_at": verified.payload["issued_at"],
            "expires": verified.payload["expires"],
            "verified_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    # --- polling -------------------------------------------------------------------------------

    def run(
        self,
        interval: float = 30.0,
        *,
        max_backoff: float = 600.0,
        iterations: int | None = None,
        on_result: Callable[[UpdateResult], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Poll forever (or ``iterations`` times) with jitter; back off exponentially while failing."""
        failures = 0
        count = 0
        while iterations is None or count < iterations:
            result = self.update()
            count += 1
            if on_result:
                on_result(result)
            failures = failures + 1 if result.outcome == "failed" else 0
            delay = min(interval * (2 ** min(failures, 16)), max_backoff) if failures else interval
            if iterations is None or count < iterations:
                sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not cryptography


def _claimed_trust_version(envelope: bytes) -> int | None:
    try:
        payload = json.loads(base64.b64decode(json.loads(envelope)["payload"], validate=True))
        value = payload.get("trust_version")
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    except Exception:  # noqa: BLE001 - a malformed bundle is refused by the verification that follows
        return None


def _detail(body: bytes) -> str:
    try:
        return str(json.loads(body).get("detail", ""))[:200]
    except Exception:  # noqa: BLE001
        return ""
