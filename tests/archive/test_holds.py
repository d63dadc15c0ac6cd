"""Legal holds and the retention purge: a hold keeps what it covers past its retention, a
release lets the purge take it; the purge is evidence, keeps the metadata, and deletes bytes
only when no other message (of any tenant) has them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.archive.model import Source, Viewer
from sealpost.archive.service import ArchiveService
from sealpost.archive.tables import archive_messages, archive_search
from sealpost.config import Settings
from sealpost.db.blobs import BlobStore
from sealpost.errors import ServiceUnavailable
from sealpost.events.tables import outbox_events
from sealpost.ledger.tables import evidence_records

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def mail(subject: str, *, sender: str = "cliente@gmail.com", body: str = "Hola.\n") -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = "soporte@acme.es"
    m["Subject"] = subject
    m["Date"] = "Mon, 05 Jan 2026 09:00:00 +0100"
    m.set_content(body)
    return m.as_bytes()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(sealpost: Sealpost) -> Clock:
    c = Clock()
    sealpost.clock = c
    return c


@pytest.fixture
def client(sealpost: Sealpost) -> Iterator[TestClient]:
    with TestClient(create_app(sealpost, start_background=False)) as c:
        yield c


@pytest.fixture
def admin(sealpost: Sealpost, tenant_id: str, clock: Clock) -> dict[str, str]:
    sealpost.archive.update_settings(tenant_id, own_domains=["acme.es"], retention_days=365)
    return {"Authorization": f"Bearer {sealpost.tenants.issue_api_key(tenant_id).secret}"}


def agent(client: TestClient, admin: dict[str, str], email: str, role: str) -> dict[str, str]:
    r = client.post("/v1/archive/agents", json={"email": email, "role": role}, headers=admin)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['api_key']}"}


def ingest(sp: Sealpost, tenant_id: str, raw: bytes) -> Any:
    return sp.archive.ingest(tenant_id, raw, Source("journal")).message


def records(sp: Sealpost, event: str, subject_id: str) -> list[Any]:
    r = evidence_records.c
    with sp.engine.connect() as conn:
        return list(
            conn.execute(select(r.id).where(r.subject_id == subject_id, r.event == event)).all()
        )


def raw_status(client: TestClient, admin: dict[str, str], message_id: str) -> int:
    return client.get(f"/v1/archive/messages/{message_id}/raw", headers=admin).status_code


def test_a_thread_hold_keeps_its_thread_past_retention_until_released(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str], clock: Clock
) -> None:
    held = ingest(sealpost, tenant_id, mail("Reclamación 42"))
    free = ingest(sealpost, tenant_id, mail("Otra cosa", sender="otro@gmail.com"))
    auditor = agent(client, admin, "auditora@acme.es", "auditor")
    r = client.post(
        "/v1/archive/holds",
        json={"kind": "thread", "thread_id": held.thread_id, "reason": "Demanda 123/2026"},
        headers=auditor,
    )
    assert r.status_code == 201, r.text
    hold = r.json()
    assert hold["active"] and hold["placed_by"].startswith("agent:")
    purger = sealpost.archive_holds.purger

    clock.now = T0 + timedelta(days=364)  # not expired yet: nothing goes
    assert purger.purge_due().purged == 0
    clock.now = T0 + timedelta(days=366)
    result = purger.purge_due()
    assert (result.purged, result.held, result.blobs_deleted) == (1, 1, 1)
    assert raw_status(client, admin, held.id) == 200
    assert raw_status(client, admin, free.id) == 410
    kept = client.get(f"/v1/archive/messages/{free.id}", headers=admin).json()
    assert kept["subject"] == "Otra cosa" and kept["purged_at"]  # the metadata stays
    assert len(records(sealpost, "Purged", free.id)) == 1
    assert records(sealpost, "Purged", held.id) == []
    assert not sealpost.archive_blobs.exists(free.sha256)

    r = client.post(
        f"/v1/archive/holds/{hold['id']}/release", json={"reason": "Caso cerrado"}, headers=auditor
    )
    assert r.status_code == 200 and r.json()["active"] is False
    again = client.post(
        f"/v1/archive/holds/{hold['id']}/release", json={"reason": "otra vez"}, headers=auditor
    )
    assert again.status_code == 409
    assert purger.purge_due().purged == 1
    assert raw_status(client, admin, held.id) == 410
    assert len(records(sealpost, "LegalHoldPlaced", hold["id"])) == 1
    assert len(records(sealpost, "LegalHoldReleased", hold["id"])) == 1
    with sealpost.engine.connect() as conn:
        types = set(conn.execute(select(outbox_events.c.type)).scalars())
    assert {
        "sealpost.archive.hold_placed",
        "sealpost.archive.hold_released",
        "sealpost.archive.message_purged",
    } <= types


def test_an_address_hold_covers_the_customer_s_later_mail_too(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str], clock: Clock
) -> None:
    r = client.post(
        "/v1/archive/holds",
        json={"kind": "address", "address": "Pleito@Example.com", "reason": "Reclamación"},
        headers=admin,
    )
    assert r.status_code == 201 and r.json()["address"] == "pleito@example.com"
    clock.now = T0 + timedelta(days=10)  # after the hold was placed
    later = ingest(sealpost, tenant_id, mail("Nueva queja", sender="pleito@example.com"))
    reply = ingest(
        sealpost,
        tenant_id,
        mail("Re: Nueva queja", sender="ana@acme.es").replace(
            b"To: soporte@acme.es", b"To: pleito@example.com"
        ),
    )
    other = ingest(sealpost, tenant_id, mail("Sin relación", sender="x@example.com"))
    clock.now = T0 + timedelta(days=400)
    assert sealpost.archive_holds.purger.purge_due().purged == 1
    assert raw_status(client, admin, later.id) == 200
    assert raw_status(client, admin, reply.id) == 200
    assert raw_status(client, admin, other.id) == 410


def test_a_query_hold_keeps_what_matched_and_what_matches_at_purge_time(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str], clock: Clock
) -> None:
    before = ingest(sealpost, tenant_id, mail("Garantía del horno"))
    unrelated = ingest(sealpost, tenant_id, mail("Factura de enero"))
    supervisor = agent(client, admin, "jefa@acme.es", "supervisor")
    r = client.post(
        "/v1/archive/holds",
        json={
            "kind": "query",
            "query": {"text": "GARANTÍA", "from": "Cliente@gmail.com"},
            "reason": "Inspección de consumo",
        },
        headers=supervisor,
    )
    assert r.status_code == 201, r.text
    assert r.json()["frozen_messages"] == 1
    assert r.json()["query"] == {"text": "GARANTÍA", "from": "Cliente@gmail.com"}
    clock.now = T0 + timedelta(days=1)
    after = ingest(sealpost, tenant_id, mail("Otra garantía"))
    clock.now = T0 + timedelta(days=400)
    # not indexed yet, no message can be told apart by its text: the purge keeps them all
    assert sealpost.archive_holds.purger.purge_due().purged == 0
    assert raw_status(client, admin, unrelated.id) == 200
    sealpost.archive_search.index_all()
    assert sealpost.archive_holds.purger.purge_due().purged == 1
    assert raw_status(client, admin, before.id) == 200
    assert raw_status(client, admin, after.id) == 200  # re-evaluated at purge time
    assert raw_status(client, admin, unrelated.id) == 410


def test_a_purged_message_s_text_leaves_the_search_index(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str], clock: Clock
) -> None:
    gone = ingest(sealpost, tenant_id, mail("Reclamación", body="Mi contraseña es zanahoria.\n"))
    sealpost.archive_search.index_all()

    def hits() -> list[str]:
        r = client.get("/v1/archive/search", params={"q": "zanahoria"}, headers=admin)
        assert r.status_code == 200, r.text
        return [m["id"] for m in r.json()["items"]]

    assert hits() == [gone.id]
    sealpost.archive.update_settings(tenant_id, retention_days=30)
    clock.now = T0 + timedelta(days=31)
    assert sealpost.archive_holds.purger.purge_due().purged == 1
    assert hits() == []
    with sealpost.engine.connect() as conn:  # the text is kept nowhere, not only unshown
        assert (
            conn.execute(
                select(archive_search.c.message_id).where(archive_search.c.message_id == gone.id)
            ).all()
            == []
        )


def test_agents_may_not_hold_and_bad_holds_are_refused_clearly(
    client: TestClient, admin: dict[str, str]
) -> None:
    plain = agent(client, admin, "agente@acme.es", "agent")
    body = {"kind": "address", "address": "a@b.es", "reason": "x"}
    assert client.post("/v1/archive/holds", json=body, headers=plain).status_code == 403
    assert client.get("/v1/archive/holds", headers=plain).status_code == 403
    for bad in (
        {"kind": "thread", "reason": "sin hilo"},
        {"kind": "address", "address": "no-es-una-direccion", "reason": "x"},
        {"kind": "thread", "thread_id": "abc", "address": "a@b.es", "reason": "x"},
        {"kind": "query", "query": {}, "reason": "vacía"},
        {"kind": "address", "address": "a@b.es", "reason": "   "},
        {"kind": "address", "address": "a@b.es", "reason": "nul \u0000 byte"},  # PostgreSQL
        {"kind": "query", "query": {"text": "a\u0000b"}, "reason": "x"},
    ):
        r = client.post("/v1/archive/holds", json=bad, headers=admin)
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    missing = {"kind": "thread", "thread_id": "no-such-thread", "reason": "x"}
    assert client.post("/v1/archive/holds", json=missing, headers=admin).status_code == 404
    assert client.get("/v1/archive/holds", headers=admin).json() == []  # nothing was placed


def test_a_wide_query_hold_is_refused_not_cut_and_the_purge_still_sees_new_matches(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sealpost.archive.queries.MAX_MATCHES", 2)
    for n in range(3):
        ingest(sealpost, tenant_id, mail(f"Consulta {n}", sender=f"c{n}@gmail.com"))
    sealpost.archive_search.index_all()
    wide = {"kind": "query", "query": {"direction": "inbound"}, "reason": "Inspección"}
    r = client.post("/v1/archive/holds", json=wide, headers=admin)
    assert r.status_code == 422 and "narrow it" in r.json()["detail"]
    # text and a wide filter: the filter is applied to the text's matches, not to a capped
    # list of every inbound message (which would miss the newest)
    narrow = {
        "kind": "query",
        "query": {"text": "consulta 2", "direction": "inbound", "from": "@gmail.com"},
        "reason": "Inspección",
    }
    placed = client.post("/v1/archive/holds", json=narrow, headers=admin)
    assert placed.status_code == 201, placed.text
    assert placed.json()["frozen_messages"] == 1
    clock.now = T0 + timedelta(days=400)
    sealpost.archive.update_settings(tenant_id, retention_days=30)
    assert sealpost.archive_holds.purger.purge_due().purged == 2


def test_a_blob_shared_with_another_tenant_survives_the_purge(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str], clock: Clock
) -> None:
    other = sealpost.tenants.create("otra-empresa").id
    raw = mail("Copia compartida")
    mine = ingest(sealpost, tenant_id, raw)
    theirs = ingest(sealpost, other, raw)  # same bytes: one file in the archive's namespace
    assert mine.sha256 == theirs.sha256
    clock.now = T0 + timedelta(days=400)
    result = sealpost.archive_holds.purger.purge_due()
    assert (result.purged, result.blobs_deleted) == (1, 0)  # the other tenant keeps forever
    assert sealpost.archive_blobs.get(theirs.sha256) == raw
    sealpost.archive.update_settings(other, retention_days=30)
    assert sealpost.archive_holds.purger.purge_due(other).blobs_deleted == 1
    assert not sealpost.archive_blobs.exists(raw_sha := theirs.sha256), raw_sha


def test_retention_changes_are_recorded_and_a_floor_refuses_a_slip(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    r = client.patch("/v1/archive/settings", json={"retention_days": 3}, headers=admin)
    assert r.status_code == 422 and "30" in r.json()["detail"]
    r = client.patch("/v1/archive/settings", json={"retention_days": 2190}, headers=admin)
    assert r.status_code == 200
    r = client.patch("/v1/archive/settings", json={"retention_days": 2190}, headers=admin)
    changes = records(sealpost, "RetentionChanged", tenant_id)
    assert len(changes) == 2  # 365 (the fixture) and 2190; the same value again: no record
    r_ = evidence_records.c
    with sealpost.engine.connect() as conn:
        canon = conn.execute(select(r_.canonical).where(r_.id == changes[-1].id)).scalar_one()
    assert b'"previous_retention_days":365' in canon and b'"retention_days":2190' in canon


def test_the_database_refuses_to_delete_alter_or_unpurge_an_archived_message(
    sealpost: Sealpost, tenant_id: str, admin: dict[str, str], clock: Clock
) -> None:
    got = ingest(sealpost, tenant_id, mail("Prueba"))
    m = archive_messages.c
    mine = m.id == got.id
    for statement in (
        delete(archive_messages).where(mine),
        update(archive_messages).where(mine).values(subject="cambiado"),
        update(archive_messages).where(mine).values(archived_at=T0 - timedelta(days=999)),
    ):
        with pytest.raises(DBAPIError, match="write-once"), sealpost.engine.begin() as conn:
            conn.execute(statement)
    clock.now = T0 + timedelta(days=400)
    assert sealpost.archive_holds.purger.purge_due().purged == 1
    for statement in (
        update(archive_messages).where(mine).values(purged_at=None),
        update(archive_messages).where(mine).values(purge_record_id="another"),
    ):
        with pytest.raises(DBAPIError, match="purge is final"), sealpost.engine.begin() as conn:
            conn.execute(statement)


def test_the_purge_command_purges_what_is_due_and_says_what_it_kept(
    sealpost: Sealpost,
    settings: Settings,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
) -> None:
    held = ingest(sealpost, tenant_id, mail("Retenido", sender="pleito@example.com"))
    free = ingest(sealpost, tenant_id, mail("Libre"))
    body = {"kind": "address", "address": "pleito@example.com", "reason": "Caso 9"}
    assert client.post("/v1/archive/holds", json=body, headers=admin).status_code == 201
    sealpost.archive.update_settings(tenant_id, retention_days=30)  # T0 is months ago now
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALPOST_")}
    env.update(
        SEALPOST_DATA_DIR=str(settings.data_dir),
        SEALPOST_DATABASE_URL=settings.database_url,
        SEALPOST_KEYS_DIR=str(settings.keys_dir),
        SEALPOST_LOG_LEVEL="WARNING",
        COLUMNS="200",
    )
    command = [str(Path(sys.executable).parent / "sealpost"), "archive", "purge"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "purged 1 message(s); kept 1 under legal hold; deleted 1 blob(s)" in result.stdout
    assert "removed 0 old export file(s)" in result.stdout
    assert raw_status(client, admin, held.id) == 200
    assert raw_status(client, admin, free.id) == 410


class PurgeDuringScan(BlobStore):
    """The archive's real blob store, whose ``open`` lets another process's purge run right
    after an ingest opened the file to scan it: the worst moment for a shared blob."""

    def __init__(self, root: Path, purge: Callable[[], object]) -> None:
        super().__init__(root)
        self.purge: Callable[[], object] | None = purge

    def open(self, sha256: str) -> BinaryIO:
        stream = super().open(sha256)
        purge, self.purge = self.purge, None
        if purge is not None:
            purge()
        return stream


def test_bytes_archived_by_another_tenant_while_their_blob_is_purged_are_never_lost(
    sealpost: Sealpost, tenant_id: str, admin: dict[str, str], clock: Clock
) -> None:
    raw = mail("Misma copia")
    ingest(sealpost, tenant_id, raw)
    clock.now = T0 + timedelta(days=400)
    other = sealpost.tenants.create("llega-tarde").id
    purger = sealpost.archive_holds.purger
    racing = PurgeDuringScan(sealpost.archive_blobs.root, purger.purge_due)
    service = ArchiveService(sealpost.archive.repo, racing, clock=clock)
    with pytest.raises(ServiceUnavailable, match="send them again"):
        service.ingest(other, raw, Source("journal"))  # the purge won: nothing half-archived
    assert sealpost.archive.repo.messages(Viewer(other)) == []
    again = service.ingest(other, raw, Source("journal"))  # the sender's retry
    assert sealpost.archive_blobs.get(again.message.sha256) == raw
    assert purger.purge_due().blobs_deleted == 0
