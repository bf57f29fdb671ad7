"""DecisionReporter: send decision records to Steward in batches, spooling them to disk while it cannot be reached.

A router calls ``report(record)`` once per request; that only appends to a queue in memory. A
background thread sends batches (up to ``batch_size`` records, or whatever arrived within
``flush_interval`` seconds) to ``POST /api/v1/decisions``. A batch that cannot be delivered
(Steward unreachable, a 5xx, 401/403/429) is written to the spool directory, one file per batch,
and delivered later, oldest first, with jittered exponential backoff. Steward stores each
request id once per router, so a batch that is sent twice (a crash between sending and removing
its spool file) is still stored once.

Several processes (a proxy's workers) may share one spool directory: a process claims a spool
file by renaming it before sending it, and files claimed by a process that has died are put back.
The spool is bounded (``max_spool_bytes``); a batch that does not fit is dropped and counted, and
the count, with the spool's size and age, goes into the router's status reports.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .state import write_atomically

logger = logging.getLogger("steward_client.reporter")

USER_AGENT = "steward-client/1"
MAX_BATCH = 1000  # what POST /api/v1/decisions accepts at once
DEFAULT_MAX_SPOOL_BYTES = 256 * 1024 * 1024
# Answers after which sending the same batch again may succeed; any other 4xx never will.
RETRY_STATUSES = {401, 403, 408, 425, 429}


@dataclass(frozen=True)
class SpoolState:
    """What waits on disk: batches and records not yet delivered, their bytes and the oldest's age."""

    batches: int
    records: int
    bytes: int
    oldest_at: dt.datetime | None
    dropped: int

    def as_status(self, now: dt.datetime | None = None) -> dict:
        """The members a status report carries (see docs/policy-feed.md)."""
        now = now or dt.datetime.now(dt.UTC)
        age = int((now - self.oldest_at).total_seconds()) if self.oldest_at else 0
        return {
            "spool_records": self.records,
            "spool_bytes": self.bytes,
            "spool_age_seconds": max(age, 0),
            "spool_dropped": self.dropped,
        }


