"""Issue 12, defect 2: a 400 MiB POST without a key to ``/v1/signatures`` was read and parsed
(RSS 207 → 1,004 MiB) before its 422; the same on ``/tsa``.  Now every route has a body
limit, a ``/v1`` body is not read before its key is checked, and a refusal closes the
connection instead of draining the rest."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asn1crypto import tsp
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from tests.support.browser import LiveServer
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv
from tests.support.serve import SealpostProcess, serve_env
from tests.support.smtp_peer import free_port

MIB = 1 << 20
CHUNK = 64 * 1024
PROBLEM = "application/problem+json"


@pytest.fixture
def database_url(tmp_path: Path) -> str:  # limits are decided before any query's dialect
    return f"sqlite:///{tmp_path / 'sealpost.db'}"


@pytest.fixture
def app(sealpost: Sealpost) -> FastAPI:
    return create_app(sealpost, start_background=False)


@pytest.fixture
def key(sealpost: Sealpost, tenant_id: str) -> str:
    return sealpost.tenants.issue_api_key(tenant_id).secret


def _stream(total: int) -> Iterator[bytes]:
    """``total`` bytes in 64 KiB chunks, made as they are asked for."""
    chunk = b"x" * CHUNK
    for _ in range(total // CHUNK):
        yield chunk


class AsgiCall:
    """One request straight into the ASGI app, counting the body bytes the app pulls."""

    def __init__(self, app: FastAPI, method: str, path: str, headers: dict[str, str]) -> None:
        self.app, self.method, self.path, self.headers = app, method, path, headers
        self.pulled = 0
        self.sent: list[dict[str, Any]] = []

    def run(self, body: Iterator[bytes]) -> AsgiCall:
        async def receive() -> dict[str, Any]:
            chunk = next(body, None)
            if chunk is None:
                return {"type": "http.request", "body": b"", "more_body": False}
            self.pulled += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": True}

        async def send(message: dict[str, Any]) -> None:
            self.sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": self.method,
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in self.headers.items()],
            "client": ("203.0.113.9", 40000),
            "server": ("testserver", 80),
            "state": {},
        }
        asyncio.run(self.app(scope, receive, send))  # type: ignore[arg-type]
        return self

    @property
    def status(self) -> int:
        status: int = self.sent[0]["status"]
        return status

    @property
    def response_headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.sent[0]["headers"]}

    @property
    def problem(self) -> dict[str, Any]:
        assert self.response_headers["content-type"] == PROBLEM
        body = b"".join(m.get("body", b"") for m in self.sent[1:])
        parsed: dict[str, Any] = json.loads(body)
        return parsed


@pytest.mark.parametrize(
    "path", ["/v1/signatures", "/v1/communications", "/v1/webhooks", "/v1/events/replay"]
)
def test_a_400_mib_stream_without_a_key_is_refused_before_a_byte_is_read(
    app: FastAPI, path: str
) -> None:
    call = AsgiCall(app, "POST", path, {"content-type": "application/json"})
    call.run(_stream(400 * MIB))  # chunked: no Content-Length
    assert call.status == 401
    assert call.problem["type"] == "urn:sealpost:problem:unauthorized"
    assert call.response_headers["connection"] == "close"
    assert call.pulled == 0

    wrong = AsgiCall(app, "POST", path, {"authorization": "Bearer sp_000000000000_nope"})
    wrong.run(_stream(400 * MIB))
    assert wrong.status == 401 and wrong.pulled == 0


def test_an_announced_length_over_the_limit_is_refused_unread_key_or_not(
    app: FastAPI, key: str
) -> None:
    for headers in ({}, {"authorization": f"Bearer {key}"}):
        call = AsgiCall(app, "POST", "/v1/signatures", {"content-length": str(400 * MIB)})
        call.headers.update(headers)
        call.run(_stream(400 * MIB))
        assert call.status == 413 and call.pulled == 0
        limit = app.state.sealpost.settings.resolved_api_max_signature_body_bytes
        assert call.problem["max_bytes"] == limit
        assert call.problem["type"] == "urn:sealpost:problem:too_large"
        assert call.response_headers["connection"] == "close"


def test_an_authenticated_stream_is_cut_at_the_limit_with_a_413(app: FastAPI, key: str) -> None:
    limit = app.state.sealpost.settings.resolved_api_max_signature_body_bytes
    call = AsgiCall(app, "POST", "/v1/signatures", {"authorization": f"Bearer {key}"})
    call.run(_stream(400 * MIB))
    assert call.status == 413
    assert call.problem["max_bytes"] == limit and call.problem["status"] == 413
    assert limit < call.pulled <= limit + CHUNK  # the app read no further than the limit
    assert len([m for m in call.sent if m["type"] == "http.response.start"]) == 1


def test_over_a_real_server_the_attack_costs_the_server_a_few_mib(
    sealpost: Sealpost, key: str
) -> None:
    """uvicorn on 127.0.0.1: the client streams 400 MiB; the refusal comes at once and the
    connection closes, so the client gets to push only what the socket buffers hold."""
    with LiveServer(create_app(sealpost, start_background=False), free_port()) as live:
        for headers, status in (({}, 401), ({"Authorization": f"Bearer {key}"}, 413)):
            pushed = 0

            def body() -> Iterator[bytes]:
                nonlocal pushed
                for chunk in _stream(400 * MIB):
                    pushed += len(chunk)
                    yield chunk

            started = time.monotonic()
            answer = httpx.post(
                f"{live.url}/v1/signatures", content=body(), headers=headers, timeout=30
            )
            assert answer.status_code == status, answer.text
            assert answer.headers["content-type"] == PROBLEM
            assert time.monotonic() - started < 15
            limit = sealpost.settings.resolved_api_max_signature_body_bytes
            assert pushed < limit + 32 * MIB, f"the client pushed {pushed / MIB:.0f} MiB"
        assert httpx.get(f"{live.url}/healthz", timeout=10).status_code == 200


def _timestamp_query() -> bytes:
    return bytes(
        tsp.TimeStampReq(
            {
                "version": "v1",
                "message_imprint": {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "hashed_message": hashlib.sha256(b"evidence").digest(),
                },
                "cert_req": True,
            }
        ).dump()
    )


def test_the_tsa_refuses_10_mib_and_still_answers_a_real_query(app: FastAPI) -> None:
    query = {"Content-Type": "application/timestamp-query"}
    with TestClient(app) as client:
        big = client.post("/tsa", content=b"\x30" * (10 * MIB), headers=query)
        assert big.status_code == 413 and big.headers["content-type"] == PROBLEM
        assert big.json()["max_bytes"] == 16 * 1024
        real = client.post("/tsa", content=_timestamp_query(), headers=query)
        assert real.status_code == 200
        assert real.headers["content-type"] == "application/timestamp-reply"
        reply = tsp.TimeStampResp.load(real.content)
        assert reply["status"]["status"].native == "granted"
    call = AsgiCall(app, "POST", "/tsa", {"content-type": "application/timestamp-query"})
    call.run(_stream(10 * MIB))  # streamed, no Content-Length
    assert call.status == 413 and call.pulled <= 16 * 1024 + CHUNK


def test_the_signing_page_takes_a_drawn_signature_but_not_megabytes(app: FastAPI) -> None:
    with TestClient(app) as client:
        big = client.post("/sign/api/sign", content=b"{" + b" " * (2 * MIB) + b"}")
        assert big.status_code == 413 and big.json()["max_bytes"] == MIB
        small = client.post("/sign/api/sign", json={"consent": True, "typed": "Jane"})
        assert small.status_code != 413  # refused for its session, not its size


@pytest.fixture
def mail_overrides() -> dict[str, object]:
    return {"api_max_communication_body_bytes": 256 * 1024, "api_max_body_bytes": 4096}


def _padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON, padded with trailing spaces (still valid JSON) to exactly ``size``."""
    data = json.dumps(body).encode()
    assert len(data) <= size
    return data + b" " * (size - len(data))


