"""Benchmark: the policy feed's poll path under gunicorn, against a bare Django view in the same run.

One run creates a throwaway PostgreSQL database, migrates it, runs ``seed_demo`` (which publishes the
signed production and staging releases), registers routers with ``create_router_token`` and starts
Steward under gunicorn with production settings (DEBUG off, PostgreSQL, the Django cache on Redis).
The same server also answers ``/api/v1/bench/bare``: a bare view that returns the production envelope with
the same headers, from a URLconf the bench writes into a temporary directory (``steward.urls`` plus
that one path), so it goes through the same middleware. Nothing in the app is changed.

A second process loads the server (``wrk`` where installed, otherwise a Python load generator) and
the bench prints requests/s and p99 for

    (a) the 304 path   GET /api/v1/policy-sets/production/bundle, router token, matching If-None-Match
    (b) the 200 path   the same without If-None-Match
    (c) bare 200       /api/v1/bench/bare, the same bytes and headers
    (d) bare 304       /api/v1/bench/bare with a matching If-None-Match (the fair floor of the 304 path)

and the ratios (a)/(d) (target >= 0.70) and (b)/(c) (target >= 0.60). The four cases take turns in
1-second slices (10 turns by default), and each ratio is the median of the turns' ratios, so a burst
of other load on a shared machine spoils a turn rather than the figure; gunicorn's CPU time per
request is printed beside them as a check that other load sways much less. Then (e): 10,000 routers
polling every 30 s is 333 polls/s; a fixed-rate run spread over many router tokens on the 304 path
reports the rate achieved and p99 (target: held, p99 < 50 ms).

    .venv/bin/python bench/policy_feed.py
    .venv/bin/python bench/policy_feed.py --database-url postgres://postgres@127.0.0.1:5432/steward_feedbench \\
        --workers 2 --worker-class sync --duration 10 --slice 1 --loadgen auto

gunicorn runs ``--workers 2 --worker-class sync`` by default, one process per core of this 2-core
machine. A sync worker accepts a connection only when it is free, so the load always spreads over
both cores, and routers poll every 30 s on a new connection anyway (no keep-alive to win). With
gthread workers and keep-alive, one worker often accepts all of a load generator's connections and
the other core idles for the whole measurement: requests/s then jump between one and two cores'
worth from one slice to the next. sync also cost less CPU per poll in the fixed-rate run (about
0.9 ms against 1.0-1.4 ms for gthread with 4 threads).

Needs PostgreSQL on 127.0.0.1 (user postgres, trust auth) and Redis on 127.0.0.1:6379. The database
is created and dropped by the bench (it refuses to drop one that existed before unless its name
contains "bench"); the cache keys live under a per-run prefix in Redis database 11 and are deleted
at the end. Every load loop is bounded in count and time and targets only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
POLICY_SET = "production"
BUNDLE_PATH = f"/api/v1/policy-sets/{POLICY_SET}/bundle"
# Under /api/v1/ like the bundle: Steward's LoginRequiredMiddleware skips the API prefix, whereas on
# any other path Django's login check reads request.user (a session lookup, and "Vary: Cookie").
BARE_PATH = "/api/v1/bench/bare"

TARGET_304 = 0.70
TARGET_200 = 0.60
TARGET_P99_MS = 50.0
BUSY_SHARE = 0.10  # other processes taking more of the CPU than this make requests/s noisy: say so
HELD_FRACTION = 0.97  # the fixed-rate run "holds" when it achieves at least this share of the rate

# Written into the temporary directory: settings that only change the URLconf and the cache prefix.
SETTINGS_MODULE = '''\
"""Steward's production settings, with the bench URLconf and a per-run cache key prefix."""

from steward.settings import *  # noqa: F403

ROOT_URLCONF = "feedbench_urls"
CACHES["default"]["KEY_PREFIX"] = {prefix!r}  # noqa: F405
'''

URLS_MODULE = '''\
"""steward.urls plus one bare view returning the production envelope with the bundle's headers."""

import json
from pathlib import Path

from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from steward.urls import handler403, handler404, handler500  # noqa: F401

