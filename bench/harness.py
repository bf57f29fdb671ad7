"""What the benches in bench/ share: databases, processes, load and timing.

- In-process benches (a page through Django's test client): ``setup_django()``, then
  ``test_database()`` around the run, ``member``/``signed_in`` for the people, ``medians`` for the
  timings.
- Server benches: a ``Run`` owns what the bench starts (a scratch directory, a throwaway PostgreSQL
  database, gunicorn, a Celery worker, the demo endpoint) and stops or removes it at the end,
  whatever happens; load comes from ``wrk`` where installed, else from Python generators here
  (closed loop, fixed rate, a bare asyncio client), all bounded in count and time and aimed only
  at 127.0.0.1.

A database that existed before is dropped only when its name contains "bench".
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http.client
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


class BenchError(RuntimeError):
    """The bench cannot measure (set-up failed, wrong answers): exit code 2 with this message."""


def main(run: Callable[[], int | None]) -> None:
    """Run a bench's ``run`` and exit with its code: 2 with the message of a BenchError, 130 when interrupted."""
    try:
        code = run()
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        code = 130
    sys.exit(code)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# --- in-process benches: Django's test client on a test database --------------------------------


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "steward.settings")
    import django

    django.setup()


@contextlib.contextmanager
def test_database() -> Iterator[None]:
    """Django's test database for DATABASE_URL (``test_<name>``), created here and dropped at the end.

    One left by someone else (a test run in progress) is not touched unless its name contains "bench".
    """
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        name = db["TEST"].get("NAME") or f"test_{db['NAME']}"
        auth = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
        if Database(f"postgresql://{auth}@{db['HOST'] or HOST}:{db['PORT'] or 5432}/{name}").exists():
            if "bench" not in name:
                raise BenchError(
                    f"database {name!r} exists and its name does not contain 'bench': point DATABASE_URL elsewhere"
                )
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def member(username: str, group: str):
    """A user in one of Steward's role groups."""
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(username, password="x")
    user.groups.add(Group.objects.get(name=group))
    return user