def test_a_body_at_the_limit_works_and_one_byte_more_does_not(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    limit = mail_env.sp.settings.resolved_api_max_communication_body_bytes
    send = {
        "from": "care@acme.test",
        "to": [f"ann@{RECIPIENT_DOMAIN}"],
        "subject": "Near the limit",
        "text": "a" * (200 * 1024),
    }
    headers = {**mail_key, "Content-Type": "application/json"}
    at_limit = mail_client.post("/v1/communications", content=_padded(send, limit), headers=headers)
    assert at_limit.status_code == 201, at_limit.text
    over = mail_client.post("/v1/communications", content=_padded(send, limit + 1), headers=headers)
    assert over.status_code == 413 and over.json()["max_bytes"] == limit

    # a route without documents has the small default limit
    hook = {"url": "https://hooks.example.com/sealpost", "description": "x" * 5000}
    refused = mail_client.post("/v1/webhooks", json=hook, headers=mail_key)
    assert refused.status_code == 413 and refused.json()["max_bytes"] == 4096


def _peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert found, status
    return int(found.group(1)) / 1024


def test_sealpost_serve_stays_small_under_the_400_mib_attack(
    tmp_path: Path, keys_dir: Path
) -> None:
    """The attack as reported, on ``sealpost serve``: its peak RSS barely moves."""
    smtp_port, api_port = free_port(), free_port()
    env = serve_env(
        tmp_path / "data",
        keys_dir,
        smtp_port,
        SEALPOST_API_PORT=str(api_port),
        SEALPOST_API_MAX_SIGNATURE_BODY_BYTES=str(8 * MIB),
    )
    server = SealpostProcess(tmp_path, env, smtp_port)
    printed = server.run("tenant", "create", "Acme")
    found = re.search(r"sp_[0-9a-f]+_[A-Za-z0-9_\-]+", printed)
    assert found, printed
    url = f"http://127.0.0.1:{api_port}"
    try:
        pid = server.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)
        before = _peak_rss_mib(pid)
        for path, headers, status in (
            ("/v1/signatures", {}, 401),
            ("/tsa", {"Content-Type": "application/timestamp-query"}, 413),
            ("/v1/signatures", {"Authorization": f"Bearer {found.group(0)}"}, 413),
        ):
            answer = httpx.post(f"{url}{path}", content=_stream(400 * MIB), headers=headers)
            assert answer.status_code == status, (path, answer.text)
        grown = _peak_rss_mib(pid) - before
        assert grown < 120, f"peak RSS grew by {grown:.0f} MiB (it was ~800 MiB before)"
    finally:
        server.stop()
