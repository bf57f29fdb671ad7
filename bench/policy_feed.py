"""Benchmark: the policy feed's poll path under gunicorn, against a bare Django view in the same run.

One run creates a throwaway PostgreSQL database, migrates it, runs ``seed_demo`` (which publishes the
signed production and staging releases), registers routers with ``create_router_token`` and starts
Steward under gunicorn with production settings (DEBUG off, PostgreSQL, the Django cache on Redis).
The same server also answers ``/api/v1/bench/bare``: a bare view that returns the production envelope with
the same headers, from a URLconf the bench writes into a temporary directory (``hub.urls`` plus
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
import json
import os
import shutil
import statistics
import time
import uuid
from dataclasses import dataclass, field

import harness
from harness import BenchError, Slice

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
"""hub.urls plus one bare view returning the production envelope with the bundle's headers."""

import json
from pathlib import Path

from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from hub.urls import handler403, handler404, handler500  # noqa: F401

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


urlpatterns = [path({bare_path!r}, bare), path("", include("hub.urls"))]
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
        return sum(s.cpu.server for s in self.slices) / sum(s.requests for s in self.slices) * 1e6

    def latency_ms(self, fraction: float) -> float:
        """Exact over every request when the generator kept latencies, else the median of the slices'."""
        if all(s.latencies is not None for s in self.slices):
            return harness.percentile([value for s in self.slices for value in s.latencies], fraction) * 1000
        return statistics.median(s.p99_ms if fraction == 0.99 else s.p50_ms for s in self.slices)


def delete_cache_keys(redis_url: str, prefix: str) -> None:
    try:
        import redis

        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    except Exception:  # noqa: BLE001 - the keys expire anyway; a failed clean-up must not hide the figures
        pass


def verify(port: int, token: str, etag: str, body: bytes) -> None:
    """The bare view and the bundle answer the same bytes and headers; the 304s are 304s."""
    auth = {"Authorization": f"Bearer {token}"}
    app_status, app_headers, app_body = harness.fetch(port, BUNDLE_PATH, auth)
    bare_status, bare_headers, bare_body = harness.fetch(port, BARE_PATH, {})
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
        status, answered, _ = harness.fetch(port, path, headers)
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


def run() -> int:
    args = parse_args()
    with harness.Run() as bench:
        tmp = bench.directory("feedbench-", keep=args.keep_tmp)
        prefix = f"feedbench-{uuid.uuid4().hex[:12]}"
        bench.callback(delete_cache_keys, args.redis_url, prefix)
        (tmp / "feedbench_settings.py").write_text(SETTINGS_MODULE.format(prefix=prefix))
        # Until the envelope is exported the bare view has nothing to serve: set-up runs on hub.urls.
        (tmp / "feedbench_setup_settings.py").write_text(
            'from feedbench_settings import *  # noqa: F403\n\nROOT_URLCONF = "hub.urls"\n'
        )
        (tmp / "feedbench_setup.py").write_text(SETUP_SCRIPT.format(policy_set=POLICY_SET))
        env = harness.environment(
            tmp,
            "feedbench_setup_settings",
            DATABASE_URL=args.database_url,
            CELERY_BROKER_URL=args.redis_url,
            STEWARD_REDIS_URL=args.redis_url,
        )

        started = time.monotonic()
        database = bench.database(args.database_url)
        harness.python(env, "manage.py", "migrate", "--noinput")
        harness.python(env, "manage.py", "seed_demo")
        exported = harness.python(env, str(tmp / "feedbench_setup.py"), str(tmp), str(args.routers))
        print(f"database {database.name}: migrated, seeded; {exported} ({time.monotonic() - started:.0f} s)")
        (tmp / "feedbench_urls.py").write_text(URLS_MODULE.format(bare_path=BARE_PATH.lstrip("/")))
        env["DJANGO_SETTINGS_MODULE"] = "feedbench_settings"
        body = (tmp / "bundle.bin").read_bytes()
        etag = json.loads((tmp / "bundle.json").read_text())["etag"]
        tokens = json.loads((tmp / "tokens.json").read_text())

        port = harness.free_port()
        log = tmp / "gunicorn.log"
        server = harness.gunicorn(
            bench, env, port, log, BARE_PATH, workers=args.workers, worker_class=args.worker_class, threads=args.threads
        )
        print(
            f"gunicorn on {harness.HOST}:{port}: --workers {args.workers} --worker-class {args.worker_class} "
            f"--threads {args.threads}; DEBUG off, PostgreSQL, Redis cache ({os.cpu_count()} cores)"
        )
        verify(port, tokens[0], etag, body)

        wrk = None if args.loadgen == "python" else shutil.which("wrk")
        if args.loadgen == "wrk" and wrk is None:
            raise BenchError("--loadgen wrk: wrk is not installed (apt-get install wrk)")

        def measure(case: Case, duration: float) -> Slice:
            with harness.cpu_use(server.pid) as cpu:
                if wrk:
                    result = harness.run_wrk(
                        wrk, port, case.path, case.headers, duration, args.connections, args.wrk_threads
                    )
                else:
                    result = harness.closed_loop(
                        port, case.path, case.headers, case.expect, duration, args.py_processes, args.py_threads
                    )
            result.cpu = cpu
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
            return sum(s.cpu.other for s in slices) / (sum(s.elapsed for s in slices) * cores)

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
        pollers = [{"Authorization": f"Bearer {token}", "If-None-Match": etag} for token in tokens]
        with harness.cpu_use(server.pid) as fixed_cpu:
            fixed = harness.fixed_rate(port, BUNDLE_PATH, pollers, 304, args.rate, args.rate_duration)
        fixed_server = fixed_cpu.server
        fixed_other_share = fixed_cpu.other / ((args.rate_duration + 1) * (os.cpu_count() or 1))
        if server.poll() is not None:
            raise BenchError(f"gunicorn died during the run:\n{harness.log_tail(log)}")

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
            print(f"gunicorn's log (last lines):\n{harness.log_tail(log) or '(empty)'}")
        ok = ratio_304 >= TARGET_304 and ratio_200 >= TARGET_200 and held and fast and not errors
        print(f"\n{'ALL TARGETS MET' if ok else 'SOME TARGETS MISSED'} ({time.monotonic() - started:.0f} s)")
        return 0 if ok else 1


if __name__ == "__main__":
    harness.main(run)
