"""Disk full on the embedded default (issue 12's campaign): SQLite and the blob files share a
small filesystem of the test's own (tmpfs), which the test fills to the last byte.

While it is full: SMTP submission answers ``452 4.3.1`` (never a 250: nothing could be kept),
the API ``507`` problem+json with ``Retry-After``, ``/healthz`` says so; nothing is half
stored and the database stays sound.  Once space is freed everything works again by itself:
the same messages are accepted, delivered, sealed, and the ledger verifies.
"""

from __future__ import annotations

import base64
import smtplib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Table, func, select

from sealpost.api.app import create_app
from sealpost.app import Sealpost, build
from sealpost.communications.tables import communications
from sealpost.config import Settings
from sealpost.ledger.tables import evidence_records
from sealpost.tenants.senders import SmtpCredential
from tests.conftest import require_service
from tests.support.ledger_checks import assert_ledger_whole
from tests.support.mail import RECIPIENT_DOMAIN, _client_tls, email_settings, make_message
from tests.support.small_disk import fill, is_full, small_disk
from tests.support.smtp_peer import RecipientServer

LARGE = 2 * 1024 * 1024
"""Above ``content_inline_max_bytes`` (1 MiB): stored as a blob file, not in the database."""


@dataclass
class Embedded:
    sp: Sealpost
    data_dir: Path
    tenant_id: str
    credential: SmtpCredential
    client: TestClient
    key: dict[str, str]
    peer: RecipientServer

    def smtp(self, raw: bytes, rcpt: str) -> tuple[int, str]:
        """One submission over STARTTLS + AUTH; the reply to DATA, whatever it is."""
        port = self.sp.smtp_ports["submission"]
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("crm.acme.test")
            client.starttls(context=_client_tls())
            client.ehlo("crm.acme.test")
            client.login(self.credential.username, self.credential.password)
            client.mail("service@acme.test")
            client.rcpt(rcpt)
            try:
                code, text = client.data(raw)
            except smtplib.SMTPDataError as exc:
                code, text = exc.smtp_code, exc.smtp_error
        return code, text.decode()

    def api(self, raw: bytes, rcpt: str) -> tuple[int, dict[str, str], dict[str, object]]:
        body = {"raw": base64.b64encode(raw).decode(), "recipients": [rcpt]}
        answer = self.client.post("/v1/communications", json=body, headers=self.key)
        return answer.status_code, dict(answer.headers), answer.json()

    def count(self, table: Table) -> int:
        with self.sp.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def integrity(self) -> str:
        with self.sp.engine.connect() as conn:
            return str(conn.exec_driver_sql("PRAGMA integrity_check").scalar_one())