class DeliveryError(Exception):
    """A batch Steward did not take; ``retry`` says whether sending it again may succeed."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class Spool:
    """Batches on disk, one JSON file each: ``<created ns>-<pid>-<seq>-<records>.json``."""

    STATE_SECONDS = 1.0  # how long a count of the directory is reused: a long outage leaves many files

    def __init__(self, path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_SPOOL_BYTES) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.dropped = 0
        self._sequence = itertools.count()
        self._lock = threading.Lock()
        self._counted: tuple[float, SpoolState] | None = None

    def _files(self) -> list[Path]:
        return sorted(path for path in self.path.glob("*.json") if not path.name.startswith("."))

    def put(self, body: bytes, count: int) -> bool:
        """Keep one batch; False (and counted as dropped) when the spool is full."""
        with self._lock:
            if self.state().bytes + len(body) > self.max_bytes:
                self.dropped += count
                logger.error("decision spool %s is full: %d records dropped", self.path, count)
                return False
            name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._sequence):06d}-{count}.json"
            write_atomically(self.path / name, body)
            self._counted = None
            return True

    def claim(self) -> Path | None:
        """The oldest unclaimed batch, renamed so that no other process sends it too."""
        for path in self._files():
            claimed = path.with_name(f"{path.name}.{os.getpid()}.sending")
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                continue  # another process took it
            return claimed
        return None

    def release(self, claimed: Path) -> None:
        """Give back a batch that could not be sent."""
        os.rename(claimed, claimed.with_name(claimed.name.rsplit(".", 2)[0]))

    def recover(self) -> int:
        """Put back batches claimed by processes that no longer run; returns how many."""
        recovered = 0
        for claimed in self.path.glob("*.json.*.sending"):
            pid = int(claimed.name.rsplit(".", 2)[1])
            if pid != os.getpid() and _alive(pid):
                continue
            try:
                self.release(claimed)
                recovered += 1
            except FileNotFoundError:
                pass
        return recovered

    def state(self) -> SpoolState:
        """What the spool holds (counted at most once a second, and again after each put)."""
        counted = self._counted
        if counted is not None and time.monotonic() - counted[0] < self.STATE_SECONDS:
            return SpoolState(*dataclasses.astuple(counted[1])[:4], self.dropped)
        state = self._count()
        self._counted = (time.monotonic(), state)
        return state

    def forget_count(self) -> None:
        self._counted = None

    def _count(self) -> SpoolState:
        batches = records = size = 0
        oldest: int | None = None
        for path in itertools.chain(self.path.glob("*.json"), self.path.glob("*.json.*.sending")):
            if path.name.startswith("."):
                continue  # being written
            try:
                size += path.stat().st_size
            except FileNotFoundError:
                continue
            created, _, _, count = path.name.split(".", 1)[0].split("-")
            batches += 1
            records += int(count)
            oldest = int(created) if oldest is None else min(oldest, int(created))
        oldest_at = dt.datetime.fromtimestamp(oldest / 1e9, tz=dt.UTC) if oldest else None
        return SpoolState(batches, records, size, oldest_at, self.dropped)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DecisionReporter:
    """Report decision records to Steward without ever blocking the caller or losing a record.

    ``url`` is Steward's base URL, ``token`` the router token, ``spool_dir`` where undelivered
    batches wait. ``report`` is safe to call from any thread; ``flush`` waits until everything
    reported so far is delivered or spooled; ``close`` flushes and stops the thread.
    """

    def __init__(
        self,
        url: str,
        token: str,
        spool_dir: str | os.PathLike,
        *,
        batch_size: int = MAX_BATCH,
        flush_interval: float = 1.0,
        max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES,
        timeout: float = 10.0,
        retry_initial: float = 1.0,
        retry_max: float = 30.0,
        max_queue: int = 100_000,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/api/v1/decisions"
        self.token = token.strip()
        self.spool = Spool(spool_dir, max_spool_bytes)
        self.batch_size = min(batch_size, MAX_BATCH)
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.max_queue = max_queue
        self.delivered = 0  # records Steward accepted or already had, by this process
        self.rejected = 0  # records Steward refused for good (their errors are logged)
        self._queue: deque[dict] = deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self._failures = 0
        self._retry_at = 0.0
        self.spool.recover()
        self._thread = threading.Thread(target=self._run, name="steward-decisions", daemon=True)
        self._thread.start()

    # --- the caller's side ---------------------------------------------------------------------

    def report(self, record: dict) -> None:
        """Queue one decision record (see docs/policy-feed.md for its fields)."""
        if len(self._queue) >= self.max_queue:
            # Memory is bounded too: spill what is queued to the spool from the caller's thread.
            self._spill()
        self._idle.clear()
        self._queue.append(record)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record reported so far is delivered or spooled; True if that happened in time."""
        self._idle.clear()
        self._wake.set()
        return self._idle.wait(timeout)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until the queue and the spool are both empty (delivered), or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._queue and self.spool.state().batches == 0:
                return True
            self._retry_at = 0.0
            self._wake.set()
            time.sleep(0.05)
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Deliver (or spool) what is queued, then stop."""
        self.flush(timeout)
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)

    def spool_state(self) -> SpoolState:
        return self.spool.state()

    # --- the background thread -----------------------------------------------------------------

    def _take(self) -> list[dict]:
        batch = []
        while self._queue and len(batch) < self.batch_size:
            batch.append(self._queue.popleft())
        return batch

    def _spill(self) -> None:
        while batch := self._take():
            self.spool.put(_encode(batch), len(batch))

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self._cycle()
            except Exception:  # noqa: BLE001 - the thread must outlive any one bad batch
                logger.exception("decision reporting failed; will retry")
            if not self._queue:
                self._idle.set()

    def _cycle(self) -> None:
        while self._queue:
            batch = self._take()
            body = _encode(batch)
            if self.spool.state().batches or time.monotonic() < self._retry_at:
                # Older batches wait on disk, or Steward was just unreachable: keep the order, spool this one.
                self.spool.put(body, len(batch))
                continue
            if not self._deliver(body, len(batch)):
                self.spool.put(body, len(batch))
        self._drain_spool()

    def _drain_spool(self) -> None:
        while time.monotonic() >= self._retry_at:
            claimed = self.spool.claim()
            if claimed is None:
                return
            try:
                body = claimed.read_bytes()
            except FileNotFoundError:
                continue
            count = int(claimed.name.split(".", 1)[0].rsplit("-", 1)[1])
            if self._deliver(body, count):
                claimed.unlink(missing_ok=True)
                self.spool.forget_count()
            else:
                self.spool.release(claimed)
                return

    def _deliver(self, body: bytes, count: int) -> bool:
        """Send one batch; True when Steward has it (or refused it for good), False to keep it."""
        try:
            answer = self._post(body)
        except DeliveryError as error:
            if error.retry:
                self._failures += 1
                delay = min(self.retry_initial * 2 ** (self._failures - 1), self.retry_max)
                self._retry_at = time.monotonic() + delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter
                logger.warning("decisions not delivered (%s); %d records kept, retry in %.1fs", error, count, delay)
                return False
            logger.error("Steward refused a batch of %d decision records for good: %s", count, error)
            self.rejected += count
            return True
        self._failures = 0
        self._retry_at = 0.0
        self.delivered += answer.get("accepted", 0) + answer.get("duplicates", 0)
        if answer.get("errors"):
            self.rejected += len(answer["errors"])
            logger.error("Steward rejected %d decision records: %s", len(answer["errors"]), answer["errors"][:3])
        return True

    def _post(self, body: bytes) -> dict:
        request = urllib.request.Request(
            self.endpoint,
            data=body,
            method="POST",
            headers={
                "User-Agent": USER_AGENT,
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - the configured URL
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            detail = error.read(2000).decode("utf-8", "replace")
            retry = error.code >= 500 or error.code in RETRY_STATUSES
            raise DeliveryError(f"HTTP {error.code}: {detail[:200]}", retry=retry) from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise DeliveryError(
                f"cannot reach {self.endpoint}: {getattr(error, 'reason', error)}", retry=True
            ) from None


def _encode(batch: list[dict]) -> bytes:
    return json.dumps({"records": batch}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def new_request_id() -> str:
    """A request id for a router that has none of its own."""
    return str(uuid.uuid4())
