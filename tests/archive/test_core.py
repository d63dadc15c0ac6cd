"""The archive's core: ingest once per tenant by content, evidence for each message, threads
kept with their agent, roles, and write-once down to the database."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.archive.model import Source
from sealpost.archive.tables import archive_messages, archive_sightings
from sealpost.events.tables import outbox_events
from sealpost.ledger.tables import evidence_records
from sealpost.ratelimit import Rate


def mail(
    subject: str,
    *,
    sender: str = "cliente@gmail.com",
    to: str = "soporte@acme.es",
    msg_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    body: str = "Hola, tengo un problema con la garantía.\n",
) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Date"] = "Mon, 07 Dec 2026 09:00:00 +0100"
    if msg_id:
        m["Message-ID"] = msg_id
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
    if references:
        m["References"] = references
    m.set_content(body)
    return m.as_bytes()


@pytest.fixture
def client(sealpost: Sealpost) -> Iterator[TestClient]:
    with TestClient(create_app(sealpost, start_background=False)) as c:
        yield c


@pytest.fixture
def admin(sealpost: Sealpost, tenant_id: str) -> dict[str, str]:
    sealpost.archive.update_settings(tenant_id, own_domains=["acme.es"])
    return {"Authorization": f"Bearer {sealpost.tenants.issue_api_key(tenant_id).secret}"}


def agent(client: TestClient, admin: dict[str, str], email: str, role: str = "agent") -> Any:
    r = client.post("/v1/archive/agents", json={"email": email, "role": role}, headers=admin)
    assert r.status_code == 201, r.text
    body = r.json()
    return body["id"], {"Authorization": f"Bearer {body['api_key']}"}


def test_the_same_bytes_from_two_sources_are_archived_once_with_both_sightings(
    sealpost: Sealpost, tenant_id: str
) -> None:
    raw = mail("Garantía", msg_id="<a1@gmail.com>")
    first = sealpost.archive.ingest(tenant_id, raw, Source("journal", "rcpt"))
    again = sealpost.archive.ingest(tenant_id, raw, Source("imap", "box:1:7"))
    assert not first.duplicate and again.duplicate
    assert again.message.id == first.message.id
    assert first.message.sha256 == hashlib.sha256(raw).hexdigest()
    assert sealpost.archive_blobs.get(first.message.sha256) == raw
    kinds = [s["source"] for s in sealpost.archive.repo.sightings(first.message.id)]
    assert kinds == ["journal", "imap"]
    with sealpost.engine.connect() as conn:
        records = conn.execute(
            select(evidence_records.c.id).where(evidence_records.c.subject_id == first.message.id)
        ).all()
        events = conn.execute(
            select(outbox_events.c.type).where(outbox_events.c.subject_id == first.message.id)
        ).scalars()
        assert len(records) == 1  # one Archived record, not one per sighting
        assert list(events) == ["sealpost.archive.message_archived"]


def test_a_reused_message_id_or_none_at_all_never_loses_a_message(
    sealpost: Sealpost, tenant_id: str
) -> None:
    one = sealpost.archive.ingest(tenant_id, mail("A", msg_id="<same@x>"), Source("journal"))
    two = sealpost.archive.ingest(
        tenant_id, mail("B", msg_id="<same@x>", body="otro\n"), Source("journal")
    )
    none = sealpost.archive.ingest(tenant_id, mail("C"), Source("journal"))
    assert len({one.message.id, two.message.id, none.message.id}) == 3
    assert none.message.message_id is None


def test_dedup_is_per_tenant(sealpost: Sealpost, tenant_id: str) -> None:
    other = sealpost.tenants.create("other-tenant").id
    raw = mail("X", msg_id="<x@y>")
    a = sealpost.archive.ingest(tenant_id, raw, Source("journal"))
    b = sealpost.archive.ingest(other, raw, Source("journal"))
    assert not b.duplicate and a.message.id != b.message.id


def test_replies_join_the_thread_by_references_and_by_a_prefixed_subject_only(
    sealpost: Sealpost, tenant_id: str
) -> None:
    sealpost.archive.update_settings(tenant_id, own_domains=["acme.es"])
    ingest = sealpost.archive.ingest
    first = ingest(tenant_id, mail("Mi pedido 123", msg_id="<c1@gmail.com>"), Source("journal"))
    answer = ingest(
        tenant_id,
        mail(
            "RE: Mi pedido 123",
            sender="ana@acme.es",
            to="cliente@gmail.com",
            msg_id="<s1@acme.es>",
            in_reply_to="<c1@gmail.com>",
        ),
        Source("journal"),
    )
    # the customer's client dropped In-Reply-To, but kept "RV:" (Spanish Outlook)
    again = ingest(tenant_id, mail("RV: AW: Mi pedido 123", body="?\n"), Source("journal"))
    # the same words without a prefix, another month: a new thread
    fresh = ingest(tenant_id, mail("Mi pedido 123", body="nuevo\n"), Source("journal"))
    # the same prefixed subject from another customer: not their thread
    stranger = ingest(
        tenant_id, mail("Re: Mi pedido 123", sender="otro@yahoo.es"), Source("journal")
    )
    assert answer.message.direction == "outbound"
    assert answer.message.thread_id == first.message.thread_id
    assert again.message.thread_id == first.message.thread_id
    assert fresh.message.thread_id != first.message.thread_id
    assert stranger.message.thread_id != first.message.thread_id


def test_an_agent_answering_takes_the_thread_and_the_customer_s_next_mail_reaches_it(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    ana_id, ana = agent(client, admin, "ana@acme.es")
    _, luis = agent(client, admin, "luis@acme.es")
    ingest = sealpost.archive.ingest
    first = ingest(tenant_id, mail("Factura", msg_id="<c1@gmail.com>"), Source("journal"))
    ingest(
        tenant_id,
        mail(
            "Re: Factura",
            sender="ana@acme.es",
            to="cliente@gmail.com",
            msg_id="<a1@acme.es>",
            in_reply_to="<c1@gmail.com>",
        ),
        Source("journal"),
    )
    # the customer writes again, to another address of the company
    later = ingest(
        tenant_id,
        mail(
            "Re: Factura",
            to="ventas@acme.es",
            msg_id="<c2@gmail.com>",
            references="<c1@gmail.com> <a1@acme.es>",
            body="Sigo esperando.\n",
        ),
        Source("imap", "ventas:1:9"),
    )
    assert later.message.thread_id == first.message.thread_id
    thread = client.get(f"/v1/archive/threads/{first.message.thread_id}", headers=ana).json()
    assert thread["owner_agent_id"] == ana_id
    assert thread["waiting_on"] == "us"
    inbox = client.get("/v1/archive/inbox", headers=ana).json()
    assert [n["kind"] for n in inbox] == ["customer_wrote"]
    assert inbox[0]["message_id"] == later.message.id
    # another agent neither sees the owned thread nor its messages
    assert client.get(f"/v1/archive/threads/{thread['id']}", headers=luis).status_code == 404
    assert client.get(f"/v1/archive/messages/{later.message.id}", headers=luis).status_code == 404
    listed = client.get("/v1/archive/messages", headers=luis).json()["items"]
    assert later.message.id not in [m["id"] for m in listed]
    with sealpost.engine.connect() as conn:
        types = conn.execute(
            select(outbox_events.c.type).where(outbox_events.c.subject_id == thread["id"])
        ).scalars()
        assert list(types) == [
            "sealpost.archive.thread_assigned",
            "sealpost.archive.customer_wrote",
        ]
    # given to luis, the thread leaves ana's sight, and so does what her inbox said of it
    luis_id = client.get("/v1/archive/agents", headers=admin).json()[1]["id"]
    moved = client.post(
        f"/v1/archive/threads/{thread['id']}/assign", json={"agent_id": luis_id}, headers=admin
    )
    assert moved.status_code == 200
    assert client.get("/v1/archive/inbox?unread=false", headers=ana).json() == []
    assert [n["kind"] for n in client.get("/v1/archive/inbox", headers=luis).json()] == [
        "thread_assigned"
    ]


def test_an_agent_key_has_its_own_rate_bucket(
    sealpost: Sealpost, tenant_id: str, admin: dict[str, str]
) -> None:
    limited = Sealpost(
        sealpost.settings.model_copy(update={"rate_limit_api_per_tenant": Rate(3, 60.0)})
    )
    with TestClient(create_app(limited, start_background=False)) as client:
        _, ana = agent(client, admin, "ana@acme.es")  # the tenant's key: 1 of its 3
        spent = [client.get("/v1/archive/threads", headers=ana).status_code for _ in range(4)]
        assert spent == [200, 200, 200, 429]  # the agent's own bucket runs dry...
        # ...while the tenant's CRM key still has the rest of its own
        assert client.get("/v1/communications", headers=admin).status_code == 200
        assert client.get("/v1/communications", headers=admin).status_code == 200
        assert client.get("/v1/communications", headers=admin).status_code == 429


def test_roles_decide_who_assigns_and_who_sees(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    ana_id, ana = agent(client, admin, "ana@acme.es")
    luis_id, luis = agent(client, admin, "luis@acme.es")
    _, boss = agent(client, admin, "jefa@acme.es", "supervisor")
    _, audit = agent(client, admin, "auditor@acme.es", "auditor")
    got = sealpost.archive.ingest(tenant_id, mail("Baja"), Source("journal"))
    thread = got.message.thread_id
    # unassigned: every agent sees it in the shared queue, and one takes it
    assert client.get(f"/v1/archive/threads/{thread}", headers=luis).status_code == 200
    taken = client.post(
        f"/v1/archive/threads/{thread}/assign", json={"agent_id": ana_id}, headers=ana
    )
    assert taken.status_code == 200 and taken.json()["owner_agent_id"] == ana_id
    # luis can no longer take it, nor give it to himself; the auditor may not assign
    steal = client.post(
        f"/v1/archive/threads/{thread}/assign", json={"agent_id": luis_id}, headers=luis
    )
    assert steal.status_code == 404
    audited = client.post(
        f"/v1/archive/threads/{thread}/assign", json={"agent_id": luis_id}, headers=audit
    )
    assert audited.status_code == 403
    moved = client.post(
        f"/v1/archive/threads/{thread}/assign",
        json={"agent_id": luis_id, "reason": "Ana de vacaciones"},
        headers=boss,
    )
    assert moved.status_code == 200 and moved.json()["owner_agent_id"] == luis_id
    assert [n["kind"] for n in client.get("/v1/archive/inbox", headers=luis).json()] == [
        "thread_assigned"
    ]
    # an agent's key opens the archive only, and may not manage agents
    assert client.get("/v1/communications", headers=ana).status_code == 403
    r = client.post("/v1/archive/agents", json={"email": "x@acme.es", "role": "agent"}, headers=ana)
    assert r.status_code == 403
    assert "admin" in r.json()["detail"]


def test_who_may_see_what_is_on_the_record(
    sealpost: Sealpost, client: TestClient, admin: dict[str, str]
) -> None:
    ana_id, _ = agent(client, admin, "ana@acme.es")
    team = client.post(
        "/v1/archive/teams", json={"name": "Garantías", "agent_ids": [ana_id]}, headers=admin
    ).json()
    assert (
        client.patch(
            f"/v1/archive/agents/{ana_id}", json={"role": "auditor"}, headers=admin
        ).status_code
        == 200
    )
    assert (
        client.patch(
            f"/v1/archive/agents/{ana_id}", json={"disabled": True}, headers=admin
        ).status_code
        == 200
    )
    client.put(f"/v1/archive/teams/{team['id']}/members", json={"agent_ids": []}, headers=admin)
    r = evidence_records.c
    with sealpost.engine.connect() as conn:
        rows = conn.execute(
            select(r.event, r.canonical)
            .where(r.event.in_(["AgentChanged", "TeamChanged"]))
            .order_by(r.seq)
        ).all()
    details = [(row.event, json.loads(row.canonical)["details"]) for row in rows]
    assert [(event, d["change"]) for event, d in details] == [
        ("AgentChanged", "created"),
        ("TeamChanged", "created"),
        ("AgentChanged", "role"),
        ("AgentChanged", "disabled"),
        ("TeamChanged", "members"),
    ]
    assert (details[2][1]["role"], details[2][1]["previous_role"]) == ("auditor", "agent")
    assert details[4][1]["agent_ids"] == [] and details[1][1]["agent_ids"] == [ana_id]


def test_a_disabled_agent_s_key_stops_working_at_once(
    sealpost: Sealpost, client: TestClient, admin: dict[str, str]
) -> None:
    ana_id, ana = agent(client, admin, "ana@acme.es")
    assert client.get("/v1/archive/threads", headers=ana).status_code == 200
    r = client.patch(f"/v1/archive/agents/{ana_id}", json={"disabled": True}, headers=admin)
    assert r.status_code == 200 and r.json()["disabled_at"]
    assert client.get("/v1/archive/threads", headers=ana).status_code == 401


def test_upload_streams_the_exact_bytes_and_raw_gives_them_back(
    sealpost: Sealpost, client: TestClient, admin: dict[str, str]
) -> None:
    raw = mail("Adjunto", msg_id="<up@x>")
    r = client.post(
        "/v1/archive/messages",
        content=raw,
        headers={**admin, "Content-Type": "message/rfc822"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["duplicate"] is False and body["message"]["source"] == "api"
    again = client.post("/v1/archive/messages", content=raw, headers=admin)
    assert again.json()["duplicate"] is True
    got = client.get(f"/v1/archive/messages/{body['message']['id']}/raw", headers=admin)
    assert got.content == raw
    detail = client.get(f"/v1/archive/messages/{body['message']['id']}", headers=admin).json()
    assert [s["source"] for s in detail["sightings"]] == ["api"]  # one source, seen twice
    empty = client.post("/v1/archive/messages", content=b"", headers=admin)
    assert empty.status_code == 422


def test_malformed_mime_and_8bit_headers_are_archived_byte_exact_and_described(
    sealpost: Sealpost, tenant_id: str
) -> None:
    raw = (
        b"From: =?utf-8?q?Jos=C3=A9?= <jose@example.com>\r\n"
        b"To: soporte@acme.es\r\n"
        b"Subject: Reclamaci\xf3n \xe9\xe8\r\n"
        b"Content-Type: multipart/mixed; boundary=XYZ\r\n\r\n"
        b"--XYZ\r\nContent-Type: text/plain\r\n\r\nhola\r\n"
        b"--XYZ\r\nContent-Type: application/pdf; name=a.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n@@not base64@@\r\n"
    )  # no closing boundary
    got = sealpost.archive.ingest(tenant_id, raw, Source("journal"))
    assert sealpost.archive_blobs.get(got.message.sha256) == raw
    assert got.message.malformed and "not closed" in got.message.malformed
    assert got.message.has_attachments and got.message.attachment_names == ("a.pdf",)
    assert got.message.from_address == "jose@example.com"


def test_the_database_refuses_to_delete_or_alter_an_archived_message(
    sealpost: Sealpost, tenant_id: str
) -> None:
    got = sealpost.archive.ingest(tenant_id, mail("Prueba"), Source("journal"))
    m = archive_messages.c
    for statement in (
        delete(archive_messages).where(m.id == got.message.id),
        update(archive_messages).where(m.id == got.message.id).values(subject="cambiado"),
        update(archive_messages).where(m.id == got.message.id).values(sha256="0" * 64),
        update(archive_messages).where(m.id == got.message.id).values(thread_id="elsewhere"),
        update(archive_sightings).values(source_ref="forged"),
        delete(archive_sightings),
    ):
        with pytest.raises(DBAPIError, match="write-once"), sealpost.engine.begin() as conn:
            conn.execute(statement)
    # the ways around row triggers: a replacing insert (SQLite), TRUNCATE (PostgreSQL)
    with sealpost.engine.connect() as conn:
        original = conn.execute(select(archive_messages).where(m.id == got.message.id)).one()
    forged = {**original._asdict(), "subject": "forged", "direction": "outbound"}
    if sealpost.engine.dialect.name == "sqlite":
        replace = insert(archive_messages).prefix_with("OR REPLACE").values(**forged)
    else:
        replace = text("TRUNCATE archive_messages CASCADE")
    with pytest.raises(DBAPIError, match="write-once"), sealpost.engine.begin() as conn:
        conn.execute(replace)
    with sealpost.engine.begin() as conn:  # its index state may move
        conn.execute(
            update(archive_messages).where(m.id == got.message.id).values(index_state="indexed")
        )
        row = conn.execute(select(archive_messages).where(m.id == got.message.id)).one()
    assert row.subject == "Prueba" and row.index_state == "indexed"


def test_settings_give_the_journal_address_and_validate(
    client: TestClient, admin: dict[str, str]
) -> None:
    got = client.get("/v1/archive/settings", headers=admin).json()
    assert got["journal_address"].startswith("journal+")
    assert got["own_domains"] == ["acme.es"]
    r = client.patch("/v1/archive/settings", json={"retention_days": 0}, headers=admin)
    assert r.status_code == 422
    r = client.patch(
        "/v1/archive/settings",
        json={"retention_days": 2190, "own_domains": ["Acme.ES."]},
        headers=admin,
    )
    assert r.json()["retention_days"] == 2190 and r.json()["own_domains"] == ["acme.es"]
    assert json.loads(json.dumps(r.json()))  # plain JSON


def test_an_agent_taking_or_answering_its_team_s_thread_keeps_it_in_the_team(
    sealpost: Sealpost, client: TestClient, tenant_id: str, admin: dict[str, str]
) -> None:
    ana_id, ana = agent(client, admin, "ana@acme.es")
    luis_id, _ = agent(client, admin, "luis@acme.es")
    team = client.post(
        "/v1/archive/teams",
        json={"name": "Garantías", "agent_ids": [ana_id, luis_id]},
        headers=admin,
    )
    assert team.status_code == 201, team.text
    team_id = team.json()["id"]
    taken_id = sealpost.archive.ingest(
        tenant_id, mail("Garantía", msg_id="<g1@gmail.com>"), Source("journal")
    ).message.thread_id
    answered_id = sealpost.archive.ingest(
        tenant_id, mail("Factura", msg_id="<f1@gmail.com>"), Source("journal")
    ).message.thread_id
    for thread in (taken_id, answered_id):
        r = client.post(
            f"/v1/archive/threads/{thread}/assign", json={"team_id": team_id}, headers=admin
        )
        assert (r.status_code, r.json()["team_id"]) == (200, team_id), r.text
    taken = client.post(
        f"/v1/archive/threads/{taken_id}/assign", json={"agent_id": ana_id}, headers=ana
    )
    assert taken.status_code == 200, taken.text
    assert (taken.json()["owner_agent_id"], taken.json()["team_id"]) == (ana_id, team_id)
    reply = mail(
        "Re: Factura",
        sender="luis@acme.es",
        to="cliente@gmail.com",
        msg_id="<r1@acme.es>",
        in_reply_to="<f1@gmail.com>",
    )
    sealpost.archive.ingest(tenant_id, reply, Source("journal"))
    answered = client.get(f"/v1/archive/threads/{answered_id}", headers=admin).json()
    assert (answered["owner_agent_id"], answered["team_id"]) == (luis_id, team_id)
