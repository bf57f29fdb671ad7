"""Take a service away from one Steward process only, never from the machine.

``Relay`` is a TCP relay on 127.0.0.1 to PostgreSQL or Redis: the Steward process under test is
pointed at the relay instead of the service, and ``cut()`` makes the relay's port refuse connections
and closes the open ones, so that for this process the service is down while the tests (and every
other process) keep using it. ``restore()`` brings it back on the same port. ``closed_port()`` is a
port nothing listens on, for a service that is down from the start. ``steward_server`` runs Steward
under gunicorn on 127.0.0.1, on the test database unless told otherwise.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .workers import worker_database_url

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT = 60


@dataclass
class Relay:
    """Relays every connection to ``target`` (host, port) until cut."""

    target: tuple[str, int]
    port: int = 0
    listener: socket.socket | None = None
    connections: list[socket.socket] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Relay:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                incoming, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                outgoing = socket.create_connection(self.target, timeout=5)
            except OSError:
                incoming.close()
                continue
            outgoing.settimeout(None)
            with self.lock:
                if self.listener is not listener:
                    incoming.close()
                    outgoing.close()
                    return
                self.connections += [incoming, outgoing]
            for source, sink in ((incoming, outgoing), (outgoing, incoming)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """From now on the port refuses connections, and the open ones are closed."""
        with self.lock:
            listener, self.listener = self.listener, None
            connections, self.connections = self.connections, []
        if listener is not None:
            listener.close()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def restore(self) -> None:
        """Listen again, on the same port."""
        self.start()

    def url(self, scheme_and_auth: str, path: str) -> str:
        """``postgres://user@`` + ``/name`` → the URL that reaches the service through the relay."""
        return f"{scheme_and_auth}127.0.0.1:{self.port}{path}"


@contextlib.contextmanager
def relay_to(host: str, port: int) -> Iterator[Relay]:
    relay = Relay((host, port)).start()
    try:
        yield relay
    finally:
        relay.cut()


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound (so nothing else takes it), never listening."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_relay_url(relay: Relay) -> str:
    """The test database's URL through ``relay``."""
    url = worker_database_url()
    scheme_and_auth, _, rest = url.partition("@")
    return f"{scheme_and_auth}@127.0.0.1:{relay.port}/{rest.partition('/')[2]}"


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def steward_server(tmp_path: Path, **env: str) -> Iterator[Server]:
    """Steward under gunicorn (one worker process, four threads) on 127.0.0.1, with ``env`` on top of
    the test run's environment and the test database; stopped at the end."""
    port = free_port()
    log = tmp_path / f"gunicorn-{port}.log"
    environment = {
        **os.environ,
        "DATABASE_URL": worker_database_url(),
        "STEWARD_DEBUG": "0",
        "STEWARD_LOG_LEVEL": "WARNING",
        "STEWARD_DB_CONN_MAX_AGE": "60",
        **env,
    }
    command = [str(Path(sys.executable).parent / "gunicorn"), "steward.wsgi:application"]
    command += ["--workers", "1", "--worker-class", "gthread", "--threads", "4", "--timeout", "60"]
    command += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--error-logfile", "-"]
    # Steward's own log (to stderr) and gunicorn's, in one file the test can read.
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=environment, start_new_session=True, stdout=output, stderr=output
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited with code {process.returncode}:\n{server.log_text()[-3000:]}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(f"{server.url}/login/", timeout=5) as answer:  # noqa: S310
                    if answer.status == 200:
                        break
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not answer within {SERVER_START_TIMEOUT} s:\n{server.log_text()[-3000:]}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