_HERE = Path(__file__).resolve().parent
ENVELOPE_BYTES = (_HERE / "bundle.bin").read_bytes()
_META = json.loads((_HERE / "bundle.json").read_text())
ETAG = _META["etag"]
HEADERS = {{"ETag": ETAG, "X-Policy-Version": str(_META["version"]), "Cache-Control": "no-cache"}}
HEADERS_200 = {{"Content-Type": "application/vnd.dsse.envelope+json", **HEADERS}}


@csrf_exempt
@login_not_required
def bare(request):
    if request.META.get("HTTP_IF_NONE_MATCH") == ETAG:
        return HttpResponse(status=304, headers=HEADERS)
    return HttpResponse(ENVELOPE_BYTES, headers=HEADERS_200)


urlpatterns = [path({bare_path!r}, bare), path("", include("steward.urls"))]
'''

# Run with the bench settings: exports the envelope the server will serve and registers routers
# through ``create_router_token`` (in one process: one Django start-up instead of one per router).
SETUP_SCRIPT = """\
import io, json, sys
from pathlib import Path

import django

django.setup()

from django.core.management import call_command

from django.conf import settings

from portfolio.models import PolicyRelease

if settings.DEBUG or not settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
    sys.exit(f"not production settings: DEBUG={{settings.DEBUG}}, cache {{settings.CACHES['default']['BACKEND']}}")
out = Path(sys.argv[1])
count = int(sys.argv[2])
release = (
    PolicyRelease.objects.filter(policy_version__policy_set__slug={policy_set!r})
    .order_by("-policy_version__number")
    .select_related("policy_version")
    .first()
)
if release is None:
    sys.exit("seed_demo published no {policy_set} release")
(out / "bundle.bin").write_bytes(bytes(release.envelope))
meta = {{"etag": '"' + release.sha256 + '"', "version": release.policy_version.number}}
(out / "bundle.json").write_text(json.dumps(meta))
tokens = []
for number in range(1, count + 1):
    buffer, errors = io.StringIO(), io.StringIO()
    call_command(
        "create_router_token", policy_set={policy_set!r}, name=f"bench-{{number}}", stdout=buffer, stderr=errors
    )
    tokens.append(buffer.getvalue().strip())
(out / "tokens.json").write_text(json.dumps(tokens))
print(f"exported {{len(bytes(release.envelope))}} envelope bytes (v{{meta['version']}}), {{len(tokens)}} router tokens")
"""


class BenchError(RuntimeError):
    pass


# --- measurements -------------------------------------------------------------------------------


@dataclass
class Slice:
    """One load-generator run against one case."""

    requests: int
    elapsed: float
    p50_ms: float
    p99_ms: float
    errors: int
    bytes_per_request: float | None = None
    latencies: list[float] | None = None  # seconds, when the generator keeps them (Python)
    server_cpu: float = 0.0  # CPU seconds gunicorn (master and workers) used during the slice
    other_cpu: float = 0.0  # CPU seconds that neither gunicorn nor the load generator used (other load)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0


@dataclass
class Case:
    key: str
    label: str
    path: str
    headers: dict[str, str]
    expect: int
    slices: list[Slice] = field(default_factory=list)

    @property
    def rps(self) -> float:
        """Requests over time, all slices together."""
        return sum(s.requests for s in self.slices) / sum(s.elapsed for s in self.slices)

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.slices)

    @property
    def cpu_us_per_request(self) -> float:
        """gunicorn's CPU time per request: what a request costs, much less swayed by other load than requests/s."""
        return sum(s.server_cpu for s in self.slices) / sum(s.requests for s in self.slices) * 1e6

    def latency_ms(self, fraction: float) -> float:
        """Exact over every request when the generator kept latencies, else the median of the slices'."""
        if all(s.latencies is not None for s in self.slices):
            return percentile([value for s in self.slices for value in s.latencies], fraction) * 1000
        per_slice = [s.p99_ms if fraction == 0.99 else s.p50_ms for s in self.slices]
        return statistics.median(per_slice)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# --- wrk ----------------------------------------------------------------------------------------

_UNITS_TIME = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_UNITS_SIZE = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def find_wrk(allow_install: bool) -> str | None:
    found = shutil.which("wrk")
    if found or not allow_install:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    print("wrk is missing; trying `apt-get install -y wrk` once …", flush=True)
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return shutil.which("wrk")


def run_wrk(wrk: str, port: int, case: Case, duration: float, connections: int, threads: int) -> Slice:
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "--timeout", "5s"]
    for name, value in case.headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://{HOST}:{port}{case.path}")
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=False)
    text = done.stdout
    summary = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", text)
    if done.returncode != 0 or summary is None or "Requests/sec" not in text:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip() or text.strip()}")

    def latency(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        return float(match.group(1)) * _UNITS_TIME[match.group(2)] if match else math.nan

    requests = int(summary.group(1))
    elapsed = float(summary.group(2)) * _UNITS_TIME[summary.group(3)] / 1000
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", text)
    rps = requests / elapsed if elapsed else 0.0
    per_request = float(transfer.group(1)) * _UNITS_SIZE[transfer.group(2)] / rps if transfer and rps else None
    errors = 0
    non_ok = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if non_ok:
        errors += int(non_ok.group(1))
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sockets:
        # gunicorn's sync workers close every connection after answering; wrk counts a close it
        # sees while reading as a read error although the response was complete. Only connect,
        # write and timeout errors are failures.
        errors += int(sockets.group(1)) + int(sockets.group(3)) + int(sockets.group(4))
    return Slice(requests, elapsed, latency("50"), latency("99"), errors, per_request)


# --- Python load generator (closed loop: as fast as the server answers) --------------------------


def _closed_loop_process(port: int, path: str, headers: dict, expect: int, threads: int, duration: float, cap: int):
    deadline = time.perf_counter() + duration
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def loop() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        mine: list[float] = []
        failures = 0
        for _ in range(cap):  # bounded in count as well as in time
            if time.perf_counter() >= deadline:
                break
            started = time.perf_counter()
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                response.read()
                if response.will_close:
                    connection.close()
                ok = response.status == expect
            except (OSError, http.client.HTTPException):
                connection.close()
                ok = False
            mine.append(time.perf_counter() - started)
            failures += not ok
        connection.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failures

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(duration + 30)
    return latencies, errors[0], time.perf_counter() - started


def _child_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends the pool


def run_in_processes(function, args: list[tuple], timeout: float) -> list:
    """``function(*each)`` in its own load-generator process; a pool that fails is terminated."""
    pool = multiprocessing.get_context("fork").Pool(len(args), initializer=_child_signals)
    try:
        results = pool.starmap_async(function, args).get(timeout=timeout)
    except BaseException:
        pool.terminate()
        raise
    else:
        pool.close()
    finally:
        pool.join()
    return results


def run_python_closed(port: int, case: Case, duration: float, processes: int, threads: int) -> Slice:
    cap = 200_000
    args = [(port, case.path, case.headers, case.expect, threads, duration, cap)] * processes
    results = run_in_processes(_closed_loop_process, args, duration + 60)
    latencies = [value for result in results for value in result[0]]
    return Slice(
        requests=len(latencies),
        elapsed=max(result[2] for result in results),
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        errors=sum(result[1] for result in results),
        latencies=latencies,
    )


# --- Python load generator (open loop: a fixed rate, like a fleet of routers) --------------------


def _fixed_rate_process(
    port: int, routers: list[tuple[str, float, str]], interval: float, start_at: float, duration: float
):
    """Each router polls every ``interval`` seconds from its phase; a late poll is sent at once.

    Latency is measured from the time the poll was due (so a server that falls behind shows in the
    figures rather than slowing the schedule down), with the service time kept alongside.
    """
    results: list[tuple[float, float, float, int | str]] = []  # (due, sent, done, status or error)
    lock = threading.Lock()

    def router(token: str, phase: float, if_none_match: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "If-None-Match": if_none_match, "Connection": "close"}
        mine = []
        polls = int(duration / interval) + 1
        for number in range(polls):  # bounded in count and by the run's end
            due = start_at + phase + number * interval
            if due >= start_at + duration:
                break
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            sent = time.time()
            connection = http.client.HTTPConnection(HOST, port, timeout=10)
            try:
                connection.request("GET", BUNDLE_PATH, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as error:
                status = type(error).__name__
            finally:
                connection.close()
            done = time.time()
            mine.append((due, sent, done, status))
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=router, args=entry, daemon=True) for entry in routers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + 30)
    return results


def run_fixed_rate(port: int, tokens: list[str], etag: str, rate: float, duration: float, processes: int) -> dict:
    interval = len(tokens) / rate  # each router polls every `interval` seconds
    routers = [(token, index * interval / len(tokens), etag) for index, token in enumerate(tokens)]
    shares = [routers[index::processes] for index in range(processes)]
    start_at = time.time() + 1.0
    args = [(port, share, interval, start_at, duration) for share in shares if share]
    results = run_in_processes(_fixed_rate_process, args, duration + 60)
    polls = [poll for result in results for poll in result]
    if not polls:
        raise BenchError("the fixed-rate run made no polls")
    # The rate is held when every poll due in the window went out in the window: a server that falls
    # behind blocks the routers' threads and pushes their later polls past its end.
    last_sent = max(sent for _, sent, _, _ in polls)
    ok = [poll for poll in polls if poll[3] == 304]
    latencies = [done - due for due, _, done, _ in ok]
    service = [done - sent for _, sent, done, _ in ok]
    return {
        "routers": len(tokens),
        "interval": interval,
        "target": rate,
        "polls": len(polls),
        "ok": len(ok),
        "errors": len(polls) - len(ok),
        "error_kinds": dict(collections.Counter(str(poll[3]) for poll in polls if poll[3] != 304)),
        "achieved": len(ok) / max(duration, last_sent - start_at),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else math.nan,
        "service_p99_ms": percentile(service, 0.99) * 1000,
    }


# --- set-up and tear-down -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class Database:
    """A throwaway PostgreSQL database, created and dropped through the ``postgres`` maintenance DB."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in {"postgres", "postgresql", "pgsql"}:
            raise BenchError("--database-url must be a postgres:// URL (the bench creates and drops the database)")
        self.url = url
        self.name = unquote(parsed.path.lstrip("/"))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name or ""):
            raise BenchError(f"--database-url: unusable database name {self.name!r}")
        self.maintenance = parsed._replace(path="/postgres").geturl().replace("pgsql://", "postgresql://")
        self.maintenance = re.sub(r"^postgres://", "postgresql://", self.maintenance)
        self.created = False

    def _execute(self, sql: str) -> list:
        import psycopg

        with psycopg.connect(self.maintenance, autocommit=True, connect_timeout=10) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def create(self) -> None:
        exists = self._execute(f"SELECT 1 FROM pg_database WHERE datname = '{self.name}'")
        if exists:
            if "bench" not in self.name:
                raise BenchError(
                    f"database {self.name!r} already exists and its name does not contain 'bench'; "
                    "the bench drops its database at the end, so point --database-url at a throwaway name"
                )
            self._execute(f'DROP DATABASE "{self.name}" WITH (FORCE)')
        self._execute(f'CREATE DATABASE "{self.name}"')
        self.created = True

    def drop(self) -> None:
        if self.created:
            self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree_cpu(root_pid: int) -> float:
    """CPU seconds (user + system) used so far by ``root_pid`` and its live children."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            times[int(entry)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return sum(seconds for pid, seconds in times.items() if pid == root_pid or parents.get(pid) == root_pid)


def machine_busy_cpu() -> float:
    """CPU seconds all processors spent busy (steal included: another VM's load) since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited-for children: wrk, generator processes
    return usage.ru_utime + usage.ru_stime


class Server:
    """Steward under gunicorn in its own process group, stopped on exit whatever happens."""

    def __init__(self, env: dict, port: int, args: argparse.Namespace, log: Path) -> None:
        self.env, self.port, self.args, self.log = env, port, args, log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            str(VENV_BIN / "gunicorn"),
            "steward.wsgi:application",
            "--workers",
            str(self.args.workers),
            "--worker-class",
            self.args.worker_class,
            "--threads",
            str(self.args.threads),
            "--bind",
            f"{HOST}:{self.port}",
            "--chdir",
            str(ROOT),
            "--log-level",
            "warning",
            "--error-logfile",
            str(self.log),
        ]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"gunicorn exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _, _ = fetch(self.port, BARE_PATH, {})
                if status == 200:
                    return
            time.sleep(0.2)
        raise BenchError(f"gunicorn did not answer within 60 s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:]) if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)  # gunicorn's graceful stop: the master stops its workers
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # our own session: gunicorn and its workers only
            self.process.wait(5)


def fetch(port: int, path: str, headers: dict) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, response.read()
    finally:
        connection.close()


def manage(env: dict, *arguments: str, timeout: float = 600) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"manage.py {' '.join(arguments)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def delete_cache_keys(redis_url: str, prefix: str) -> None:
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)


def verify(port: int, token: str, etag: str, body: bytes) -> None:
    """The bare view and the bundle answer the same bytes and headers; the 304s are 304s."""
    auth = {"Authorization": f"Bearer {token}"}
    app_status, app_headers, app_body = fetch(port, BUNDLE_PATH, auth)
    bare_status, bare_headers, bare_body = fetch(port, BARE_PATH, {})
    if app_status != 200 or bare_status != 200:
        raise BenchError(f"expected 200 from both, got bundle {app_status} and bare {bare_status}")
    if app_body != body or bare_body != body:
        raise BenchError("the bundle and the bare view do not return the exported envelope bytes")
    ignored = {"date", "x-request-id"}  # different on every response
    differences = {
        name: (app_headers.get(name), bare_headers.get(name))
        for name in (set(app_headers) | set(bare_headers)) - ignored
        if app_headers.get(name) != bare_headers.get(name)
    }
    if differences:
        raise BenchError(f"the bundle and the bare view differ in headers: {differences}")
    for path, headers in ((BUNDLE_PATH, {**auth, "If-None-Match": etag}), (BARE_PATH, {"If-None-Match": etag})):
        status, answered, _ = fetch(port, path, headers)
        if status != 304 or answered.get("etag") != etag:
            raise BenchError(f"{path} with If-None-Match answered {status} (ETag {answered.get('etag')})")
    print(f"verified: same {len(body)} body bytes and headers ({', '.join(sorted(app_headers))}); 304s match")


# --- the run ------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/steward_feedbench",
        help="throwaway PostgreSQL database: created, migrated, seeded and dropped by the bench",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11", help="Redis for the Django cache")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2: one per core)")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class (default sync; see above)")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker (gthread)")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--no-install", action="store_true", help="never try `apt-get install wrk`")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per case (default 10)")
    parser.add_argument(
        "--slice",
        type=float,
        default=1.0,
        help="the cases take turns in slices of this many seconds, so that a burst of other load on the "
        "machine falls on all of them alike (default 1)",
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per case (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (wrk, default 16)")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--py-processes", type=int, default=2, help="Python load generator processes")
    parser.add_argument("--py-threads", type=int, default=4, help="Python load generator threads per process")
    parser.add_argument("--routers", type=int, default=50, help="router tokens for the fixed-rate run (default 50)")
    parser.add_argument("--rate", type=float, default=10_000 / 30, help="polls/s of the fixed-rate run (333.3)")
    parser.add_argument("--rate-duration", type=float, default=10.0, help="seconds of the fixed-rate run")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (gunicorn's log)")
    args = parser.parse_args()
    for name in ("duration", "slice", "warmup", "rate_duration"):
        if not 0 < getattr(args, name) <= 600:
            parser.error(f"--{name.replace('_', '-')} must be in (0, 600]")
    if args.loadgen == "wrk" or args.loadgen == "auto":
        args.slice = max(1.0, round(args.slice))  # wrk counts whole seconds
    if not 0 < args.rate <= 5000:
        parser.error("--rate must be in (0, 5000]")
    if not 1 <= args.routers <= 1000 or not 1 <= args.workers <= 32 or not 1 <= args.threads <= 64:
        parser.error("--routers must be 1..1000, --workers 1..32, --threads 1..64")
    if not 1 <= args.connections <= 1000:
        parser.error("--connections must be 1..1000")
    return args


def _terminated(signum, frame) -> None:
    """A SIGTERM is handled like Ctrl-C: the ``finally`` blocks stop gunicorn and drop the database."""
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (`cmd &`)
    tmp = Path(tempfile.mkdtemp(prefix="feedbench-"))
    prefix = f"feedbench-{uuid.uuid4().hex[:12]}"
    database = Database(args.database_url)
    server: Server | None = None
    try:
        (tmp / "feedbench_settings.py").write_text(SETTINGS_MODULE.format(prefix=prefix))
        # Until the envelope is exported the bare view has nothing to serve: set-up runs on steward.urls.
        (tmp / "feedbench_setup_settings.py").write_text(
            'from feedbench_settings import *  # noqa: F403\n\nROOT_URLCONF = "steward.urls"\n'
        )
        (tmp / "feedbench_setup.py").write_text(SETUP_SCRIPT.format(policy_set=POLICY_SET))
        env = {key: value for key, value in os.environ.items() if not key.startswith(("STEWARD_", "DJANGO_"))}
        env |= {
            "DATABASE_URL": args.database_url,
            "CELERY_BROKER_URL": args.redis_url,
            "STEWARD_REDIS_URL": args.redis_url,
            "STEWARD_VAR_DIR": str(tmp / "var"),
            "DJANGO_SETTINGS_MODULE": "feedbench_setup_settings",
            "PYTHONPATH": os.pathsep.join([str(tmp), str(ROOT)]),
            "STEWARD_LOG_LEVEL": "WARNING",
        }
        for key in ("STEWARD_KEK", "STEWARD_DEMO_PASSWORD"):  # keep what the operator set for these
            if os.environ.get(key):
                env[key] = os.environ[key]

        started = time.monotonic()
        database.create()
        manage(env, "migrate", "--noinput")
        manage(env, "seed_demo")
        done = subprocess.run(
            [sys.executable, str(tmp / "feedbench_setup.py"), str(tmp), str(args.routers)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"exporting the envelope / registering routers failed:\n{done.stderr[-3000:]}")
        print(f"database {database.name}: migrated, seeded; {done.stdout.strip()} ({time.monotonic() - started:.0f} s)")
        (tmp / "feedbench_urls.py").write_text(URLS_MODULE.format(bare_path=BARE_PATH.lstrip("/")))
        env["DJANGO_SETTINGS_MODULE"] = "feedbench_settings"
        body = (tmp / "bundle.bin").read_bytes()
        etag = json.loads((tmp / "bundle.json").read_text())["etag"]
        tokens = json.loads((tmp / "tokens.json").read_text())

        port = free_port()
        server = Server(env, port, args, tmp / "gunicorn.log")
        server.start()
        print(
            f"gunicorn on {HOST}:{port}: --workers {args.workers} --worker-class {args.worker_class} "
            f"--threads {args.threads}; DEBUG off, PostgreSQL, Redis cache ({os.cpu_count()} cores)"
        )
        verify(port, tokens[0], etag, body)

        wrk = None if args.loadgen == "python" else find_wrk(allow_install=not args.no_install)
        if args.loadgen == "wrk" and wrk is None:
            raise BenchError("--loadgen wrk: wrk is not installed and could not be installed")

        def measure(case: Case, duration: float) -> Slice:
            server_before, busy_before, load_before = (
                process_tree_cpu(server.process.pid),
                machine_busy_cpu(),
                children_cpu(),
            )
            if wrk:
                result = run_wrk(wrk, port, case, duration, args.connections, args.wrk_threads)
            else:
                result = run_python_closed(port, case, duration, args.py_processes, args.py_threads)
            result.server_cpu = process_tree_cpu(server.process.pid) - server_before
            load = children_cpu() - load_before
            result.other_cpu = max(0.0, machine_busy_cpu() - busy_before - result.server_cpu - load)
            return result

        auth = {"Authorization": f"Bearer {tokens[0]}"}
        cases = [
            Case("a", "304 path", BUNDLE_PATH, {**auth, "If-None-Match": etag}, 304),
            Case("b", "200 path", BUNDLE_PATH, auth, 200),
            Case("c", "bare 200", BARE_PATH, {}, 200),
            Case("d", "bare 304", BARE_PATH, {"If-None-Match": etag}, 304),
        ]
        by_key = {case.key: case for case in cases}
        turns = max(1, round(args.duration / args.slice))
        tool = (
            f"wrk -t{args.wrk_threads} -c{args.connections}"
            if wrk
            else f"Python load generator ({args.py_processes} processes x {args.py_threads} keep-alive connections)"
        )
        print(
            f"load from a second process: {tool}; {turns} turns of {args.slice:g} s per case "
            f"(cases interleaved, order rotating), after {args.warmup:g} s of warm-up each\n"
        )
        for case in cases:  # every worker's memory, the connection pools, the cache
            measure(case, args.warmup)
        cores = os.cpu_count() or 1

        def other_share(slices) -> float:
            """The share of the machine's CPU that other processes took while these slices ran."""
            slices = list(slices)
            return sum(s.other_cpu for s in slices) / (sum(s.elapsed for s in slices) * cores)

        turn_ratios: dict[str, list[float]] = {"304": [], "200": []}
        for turn in range(turns):
            order = cases[turn % len(cases) :] + cases[: turn % len(cases)]
            measured = {case.key: measure(case, args.slice) for case in order}
            for case in order:
                case.slices.append(measured[case.key])
            turn_ratios["304"].append(measured["a"].rps / measured["d"].rps)
            turn_ratios["200"].append(measured["b"].rps / measured["c"].rps)
            print(
                f"  turn {turn + 1:2d}: "
                + "  ".join(f"{case.label} {measured[case.key].rps:6.0f}/s" for case in cases)
                + f"   304/bare {turn_ratios['304'][-1]:.2f}  200/bare {turn_ratios['200'][-1]:.2f}"
                + f"   other load {other_share(measured.values()):3.0%}",
                flush=True,
            )
        if wrk:  # wrk does not see status codes beyond 2xx/3xx: check that 304s were small and 200s whole
            for case in cases:
                sizes = [s.bytes_per_request for s in case.slices if s.bytes_per_request]
                whole = statistics.median(sizes) >= len(body) if sizes else True
                if whole != (case.expect == 200):
                    raise BenchError(f"{case.label}: {statistics.median(sizes):.0f} bytes per response")

        print(
            f"\nfixed rate: {args.routers} routers x one poll every {args.routers / args.rate:.3f} s "
            f"= {args.rate:.0f} polls/s for {args.rate_duration:g} s on the 304 path (new connection per poll)"
        )
        server_before, busy_before, load_before = (
            process_tree_cpu(server.process.pid),
            machine_busy_cpu(),
            children_cpu(),
        )
        fixed = run_fixed_rate(port, tokens, etag, args.rate, args.rate_duration, processes=2)
        fixed_server = process_tree_cpu(server.process.pid) - server_before
        fixed_other = machine_busy_cpu() - busy_before - fixed_server - (children_cpu() - load_before)
        fixed_other_share = max(0.0, fixed_other) / ((args.rate_duration + 1) * (os.cpu_count() or 1))
        if server.process.poll() is not None:
            raise BenchError(f"gunicorn died during the run:\n{server.log_tail()}")

        # Graded on the median of the turns' ratios: each compares two slices a few seconds apart, so a
        # burst of other load on the machine spoils a turn or two rather than the whole figure.
        ratio_304 = statistics.median(turn_ratios["304"])
        ratio_200 = statistics.median(turn_ratios["200"])
        whole_304 = by_key["a"].rps / by_key["d"].rps
        whole_200 = by_key["b"].rps / by_key["c"].rps
        ratio_304_vs_200 = by_key["a"].rps / by_key["c"].rps
        errors = sum(case.errors for case in cases)
        held = fixed["achieved"] >= HELD_FRACTION * fixed["target"] and fixed["errors"] == 0
        fast = fixed["p99_ms"] < TARGET_P99_MS

        def mark(ok: bool) -> str:
            return "OK  " if ok else "MISS"

        def spread(values: list[float], whole: float) -> str:
            return f"turns {min(values):.2f}..{max(values):.2f}; all requests over all time {whole:.2f}"

        p99_note = "" if not wrk else " (p50/p99: median of the turns' figures from wrk)"
        print(f"\n=== policy feed under gunicorn, {turns * args.slice:g} s of load per case{p99_note} ===")
        print(
            f"{'case':10s} {'requests/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s} {'requests':>9s} "
            f"{'server CPU/request':>19s} {'errors':>6s}"
        )
        for case in cases:
            requests = sum(s.requests for s in case.slices)
            print(
                f"{case.label:10s} {case.rps:10.0f} {case.latency_ms(0.50):8.2f} {case.latency_ms(0.99):8.2f} "
                f"{requests:9d} {case.cpu_us_per_request:16.0f} us {case.errors:6d}"
            )
        background = other_share(s for case in cases for s in case.slices)
        cpu_304 = by_key["d"].cpu_us_per_request / by_key["a"].cpu_us_per_request
        cpu_200 = by_key["c"].cpu_us_per_request / by_key["b"].cpu_us_per_request
        print(
            f"gunicorn CPU time per request, bare / path (the same ratios, less sensitive to other load): "
            f"304 {cpu_304:.2f}, 200 {cpu_200:.2f}"
        )
        if background > BUSY_SHARE:
            print(
                f"note: other processes took {background:.0%} of the machine's CPU during the measurements; "
                "requests/s are noisy: run again on a quiet machine, and compare with the CPU-time ratios above"
            )
        print(
            f"[{mark(ratio_304 >= TARGET_304)}] 304 path / bare 304: {ratio_304:.2f}, median of the turns "
            f"(target >= {TARGET_304:.2f}; {spread(turn_ratios['304'], whole_304)}; vs bare 200 {ratio_304_vs_200:.2f})"
        )
        print(
            f"[{mark(ratio_200 >= TARGET_200)}] 200 path / bare 200: {ratio_200:.2f}, median of the turns "
            f"(target >= {TARGET_200:.2f}; {spread(turn_ratios['200'], whole_200)})"
        )
        print(
            f"[{mark(held)}] fixed rate: {fixed['achieved']:.1f} of {fixed['target']:.1f} polls/s achieved "
            f"({fixed['ok']} of {fixed['polls']} polls answered 304, {fixed['errors']} errors"
            + (f": {fixed['error_kinds']}" if fixed["errors"] else "")
            + ")"
        )
        print(
            f"[{mark(fast)}] fixed rate p99: {fixed['p99_ms']:.2f} ms from the time each poll was due "
            f"(target < {TARGET_P99_MS:.0f} ms); p50 {fixed['p50_ms']:.2f} ms, max {fixed['max_ms']:.2f} ms, "
            f"service-time p99 {fixed['service_p99_ms']:.2f} ms"
        )
        print(
            f"       gunicorn used {fixed_server / max(1, fixed['polls']) * 1e6:.0f} us of CPU per poll, "
            f"{fixed_server / (args.rate_duration + 1) / (os.cpu_count() or 1):.0%} of the machine; "
            f"other processes {fixed_other_share:.0%}"
        )
        if errors:
            print(f"[MISS] {errors} unexpected answers or socket errors under load")
        if errors or fixed["errors"]:
            print(f"gunicorn's log (last lines):\n{server.log_tail() or '(empty)'}")
        ok = ratio_304 >= TARGET_304 and ratio_200 >= TARGET_200 and held and fast and not errors
        print(f"\n{'ALL TARGETS MET' if ok else 'SOME TARGETS MISSED'} ({time.monotonic() - started:.0f} s)")
        return 0 if ok else 1
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        try:
            if server is not None:
                server.stop()
            database.drop()
            delete_cache_keys(args.redis_url, prefix)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if args.keep_tmp:
                print(f"kept {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
