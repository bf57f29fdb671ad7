"""Bounded bodies: every content type is limited before anything reads it, anonymous requests get the
smallest limit, and a refused upload is never written to disk.

The big upload goes over a real socket to the live server, as an attacker's client would send it.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

MEGABYTE = 1024 * 1024


def _raw_post(address: str, path: str, content_type: str, length: int, send: int) -> bytes:
    """Announce ``length`` bytes, send the first ``send`` of them, and read the server's first answer."""
    host, port = address.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
        )
        part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        sock.sendall(head.encode() + part + b"x" * (send - len(part)))
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length_of(answer):
            answer += sock.recv(65536)
        return answer


def _length_of(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


@pytest.mark.django_db(transaction=True)
def test_a_50_mb_multipart_post_to_sign_in_gets_413_and_nothing_is_written_to_disk(
    live_server, settings, tmp_path: Path
) -> None:
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    answer = _raw_post(live_server.url, "/login/", "multipart/form-data; boundary=b", 50 * MEGABYTE, 256 * 1024)
    status_line = answer.split(b"\r\n", 1)[0]
    assert b" 413 " in status_line, answer[:300]
    assert b"at most 16384 bytes are accepted here" in answer
    assert list(tmp_path.iterdir()) == []  # not a byte of it was spooled


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data; boundary=b", "application/x-www-form-urlencoded", "application/json", "text/plain"],
)
def test_anonymous_bodies_of_every_type_get_the_smallest_limit(db, client, content_type) -> None:
    response = client.post("/login/", b"x" * (20 * 1024), content_type=content_type)
    assert response.status_code == 413
    assert "at most 16384 bytes" in response.content.decode()


def test_a_signed_in_person_may_upload_evidence_sized_files_but_not_more(bob, client_for) -> None:
    client = client_for(bob)
    body = b"x" * (20 * 1024)
    assert client.post("/profile/", body, content_type="multipart/form-data; boundary=b").status_code != 413
    big = b"x" * (13 * MEGABYTE)
    response = client.post("/compliance/certifications/", big, content_type="multipart/form-data; boundary=b")
    assert response.status_code == 413


def test_the_api_answers_413_in_json_and_a_bad_length_in_400(bob, client_for) -> None:
    client = client_for(bob)
    response = client.post("/api/v1/model-versions", "x" * (6 * MEGABYTE), content_type="application/json")
    assert response.status_code == 413 and "at most" in response.json()["detail"]
    bad = client.post("/api/v1/model-versions", "{}", content_type="application/json", CONTENT_LENGTH="ten")
    assert bad.status_code == 400 and "Content-Length" in bad.json()["detail"]


def test_a_router_token_gets_the_decisions_limit_before_the_body_is_read(db, client) -> None:
    body = json.dumps({"records": []})
    response = client.post(
        "/api/v1/decisions", body, content_type="application/json", HTTP_AUTHORIZATION="Bearer swr_unknown"
    )
    assert response.status_code == 401  # too small to refuse; an unknown token is refused before reading