def signed_in(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def medians(client, urls: list[str], repeats: int, **extra) -> dict[str, tuple[float, int]]:
    """Median seconds and the query count of a GET of each URL (streamed bodies read to the end), the URLs
    taken in turn so that any drift of the machine hits them alike."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    timings: dict[str, list[float]] = {url: [] for url in urls}
    queries: dict[str, int] = {}
    for _ in range(repeats):
        for url in urls:
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(url, **extra)
                if response.streaming:
                    b"".join(response.streaming_content)
                timings[url].append(time.perf_counter() - started)
            if response.status_code != 200:
                raise BenchError(f"GET {url} answered {response.status_code}")
            queries[url] = len(captured)
    return {url: (statistics.median(timings[url]), queries[url]) for url in urls}


# --- server benches: a run, its database and its processes -----------------------------------------


class Database:
    """A throwaway PostgreSQL database, created and dropped through the ``postgres`` maintenance database."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in {"postgres", "postgresql", "pgsql"}:
            raise BenchError("the database URL must be postgres:// (the bench creates and drops the database)")
        self.name = unquote(parsed.path.lstrip("/"))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name or ""):
            raise BenchError(f"unusable database name {self.name!r}")
        self.maintenance = parsed._replace(scheme="postgresql", path="/postgres").geturl()
        self.created = False

    def _execute(self, sql: str) -> list:
        import psycopg

        with psycopg.connect(self.maintenance, autocommit=True, connect_timeout=10) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def exists(self) -> bool:
        return bool(self._execute(f"SELECT 1 FROM pg_database WHERE datname = '{self.name}'"))

    def create(self) -> None:
        if self.exists():
            if "bench" not in self.name:
                raise BenchError(
                    f"database {self.name!r} already exists and its name does not contain 'bench'; the bench "
                    "drops its database at the end, so point it at a throwaway name"
                )
            self._execute(f'DROP DATABASE "{self.name}" WITH (FORCE)')
        self._execute(f'CREATE DATABASE "{self.name}"')
        self.created = True

    def drop(self) -> None:
        if self.created:
            self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class Run(contextlib.ExitStack):
    """One bench run: what it starts is stopped or removed at the end, in reverse order, whatever happens.

    SIGTERM is taken like Ctrl-C, and a second Ctrl-C during the clean-up cannot cut it short.
    """

    def __enter__(self) -> Run:
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (`cmd &`)
        return super().__enter__()

    def __exit__(self, *exc) -> bool:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return super().__exit__(*exc)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def directory(self, prefix: str, keep: bool = False) -> Path:
        """A scratch directory (settings modules, logs), removed at the end unless ``keep``."""
        path = Path(tempfile.mkdtemp(prefix=prefix))
        if keep:
            self.callback(print, f"kept {path}", file=sys.stderr)
        else:
            self.callback(shutil.rmtree, path, ignore_errors=True)
        return path

    def database(self, url: str) -> Database:
        """The database of ``url``, created now (see ``Database.create``) and dropped at the end."""
        database = Database(url)
        self.callback(database.drop)
        database.create()
        return database

    def process(self, command: list[str], env: dict, log: Path | None = None) -> subprocess.Popen:
        """A subprocess in a session of its own (so that its children stop with it), stopped at the end;
        its output goes to ``log``, or nowhere."""
        output = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed at the end
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if log:
            self.callback(output.close)
        self.callback(stop, process)
        return process


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process's session, SIGKILL after 20 s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def log_tail(log: Path | None, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log and log.exists() else ""


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, what: str, timeout: float, log=None) -> None:
    """Return once ``ready()``; a BenchError (with the log's last lines) when ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{what} exited with code {process.returncode}\n{log_tail(log)}".strip())
        with contextlib.suppress(OSError, http.client.HTTPException):
            if ready():
                return
        time.sleep(0.1)
    raise BenchError(f"{what} was not ready within {timeout:g} s\n{log_tail(log)}".strip())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def environment(tmp: Path, settings_module: str, **variables: str) -> dict[str, str]:
    """The environment of the bench's processes: this one's without Steward's and Django's own variables
    (keeping an operator's KEK and demo password), the scratch directory on the path, ``variables`` on top."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("STEWARD_", "DJANGO_"))}
    env |= {key: os.environ[key] for key in ("STEWARD_KEK", "STEWARD_DEMO_PASSWORD") if os.environ.get(key)}
    return env | {
        "DJANGO_SETTINGS_MODULE": settings_module,
        "PYTHONPATH": os.pathsep.join([str(tmp), str(ROOT)]),
        "STEWARD_VAR_DIR": str(tmp / "var"),
        "STEWARD_LOG_LEVEL": "WARNING",
        **variables,
    }


def python(env: dict, *arguments: str, timeout: float = 600) -> str:
    """``python *arguments`` (``manage.py migrate``, a script) in the project with ``env``: its output."""
    done = subprocess.run(
        [sys.executable, *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise BenchError(f"{' '.join(arguments)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout.strip()


def fetch(port: int, path: str, headers: dict) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, response.read()
    finally:
        connection.close()


def gunicorn(
    run: Run, env: dict, port: int, log: Path, ready_path: str, *, workers: int, worker_class: str, threads: int
) -> subprocess.Popen:
    """Steward under gunicorn (``steward.wsgi``) on 127.0.0.1:``port``, once ``ready_path`` answers 200."""
    command = [str(Path(sys.executable).parent / "gunicorn"), "steward.wsgi:application", "--chdir", str(ROOT)]
    command += ["--workers", str(workers), "--worker-class", worker_class, "--threads", str(threads)]
    command += ["--bind", f"{HOST}:{port}", "--log-level", "warning", "--error-logfile", str(log)]
    server = run.process(command, env)
    wait_until(lambda: fetch(port, ready_path, {})[0] == 200, server, "gunicorn", 60, log)
    return server


def celery_worker(run: Run, env: dict, queue: str, concurrency: int, log: Path) -> str:
    """One Celery worker node (prefork) on ``queue``; returns its name once it answers a ping."""
    from steward.celery import app

    node = f"bench-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "celery", "-A", "steward", "worker", "--pool=prefork"]
    command += [f"--concurrency={concurrency}", "-Q", queue, "-n", f"{node}@%h", "-l", "warning"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    worker = run.process(command, env, log)
    names: list[str] = []

    def answered() -> bool:
        names[:] = [name for reply in app.control.ping(timeout=0.5) for name in reply if name.startswith(node + "@")]
        return bool(names)

    wait_until(answered, worker, "the Celery worker", 30, log)
    return names[0]


def demo_endpoint(run: Run, env: dict, latency_ms: int) -> int:
    """The demo model endpoint (``demo.server``) at a fixed latency; returns its port."""
    port = free_port()
    command = [sys.executable, "-m", "demo.server", "--port", str(port)]
    endpoint = run.process(command + ["--latency-ms", str(latency_ms)], env)
    wait_until(lambda: listening(port), endpoint, "the demo endpoint", 15)
    return port


def listening(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=0.5):
        return True


# --- CPU accounting (Linux /proc) -------------------------------------------------------------------

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


@dataclass
class CpuUse:
    server: float = 0.0  # CPU seconds of the server's process tree
    other: float = 0.0  # CPU seconds that neither the server nor the load generators used (other load)


@contextlib.contextmanager
def cpu_use(server_pid: int) -> Iterator[CpuUse]:
    """What the server, and everything else on the machine, spent on the CPU inside the block."""
    use = CpuUse()
    server, busy, load = process_tree_cpu(server_pid), machine_busy_cpu(), children_cpu()
    yield use
    use.server = process_tree_cpu(server_pid) - server
    use.other = max(0.0, machine_busy_cpu() - busy - use.server - (children_cpu() - load))


# --- load -----------------------------------------------------------------------------------------


@dataclass
class Slice:
    """One load-generator run against one URL."""

    requests: int
    elapsed: float
    p50_ms: float
    p99_ms: float
    errors: int
    bytes_per_request: float | None = None
    latencies: list[float] | None = None  # seconds, when the generator keeps them (Python)
    cpu: CpuUse | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0


_UNITS_TIME = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_UNITS_SIZE = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def run_wrk(wrk: str, port: int, path: str, headers: dict, duration: float, connections: int, threads: int) -> Slice:
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "--timeout", "5s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run(
        command + [f"http://{HOST}:{port}{path}"], capture_output=True, text=True, timeout=duration + 60
    )
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
    non_ok = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    # gunicorn's sync workers close every connection after answering; wrk counts a close it sees while
    # reading as a read error although the response was complete. Only connect, write and timeout count.
    errors = (int(non_ok.group(1)) if non_ok else 0) + (
        int(sockets.group(1)) + int(sockets.group(3)) + int(sockets.group(4)) if sockets else 0
    )
    return Slice(requests, elapsed, latency("50"), latency("99"), errors, per_request)


def _child_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends the pool


def in_processes(function, args: list[tuple], timeout: float) -> list:
    """``function(*each)`` in a load-generator process of its own; a pool that fails is terminated."""
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


def _in_threads(count: int, target, args=(), timeout: float = 60) -> None:
    threads = [threading.Thread(target=target, args=args[index] if args else (), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)


def _closed_loop_process(port: int, path: str, headers: dict, expect: int, threads: int, duration: float):
    deadline = time.perf_counter() + duration
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def loop() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        mine, failures = [], 0
        for _ in range(200_000):  # bounded in count as well as in time
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

    started = time.perf_counter()
    _in_threads(threads, loop, timeout=duration + 30)
    return latencies, errors[0], time.perf_counter() - started


def closed_loop(
    port: int, path: str, headers: dict, expect: int, duration: float, processes: int, threads: int
) -> Slice:
    """As fast as the server answers: ``processes`` x ``threads`` keep-alive connections for ``duration`` s."""
    args = [(port, path, headers, expect, threads, duration)] * processes
    results = in_processes(_closed_loop_process, args, duration + 60)
    latencies = [value for result in results for value in result[0]]
    return Slice(
        requests=len(latencies),
        elapsed=max(result[2] for result in results),
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        errors=sum(result[1] for result in results),
        latencies=latencies,
    )


def _fixed_rate_process(
    port: int, path: str, pollers: list[tuple[dict, float]], interval: float, start_at: float, duration: float
):
    """Each poller sends its headers every ``interval`` s from its phase, on a new connection; a late poll
    goes at once. Latency counts from when the poll was due, so a server that falls behind shows."""
    results: list[tuple[float, float, float, int | str]] = []  # (due, sent, done, status or error)
    lock = threading.Lock()

    def poller(headers: dict, phase: float) -> None:
        mine = []
        for number in range(int(duration / interval) + 1):  # bounded in count and by the run's end
            due = start_at + phase + number * interval
            if due >= start_at + duration:
                break
            time.sleep(max(0.0, due - time.time()))
            sent = time.time()
            try:
                status = fetch(port, path, {**headers, "Connection": "close"})[0]
            except (OSError, http.client.HTTPException) as error:
                status = type(error).__name__
            mine.append((due, sent, time.time(), status))
        with lock:
            results.extend(mine)

    _in_threads(len(pollers), poller, pollers, timeout=duration + 30)
    return results


def fixed_rate(
    port: int, path: str, header_sets: list[dict], expect: int, rate: float, duration: float, processes: int = 2
) -> dict:
    """An open loop at ``rate`` requests/s, one poller per header set (a fleet of routers), for ``duration`` s."""
    interval = len(header_sets) / rate
    pollers = [(headers, index * interval / len(header_sets)) for index, headers in enumerate(header_sets)]
    start_at = time.time() + 1.0
    shares = [pollers[index::processes] for index in range(processes)]
    args = [(port, path, share, interval, start_at, duration) for share in shares if share]
    polls = [poll for result in in_processes(_fixed_rate_process, args, duration + 60) for poll in result]
    if not polls:
        raise BenchError("the fixed-rate run made no polls")
    # The rate is held when every poll due in the window went out in the window: a server that falls
    # behind blocks the pollers' threads and pushes their later polls past its end.
    last_sent = max(sent for _, sent, _, _ in polls)
    ok = [poll for poll in polls if poll[3] == expect]
    latencies = [done - due for due, _, done, _ in ok]
    return {
        "target": rate,
        "polls": len(polls),
        "ok": len(ok),
        "errors": len(polls) - len(ok),
        "error_kinds": dict(collections.Counter(str(poll[3]) for poll in polls if poll[3] != expect)),
        "achieved": len(ok) / max(duration, last_sent - start_at),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else math.nan,
        "service_p99_ms": percentile([done - sent for _, sent, done, _ in ok], 0.99) * 1000,
    }


def bare_posts(port: int, path: str, bodies: list[bytes], headers: dict, concurrency: int, timeout: float):
    """The floor of an HTTP client: every body POSTed over ``concurrency`` keep-alive connections from one
    asyncio loop on plain streams (no client library), each connection sending the next body when it has
    its answer. Returns (seconds, count of answers per status)."""
    head = "".join(f"{name}: {value}\r\n" for name, value in {"Host": f"{HOST}:{port}", **headers}.items())
    statuses: collections.Counter = collections.Counter()

    async def connection(requests: Iterator[bytes]) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            for body in requests:  # shared by the connections: each takes the next body
                writer.write(f"POST {path} HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                answer = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"\r\ncontent-length:\s*(\d+)", answer, re.I)
                await reader.readexactly(int(length.group(1)) if length else 0)
                statuses[int(answer[9:12])] += 1
        finally:
            writer.close()

    async def everything() -> float:
        requests = iter(bodies)
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(connection(requests) for _ in range(concurrency))), timeout)
        return time.perf_counter() - started

    return asyncio.run(everything()), statuses