@pytest.fixture
def embedded(keys_dir: Path) -> Iterator[Embedded]:
    """``sealpost serve``'s parts on the embedded default, its data dir on a 16 MiB tmpfs."""
    try:
        disk = small_disk("16m")
        data_dir = disk.__enter__()
    except OSError as exc:
        require_service("a tmpfs of the test's own (mounting needs root)", str(exc))
        pytest.skip("unreachable")  # require_service has failed or skipped already
    try:
        with RecipientServer() as peer:
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                data_dir=data_dir,
                keys_dir=keys_dir,
                batch_window_ms=10,
                ledger_origin="disk-full.sealpost.test/ledger",
                certificates_enabled=False,
                health_min_free_bytes=2 * 1024 * 1024,  # of the 16 MiB
            )
            sp = build(email_settings(settings, peer.port))
            sp.supervisor.first_backoff = 0.2
            tenant_id = sp.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}").id
            credential = sp.senders.issue_smtp_credential(tenant_id)
            key = {"Authorization": f"Bearer {sp.tenants.issue_api_key(tenant_id, 'crm').secret}"}
            sp.start_background()
            sp.start_email()
            try:
                with TestClient(create_app(sp, start_background=False)) as client:
                    yield Embedded(sp, data_dir, tenant_id, credential, client, key, peer)
            finally:
                sp.stop_background()
                sp.engine.dispose()
    finally:
        disk.__exit__(None, None, None)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _message(name: str, size: int = 0) -> bytes:
    """A message to ``name@recipient.test``, padded by about ``size`` bytes of body lines."""
    raw = make_message(f"Notice {name}", to=f"{name}@{RECIPIENT_DOMAIN}")
    return raw + (b"X" * 76 + b"\r\n") * (size // 78)


def test_a_full_disk_refuses_clearly_keeps_nothing_half_stored_and_recovers(
    embedded: Embedded,
) -> None:
    env, sp = embedded, embedded.sp
    assert env.smtp(_message("before"), f"before@{RECIPIENT_DOMAIN}")[0] == 250
    _wait(lambda: len(env.peer.handler.received) == 1, 20, "the first delivery")
    _wait(lambda: sp.log_storage.pending_count() == 0, 10, "the first records sealed")
    assert env.client.get("/healthz").json()["status"] == "ok"
    communications_before = env.count(communications)
    records_before = env.count(evidence_records)

    filler = fill(env.data_dir)
    tries = {
        "smtp-small": _message("smtp-small"),
        "smtp-large": _message("smtp-large", LARGE),
        "api-small": _message("api-small"),
        "api-large": _message("api-large", LARGE),
    }
    for name, raw in tries.items():
        rcpt = f"{name}@{RECIPIENT_DOMAIN}"
        if name.startswith("smtp"):
            code, text = env.smtp(raw, rcpt)
            assert (code, text.split()[0]) == (452, "4.3.1"), (name, code, text)
        else:
            status, headers, problem = env.api(raw, rcpt)
            assert status == 507, (name, status, problem)
            assert headers["content-type"] == "application/problem+json"
            assert headers["retry-after"] == "60"
            assert problem["type"] == "urn:sealpost:problem:storage_full"
            assert "storage is full" in str(problem["detail"])
    assert is_full(env.data_dir)

    # nothing half-stored: no communication, no record, no blob (nor a blob's temporary file)
    # of any refused message, and the database is sound
    assert env.count(communications) == communications_before
    assert env.count(evidence_records) == records_before
    blobs = sp.settings.resolved_blob_dir
    assert not [p for p in blobs.rglob("*") if p.is_file()] if blobs.exists() else True
    assert env.integrity() == "ok"

    # health says so while it lasts, in words
    health = env.client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["status"] == "unhealthy"
    full = [p for p in health.json()["problems"] if p.startswith("storage is full")]
    assert full and "data directory" in full[0] and str(env.data_dir) not in str(health.json())

    filler.unlink()  # the operator frees space: everything works again, by itself
    for name, raw in tries.items():
        rcpt = f"{name}@{RECIPIENT_DOMAIN}"
        if name.startswith("smtp"):
            code, text = env.smtp(raw, rcpt)
            assert code == 250, (name, code, text)
        else:
            status, _, body = env.api(raw, rcpt)
            assert status == 201, (name, status, body)
    _wait(lambda: len(env.peer.handler.received) == 1 + len(tries), 30, "the deliveries")
    delivered = {r.rcpt_tos[0].split("@")[0]: r.data for r in env.peer.handler.received}
    for name, raw in tries.items():  # whole (the large ones read back from their blobs)
        assert delivered[name].endswith(raw.split(b"\r\n\r\n", 1)[1]), name
    _wait(lambda: env.client.get("/healthz").status_code == 200, 30, "/healthz to recover")
    assert env.client.get("/healthz").json()["problems"] == []
    _wait(lambda: sp.log_storage.pending_count() == 0, 15, "sealing to catch up")
    assert assert_ledger_whole(sp) == records_before + 2 * len(tries)
    assert env.integrity() == "ok"


def test_health_warns_before_the_disk_is_full(settings: Settings) -> None:
    """Below ``SEALPOST_HEALTH_MIN_FREE_BYTES`` of free space: ``degraded`` with 200 (writes
    still work), the directory named by its role only; 0 turns the check off."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # (on PostgreSQL: for the blobs)
    for minimum, expected in ((10**18, "degraded"), (0, "ok")):
        sp = build(settings.model_copy(update={"health_min_free_bytes": minimum}))
        try:
            with TestClient(create_app(sp, start_background=False)) as client:
                answer = client.get("/healthz")
            assert answer.status_code == 200
            assert answer.json()["status"] == expected
            low = [p for p in answer.json()["problems"] if p.startswith("storage is low")]
            assert (expected == "degraded") == bool(low), answer.json()
            assert str(settings.data_dir) not in answer.text
        finally:
            sp.engine.dispose()
