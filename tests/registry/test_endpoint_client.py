"""The endpoint client's HTTP: TLS against a certificate authority Steward is told to trust, the proxy
the environment names, and the cap on an answer's size.

Every endpoint is a real server on 127.0.0.1 started by the test; the HTTPS one presents a
certificate signed by a certificate authority the test makes (``cryptography``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from registry.evaluation import endpoints
from registry.evaluation.endpoints import BoundKey, EndpointError, client_for, endpoint_session
from registry.evaluation.runs import run_inline, start_run
from registry.models import EvaluationRun, ModelVersion, RunStatus
from tests.registry.test_evaluation_runs import demo_version, make_suite
from tests.registry.test_scorers import run

ANSWER = {
    "choices": [{"message": {"role": "assistant", "content": "billing"}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 1},
}


@dataclass
class Endpoint:
    """An OpenAI-compatible endpoint on 127.0.0.1 that writes down what it receives."""

    server: ThreadingHTTPServer
    scheme: str
    requests: list[dict] = field(default_factory=list)
    padding: int = 0  # bytes of white space after the answer (to make it large)
    chunked: bool = False  # answer without a Content-Length

    def url(self, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.server.server_address[1]}/v1"


def _serve(tls: ssl.SSLContext | None = None) -> Endpoint:
    endpoint: Endpoint

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - the standard library's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            endpoint.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            answer = json.dumps(ANSWER).encode() + b" " * endpoint.padding
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if endpoint.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(answer), answer))
            else:
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    endpoint = Endpoint(server, "https" if tls else "http")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return endpoint


def _certificate_authority(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A certificate authority made here (its PEM file) and a server context whose certificate it signed
    for 127.0.0.1 and localhost."""
    now = dt.datetime.now(dt.UTC)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Steward test CA")])

    def certificate(subject: x509.Name, key, *, ca: bool) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )

    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False)
    usage |= dict(encipher_only=False, decipher_only=False)
    ca = (
        certificate(ca_name, ca_key, ca=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **usage), True)
        .sign(ca_key, hashes.SHA256())
    )
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    server = (
        certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), server_key, ca=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage), True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, chain, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key_file)
    return ca_file, context


@pytest.fixture
def https_endpoint(tmp_path) -> Iterator[tuple[Endpoint, Path]]:
    ca_file, context = _certificate_authority(tmp_path)
    endpoint = _serve(context)
    yield endpoint, ca_file
    endpoint.server.shutdown()
    endpoint.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    found = _serve()
    yield found
    found.server.shutdown()
    found.server.server_close()


def _ask(base_url: str, key: BoundKey | None = None) -> endpoints.Completion:
    """One question through a fresh session, with no retries."""
    version = ModelVersion(
        base_url=base_url, provider_model_id="demo", input_price_micro_usd=0, output_price_micro_usd=0
    )

    async def ask() -> endpoints.Completion:
        async with endpoint_session(1) as http:
            client = client_for(version, http, key=key, timeout=10, retries=0)
            return await client.complete([{"role": "user", "content": "Classify: I was charged twice"}])

    return run(ask())


# --- HTTPS -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_against_an_https_endpoint_signed_by_the_configured_ca_completes(
    bob, https_endpoint, settings, monkeypatch
) -> None:
    endpoint, ca_file = https_endpoint
    settings.STEWARD_EVALUATION_CA_BUNDLE = str(ca_file)
    monkeypatch.setenv("DEMO_ENDPOINT_API_KEY", "sk-demo-over-tls")
    suite = make_suite("over-tls", 3)
    version = demo_version(bob, "demo-tls", endpoint.url())

    finished = run_inline(start_run(suite, version, by=bob, dispatch=False))

    assert finished.status == RunStatus.COMPLETED and finished.errors == 0, finished.detail
    assert finished.score_bp is not None and finished.results.count() == 3
    assert len(endpoint.requests) == 3
    assert {r["headers"]["Authorization"] for r in endpoint.requests} == {"Bearer sk-demo-over-tls"}


def test_an_https_endpoint_whose_ca_is_not_trusted_gets_nothing(https_endpoint) -> None:
    endpoint, _ = https_endpoint

    with pytest.raises(EndpointError) as refused:
        _ask(endpoint.url(), BoundKey("PARTNER_API_KEY", ("127.0.0.1",), "sk-partner"))

    assert "the TLS certificate is not trusted" in str(refused.value)
    assert "STEWARD_EVALUATION_CA_BUNDLE" in str(refused.value)
    assert refused.value.attempts == 1  # not retried: asking again would not change the certificate
    assert endpoint.requests == []


@pytest.mark.django_db
def test_a_ca_bundle_that_cannot_be_read_fails_the_run_and_names_the_setting(
    bob, https_endpoint, settings, tmp_path
) -> None:
    endpoint, _ = https_endpoint
    settings.STEWARD_EVALUATION_CA_BUNDLE = str(tmp_path / "missing.pem")
    suite = make_suite("missing-ca", 2)

    run_inline(start_run(suite, demo_version(bob, "demo-tls", endpoint.url()), by=bob, dispatch=False))

    failed = EvaluationRun.objects.get(suite=suite)
    assert failed.status == RunStatus.FAILED
    assert failed.detail.startswith("STEWARD_EVALUATION_CA_BUNDLE: cannot load certificate authorities from ")
    assert endpoint.requests == []


# --- proxies and size ----------------------------------------------------------------------------------


def test_the_proxy_the_environment_names_carries_the_request(endpoint, monkeypatch) -> None:
    for name in ("no_proxy", "NO_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{endpoint.server.server_address[1]}")
    # A host that never resolves: only the proxy can have answered.
    key = BoundKey("PARTNER_API_KEY", ("model-endpoint.invalid",), "sk-partner")

    completion = _ask("http://model-endpoint.invalid/v1", key)

    assert completion.text == "billing" and completion.input_tokens == 12
    [request] = endpoint.requests
    assert request["path"] == "http://model-endpoint.invalid/v1/chat/completions"
    assert request["headers"]["Host"] == "model-endpoint.invalid"
    assert request["headers"]["Authorization"] == "Bearer sk-partner"


@pytest.mark.parametrize("chunked", [False, True], ids=["with-length", "chunked"])
def test_an_answer_larger_than_the_cap_is_an_error(endpoint, monkeypatch, chunked) -> None:
    monkeypatch.setattr(endpoints, "MAX_RESPONSE_BYTES", 1024)
    endpoint.padding, endpoint.chunked = 2048, chunked

    with pytest.raises(EndpointError, match="the answer is larger than 1024 bytes"):
        _ask(endpoint.url())

    endpoint.padding = 0
    assert _ask(endpoint.url()).text == "billing"  # under the cap, the same endpoint answers
