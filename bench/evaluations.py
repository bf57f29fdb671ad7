"""Benchmark: evaluation runs on one Celery worker against the demo endpoint at a fixed latency.

1,000 cases x 4 model versions, every answer taking a fixed 50 ms, the suite's concurrency C
(default 32). With C requests always in flight the runs cannot finish sooner than

    ideal = cases x versions x latency / C        (1000 x 4 x 50 ms / 32 = 6.25 s)

and the bench prints the wall time from starting the four runs to the last one finishing, and its
ratio to that ideal (target at most 1.5).

"One worker" is one Celery worker node with one execution slot: ``celery worker --pool=prefork
--concurrency=1``, a single process that takes one task at a time; inside a task (a chunk of
cases) an asyncio loop keeps C requests in flight. Starting the four runs (HTTP-free) and
polling for their end are inside the measured time; starting the worker is not.

One run creates a throwaway PostgreSQL database (created, migrated and dropped here; a name that
existed before is dropped only if it contains "bench"), starts the demo endpoint as a process of
its own (``python -m demo.server --latency-ms 50``) and the worker on the
Redis broker, on a Celery queue of its own (so no other worker on that Redis database takes the
bench's tasks, and the bench's worker takes no one else's).

    .venv/bin/python bench/evaluations.py
    .venv/bin/python bench/evaluations.py --cases 1000 --versions 4 --latency-ms 50 --concurrency 32 \\
        --repeat 2 --database-url postgres://postgres@127.0.0.1:5432/steward_evalbench \\
        --broker-url redis://127.0.0.1:6379/14
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.5
DEMO_MODELS = ["demo-oracle", "demo-careful", "demo-swift", "demo-budget"]
TICKETS = [
    "I was charged twice for my subscription this month",
    "I can't log in since yesterday",
    "The app shows error 500 when I save",
    "Please send a refund for the duplicate payment",
    "How do I reset my password?",
    "Exports crash halfway through",
]
SETTINGS_MODULE = '''\
"""Steward's settings with a Celery queue of the bench's own."""

from steward.settings import *  # noqa: F403

CELERY_TASK_DEFAULT_QUEUE = {queue!r}
'''


class BenchError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"the demo endpoint exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"the demo endpoint did not listen on port {port} within {timeout:g} s")


class Database:
    """A throwaway PostgreSQL database: created at the start, dropped at the end."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.name = unquote(parsed.path.lstrip("/"))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name or ""):
            raise BenchError(f"--database-url: unusable database name {self.name!r}")
        self.maintenance = re.sub(r"^postgres(ql)?://", "postgresql://", parsed._replace(path="/postgres").geturl())
        self.created = False

    def _execute(self, sql: str) -> list:
        import psycopg

        with psycopg.connect(self.maintenance, autocommit=True, connect_timeout=10) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def create(self) -> None:
        if self._execute(f"SELECT 1 FROM pg_database WHERE datname = '{self.name}'"):
            if "bench" not in self.name:
                raise BenchError(f"database {self.name!r} exists and its name does not contain 'bench'")
            self._execute(f'DROP DATABASE "{self.name}" WITH (FORCE)')
        self._execute(f'CREATE DATABASE "{self.name}"')
        self.created = True

    def drop(self) -> None:
        if self.created:
            self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_worker(env: dict, queue: str, concurrency: int) -> tuple[subprocess.Popen, str]:
    """One Celery worker node on the bench's queue; returns it once it answers a ping."""
    from steward.celery import app

    node = f"evalbench-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "celery", "-A", "steward", "worker", "--pool=prefork"]
    command += [f"--concurrency={concurrency}", "-Q", queue, "-n", f"{node}@%h", "-l", "warning"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    worker = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise BenchError(f"the Celery worker exited with code {worker.returncode}")
        for reply in app.control.ping(timeout=0.5):
            if next(iter(reply)).startswith(node + "@"):
                return worker, next(iter(reply))
    stop(worker)
    raise BenchError("the Celery worker did not answer a ping within 30 s")


def build_data(cases: int, versions: int, concurrency: int, base_url: str):
    """A suite of ``cases`` ticket-triage cases and ``versions`` approved demo versions."""
    from django.contrib.auth.models import User

    from registry.evaluation.suites import SuiteSpec, save_suite
    from registry.models import CredentialStatus, EndpointCredential, Model, ModelVersion, Provider, Status

    owner = User.objects.create_superuser("evalbench", "evalbench@example.org", None)
    EndpointCredential.objects.create(
        env_var="DEMO_ENDPOINT_API_KEY", hosts=["127.0.0.1", "localhost"], status=CredentialStatus.APPROVED
    )
    provider = Provider.objects.create(name="Bench demo", slug="benchdemo", regions=["local"])
    built = []
    for index in range(versions):
        model_id = DEMO_MODELS[index % len(DEMO_MODELS)]
        model = Model.objects.create(
            provider=provider, name=f"{model_id} {index}", slug=f"m{index}", context_window=8000
        )
        built.append(
            ModelVersion.objects.create(
                model=model,
                version="1",
                region="local",
                base_url=base_url,
                provider_model_id=model_id,
                api_key_env="DEMO_ENDPOINT_API_KEY",
                input_price_micro_usd=100_000,
                output_price_micro_usd=400_000,
                cost_tier="small",
                status=Status.APPROVED,
                proposed_by=owner,
            )
        )
    spec_cases = [
        {
            "key": f"case-{n + 1}",
            "position": n,
            "messages": [
                {
                    "role": "user",
                    "content": "Classify this support ticket as billing, technical or account. "
                    f"Ticket: {TICKETS[n % len(TICKETS)]} (ref {n + 1})",
                }
            ],
            "expected": "",
            "scorer": "",
            "scorer_config": {},
            "tags": [],
            "group": "",
        }
        for n in range(cases)
    ]
    suite, _, _ = save_suite(
        SuiteSpec(
            {
                "name": "Bench triage",
                "slug": "bench-triage",
                "category": "accuracy",
                "scorer": "label",
                "scorer_config": {"labels": ["billing", "technical", "account"]},
                "concurrency": concurrency,
            },
            spec_cases,
        ),
        owner,
    )
    return suite, built


def measure(suite, versions, timeout: float) -> tuple[float, list]:
    """Start one run per version and wait for all of them to finish; returns (seconds, runs)."""
    from registry.evaluation.runs import start_run
    from registry.models import EvaluationRun, RunTrigger

    started = time.perf_counter()
    runs = [start_run(suite, version, trigger=RunTrigger.API) for version in versions]
    ids = [run.pk for run in runs]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not EvaluationRun.objects.filter(pk__in=ids, status__in=["queued", "running"]).exists():
            break
        time.sleep(0.02)
    else:
        raise BenchError(f"the runs did not finish within {timeout:g} s")
    wall = time.perf_counter() - started
    return wall, list(EvaluationRun.objects.filter(pk__in=ids).order_by("pk"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=4)
    parser.add_argument("--latency-ms", type=int, default=50, help="fixed latency of every answer (default 50)")
    parser.add_argument("--concurrency", type=int, default=32, help="the suite's concurrency C (default 32)")
    parser.add_argument("--worker-concurrency", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--repeat", type=int, default=2, help="measured rounds (default 2)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/steward_evalbench")
    parser.add_argument("--broker-url", default=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14"))
    args = parser.parse_args()
    if not 1 <= args.cases <= 20_000 or not 1 <= args.versions <= 16 or not 1 <= args.repeat <= 10:
        parser.error("--cases must be 1..20000, --versions 1..16, --repeat 1..10")
    if not 1 <= args.concurrency <= 256 or not 0 <= args.latency_ms <= 10_000:
        parser.error("--concurrency must be 1..256, --latency-ms 0..10000")
    if not args.broker_url.startswith("redis://"):
        parser.error("--broker-url must be a redis:// URL")
    return args


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminated)
    tmp = Path(tempfile.mkdtemp(prefix="evalbench-"))
    queue = f"evalbench-{uuid.uuid4().hex[:12]}"
    (tmp / "evalbench_settings.py").write_text(SETTINGS_MODULE.format(queue=queue))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("STEWARD_", "DJANGO_"))}
    env |= {
        "DATABASE_URL": args.database_url,
        "CELERY_BROKER_URL": args.broker_url,
        "DJANGO_SETTINGS_MODULE": "evalbench_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp), str(ROOT)]),
        "STEWARD_VAR_DIR": str(tmp / "var"),
        "STEWARD_LOG_LEVEL": "WARNING",
        "STEWARD_EVALUATION_TIMEOUT": "30",
    }
    os.environ.update(env)
    sys.path[:0] = [str(tmp), str(ROOT)]
    database = Database(args.database_url)
    endpoint = worker = None
    try:
        database.create()
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        import django

        django.setup()
        port = free_port()
        endpoint = subprocess.Popen(
            [sys.executable, "-m", "demo.server", "--port", str(port)] + ["--latency-ms", str(args.latency_ms)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(port, endpoint)
        suite, versions = build_data(args.cases, args.versions, args.concurrency, f"http://127.0.0.1:{port}/v1")
        worker, node = start_worker(env, queue, args.worker_concurrency)
        ideal = args.cases * args.versions * args.latency_ms / 1000 / args.concurrency
        print(
            f"{args.cases} cases x {args.versions} versions, {args.latency_ms} ms per answer, suite concurrency "
            f"C={args.concurrency}; one worker {node} (--pool=prefork --concurrency={args.worker_concurrency}); "
            f"ideal {ideal:.2f} s; {os.cpu_count()} cores"
        )
        ratios = []
        for round_number in range(1, args.repeat + 1):
            wall, runs = measure(suite, versions, timeout=max(120, ideal * 20))
            answered = sum(run.done for run in runs)
            errors = sum(run.errors for run in runs)
            statuses = {run.status for run in runs}
            if statuses != {"completed"} or answered != args.cases * args.versions:
                raise BenchError(f"round {round_number}: runs ended {statuses} with {answered} answers")
            ratio = wall / ideal
            ratios.append(ratio)
            print(
                f"round {round_number}: wall {wall:.2f} s, ratio {ratio:.2f} (target <= {TARGET_RATIO}); "
                f"{answered} answers, {errors} errors, p50 latency "
                f"{', '.join(str(run.latency_p50_ms) for run in runs)} ms"
            )
        best = min(ratios)
        print(f"best ratio {best:.2f}: {'PASS' if best <= TARGET_RATIO else 'MISS'} (target <= {TARGET_RATIO})")
        return 0 if best <= TARGET_RATIO else 1
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 2
    finally:
        stop(worker)
        stop(endpoint)
        from django.db import connections

        connections.close_all()
        database.drop()


if __name__ == "__main__":
    sys.exit(main())
