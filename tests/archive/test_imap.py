"""IMAP pull against a real Dovecot: each message archived once whatever restarts, UIDVALIDITY
changes or deletions happen at the source; faults shown in the API, alerted, retried with a
growing wait, never holding up another mailbox."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.archive.imap import ImapPuller, ImapWorker
from sealpost.archive.model import Ingested, Source
from sealpost.archive.service import ArchiveService
from sealpost.archive.tables import archive_mailboxes, archive_messages, archive_sightings
from sealpost.config import Settings
from sealpost.events.tables import outbox_events
from sealpost.ledger.tables import evidence_records
from tests.support.clock import ManualClock
from tests.support.dovecot import DovecotServer, dovecot, dovecot_tls, free_port, message

__all__ = ["dovecot", "dovecot_tls"]  # the fixtures, used by name


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"archive_imap_allow_private_networks": True})


@pytest.fixture
def clock(sealpost: Sealpost) -> ManualClock:
    clock = ManualClock()
    sealpost.clock = clock
    return clock


@pytest.fixture
def client(sealpost: Sealpost) -> Iterator[TestClient]:
    with TestClient(create_app(sealpost, start_background=False)) as c:
        yield c


@pytest.fixture
def admin(sealpost: Sealpost, tenant_id: str) -> dict[str, str]:
    sealpost.archive.update_settings(tenant_id, own_domains=["acme.es"])
    return {"Authorization": f"Bearer {sealpost.tenants.issue_api_key(tenant_id).secret}"}


def worker(sealpost: Sealpost, archive: ArchiveService | None = None, **kw: Any) -> ImapWorker:
    """A fresh IMAP worker, as a restarted Sealpost builds it (polling unless told)."""
    options: dict[str, Any] = {"timeout_seconds": 5.0, "idle_seconds": 0.0, **kw}
    puller = ImapPuller(
        sealpost.archive_mailboxes,
        archive or sealpost.archive,
        allow_private_networks=True,
        **options,
    )
    return ImapWorker(puller, concurrency=4, look_seconds=0.05)


def add_mailbox(
    client: TestClient, admin: dict[str, str], server: DovecotServer, **overrides: Any
) -> Any:
    body = {
        "name": "soporte",
        "host": "127.0.0.1",
        "port": server.port,
        "tls": "none",
        "username": "agent",
        "secret": "secret-1",
        **overrides,
    }
    r = client.post("/v1/archive/mailboxes", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()


def state(client: TestClient, admin: dict[str, str], mailbox_id: str) -> Any:
    r = client.get(f"/v1/archive/mailboxes/{mailbox_id}/state", headers=admin)
    assert r.status_code == 200, r.text
    return r.json()


def archived(sealpost: Sealpost, tenant_id: str) -> int:
    with sealpost.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(archive_messages)
                .where(archive_messages.c.tenant_id == tenant_id)
            ).scalar_one()
        )


def imap_sightings(sealpost: Sealpost, tenant_id: str) -> list[str]:
    s = archive_sightings.c
    with sealpost.engine.connect() as conn:
        return sorted(
            conn.execute(
                select(s.source_ref).where(s.tenant_id == tenant_id, s.source_kind == "imap")
            ).scalars()
        )


def events(sealpost: Sealpost, subject_id: str) -> list[str]:
    o = outbox_events.c
    with sealpost.engine.connect() as conn:
        return list(
            conn.execute(
                select(o.type).where(o.subject_id == subject_id).order_by(o.sequence)
            ).scalars()
        )


def mails(n: int, tag: str = "m") -> list[bytes]:
    return [message(f"Consulta {tag}{i}", msg_id=f"<{tag}{i}@gmail.com>") for i in range(n)]


def test_appended_mail_is_archived_once_across_restarts_of_the_sync_and_of_dovecot(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    dovecot: DovecotServer,
    clock: ManualClock,
) -> None:
    first = mails(3, "a")
    dovecot.append("agent", first)
    box = add_mailbox(client, admin, dovecot)
    assert "secret" not in box and "secret-1" not in str(box)

    assert worker(sealpost).run_once() == 1
    assert archived(sealpost, tenant_id) == 3
    seen = state(client, admin, box["id"])
    assert (seen["state"], seen["messages_fetched"], seen["last_error"]) == ("ok", 3, None)
    assert [(f["folder"], f["last_uid"]) for f in seen["folders"]] == [("INBOX", 3)]
    with dovecot.client("agent") as c:  # read with BODY.PEEK[]: still unread for the agent
        c.select_folder("INBOX", readonly=True)
        assert all(b"\\Seen" not in flags for flags in c.get_flags([1, 2, 3]).values())
    raw = client.get("/v1/archive/messages?limit=200", headers=admin).json()["items"]
    body = client.get(f"/v1/archive/messages/{raw[-1]['id']}/raw", headers=admin).content
    assert body in first  # byte-exact

    # not due yet: nothing fetched again
    assert worker(sealpost).run_once() == 0
    dovecot.append("agent", mails(2, "b"))
    dovecot.restart()
    clock.advance(61)
    assert worker(sealpost).run_once() == 1  # a new worker: Sealpost's sync restarted
    clock.advance(61)
    worker(sealpost).run_once()
    assert archived(sealpost, tenant_id) == 5
    refs = imap_sightings(sealpost, tenant_id)
    assert len(refs) == len(set(refs)) == 5
    assert state(client, admin, box["id"])["messages_fetched"] == 5


class Killed(BaseException):
    """The process dies: no except clause of the worker sees it."""


class DiesAfter(ArchiveService):
    """The archive of a process killed right after its ``n``-th ingest committed, before the
    folder's cursor moved past that message."""

    def __init__(self, real: ArchiveService, n: int) -> None:
        super().__init__(real.repo, real.blobs, clock=real.clock)
        self.left = n

    def ingest(self, tenant_id: str, data: Any, source: Source, **kw: Any) -> Ingested:
        done = super().ingest(tenant_id, data, source, **kw)
        self.left -= 1
        if self.left == 0:
            raise Killed()
        return done


@pytest.mark.parametrize("threads", [1, 4])
def test_a_kill_between_ingest_and_cursor_loses_nothing_and_doubles_nothing(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    dovecot: DovecotServer,
    clock: ManualClock,
    threads: int,
) -> None:
    dovecot.append("agent", mails(4))
    box = add_mailbox(client, admin, dovecot)
    with pytest.raises(Killed):
        worker(sealpost, DiesAfter(sealpost.archive, 2), ingest_threads=threads).run_once()
    assert archived(sealpost, tenant_id) >= 2
    # one by one, the cursor is past the first message only; by chunks, before the chunk
    assert state(client, admin, box["id"])["folders"][0]["last_uid"] == (1 if threads == 1 else 0)

    assert worker(sealpost).run_once() == 0  # its lease still holds the mailbox
    clock.advance(600)  # the dead worker's lease expires
    assert worker(sealpost, ingest_threads=threads).run_once() == 1
    assert archived(sealpost, tenant_id) == 4
    refs = imap_sightings(sealpost, tenant_id)
    assert len(refs) == len(set(refs)) == 4  # fetched again, recorded once
    seen = state(client, admin, box["id"])
    assert (seen["state"], seen["folders"][0]["last_uid"]) == ("ok", 4)


class Broken(ArchiveService):
    def ingest(self, tenant_id: str, data: Any, source: Source, **kw: Any) -> Ingested:
        raise RuntimeError("connection to db.internal.example:5432 refused")


def test_an_internal_error_is_retried_and_its_text_not_shown_to_the_tenant(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    dovecot: DovecotServer,
    clock: ManualClock,
) -> None:
    dovecot.append("agent", mails(1))
    box = add_mailbox(client, admin, dovecot)
    real = sealpost.archive
    worker(sealpost, Broken(real.repo, real.blobs, clock=real.clock)).run_once()
    seen = state(client, admin, box["id"])
    assert seen["state"] == "failing" and "db.internal" not in seen["last_error"]
    assert seen["last_error"].startswith("internal error while archiving mail from 127.0.0.1")
    clock.advance(15)
    worker(sealpost).run_once()
    assert (state(client, admin, box["id"])["state"], archived(sealpost, tenant_id)) == ("ok", 1)


def test_a_change_during_a_sync_ends_it_and_the_new_settings_apply_at_once(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    dovecot: DovecotServer,
    clock: ManualClock,
) -> None:
    dovecot.append("agent", mails(3))
    dovecot.append("agent", mails(2, "s"), folder="Ventas")
    box = add_mailbox(client, admin, dovecot)
    real = sealpost.archive

    class ChangedMidway(ArchiveService):
        def ingest(self, tenant_id: str, data: Any, source: Source, **kw: Any) -> Ingested:
            done = super().ingest(tenant_id, data, source, **kw)
            clock.advance(1)
            sealpost.archive_mailboxes.update(tenant_id, box["id"], folders=["INBOX", "Ventas"])
            return done

    changing = ChangedMidway(real.repo, real.blobs, clock=real.clock)
    assert worker(sealpost, changing, ingest_threads=1).run_once() == 1
    assert archived(sealpost, tenant_id) == 3  # the chunk in hand was finished, then it let go
    assert worker(sealpost).run_once() == 1  # due at once (no poll wait), with both folders
    assert archived(sealpost, tenant_id) == 5
    assert state(client, admin, box["id"])["state"] == "ok"


def test_expunged_at_the_source_stays_in_the_archive(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    dovecot: DovecotServer,
    clock: ManualClock,
) -> None:
    dovecot.append("agent", mails(2))
    add_mailbox(client, admin, dovecot)
    worker(sealpost).run_once()
    with dovecot.client("agent") as c:
        c.select_folder("INBOX")
        c.delete_messages([1, 2])
        c.expunge()
        assert c.search("ALL") == []
    clock.advance(61)
    worker(sealpost).run_once()
    items = client.get("/v1/archive/messages", headers=admin).json()["items"]
    assert len(items) == 2
    for item in items:
        assert (
            client.get(f"/v1/archive/messages/{item['id']}/raw", headers=admin).status_code == 200
        )


def test_a_new_uidvalidity_reads_the_folder_again_without_duplicates(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    dovecot: DovecotServer,
    clock: ManualClock,
) -> None:
    old = mails(3, "v")
    dovecot.append("agent", old, folder="Ventas")
    box = add_mailbox(client, admin, dovecot, folders=["INBOX", "Ventas"])
    worker(sealpost).run_once()
    before = {f["folder"]: f for f in state(client, admin, box["id"])["folders"]}
    assert before["Ventas"]["last_uid"] == 3

    with dovecot.client("agent") as c:  # the folder is recreated: new UIDVALIDITY, UIDs from 1
        c.delete_folder("Ventas")
    dovecot.append("agent", [*old, message("Nueva consulta", msg_id="<new@gmail.com>")], "Ventas")
    clock.advance(61)
    worker(sealpost).run_once()

    after = {f["folder"]: f for f in state(client, admin, box["id"])["folders"]}
    assert after["Ventas"]["uidvalidity"] != before["Ventas"]["uidvalidity"]
    assert after["Ventas"]["last_uid"] == 4
    assert archived(sealpost, tenant_id) == 4  # the three old ones stored once
    assert len(imap_sightings(sealpost, tenant_id)) == 7  # each seen under both UIDVALIDITYs


def test_uploaded_first_then_pulled_is_stored_once_with_both_sightings(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    dovecot: DovecotServer,
) -> None:
    raw = message("Garantía", msg_id="<dup@gmail.com>")
    up = client.post(
        "/v1/archive/messages",
        content=raw,
        headers={**admin, "Content-Type": "message/rfc822"},
    )
    assert up.status_code == 201, up.text
    dovecot.append("agent", [raw])
    add_mailbox(client, admin, dovecot)
    worker(sealpost).run_once()
    assert archived(sealpost, tenant_id) == 1
    detail = client.get(f"/v1/archive/messages/{up.json()['message']['id']}", headers=admin)
    assert [s["source"] for s in detail.json()["sightings"]] == ["api", "imap"]


def test_messages_without_message_id_are_kept(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    dovecot: DovecotServer,
) -> None:
    dovecot.append(
        "agent",
        [message("Sin id", body="primera\n"), message("Sin id", body="segunda\n")],
    )
    add_mailbox(client, admin, dovecot)
    worker(sealpost).run_once()
    items = client.get("/v1/archive/messages", headers=admin).json()["items"]
    assert len(items) == 2 and all(i["message_id"] is None for i in items)


def test_a_wrong_password_fails_visibly_alerts_and_recovers_without_holding_up_another(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    dovecot: DovecotServer,
    clock: ManualClock,
) -> None:
    supervisor = client.post(
        "/v1/archive/agents",
        json={"email": "jefa@acme.es", "role": "supervisor"},
        headers=admin,
    ).json()
    dovecot.append("agent", mails(2))
    bad = add_mailbox(client, admin, dovecot, name="ventas", secret="wrong")
    good = add_mailbox(client, admin, dovecot, name="soporte")
    assert worker(sealpost).run_once() == 2

    assert state(client, admin, good["id"])["state"] == "ok"
    assert archived(sealpost, tenant_id) == 2
    failing = state(client, admin, bad["id"])
    assert failing["state"] == "failing" and failing["consecutive_failures"] == 1
    assert failing["last_error"].startswith(f"login refused by 127.0.0.1:{dovecot.port}")
    assert "AUTHENTICATIONFAILED" in failing["last_error"]
    assert "wrong" not in failing["last_error"]
    listed = client.get(f"/v1/archive/mailboxes/{bad['id']}", headers=admin).json()
    assert (listed["state"], listed["last_error"]) == ("failing", failing["last_error"])
    assert events(sealpost, bad["id"]) == ["sealpost.archive.mailbox_failing"]
    inbox = client.get(
        "/v1/archive/inbox", headers={"Authorization": f"Bearer {supervisor['api_key']}"}
    ).json()
    assert [n["kind"] for n in inbox] == ["mailbox_failing"]

    clock.advance(20)  # a second failure: no second alert
    worker(sealpost).run_once()
    assert state(client, admin, bad["id"])["consecutive_failures"] == 2
    assert events(sealpost, bad["id"]) == ["sealpost.archive.mailbox_failing"]

    fixed = client.patch(
        f"/v1/archive/mailboxes/{bad['id']}", json={"secret": "secret-1"}, headers=admin
    )
    assert fixed.status_code == 200 and "secret-1" not in fixed.text
    worker(sealpost).run_once()  # due at once after the fix, not after the backoff
    recovered = state(client, admin, bad["id"])
    assert (recovered["state"], recovered["last_error"]) == ("ok", None)
    assert recovered["consecutive_failures"] == 0
    assert events(sealpost, bad["id"]) == [
        "sealpost.archive.mailbox_failing",
        "sealpost.archive.mailbox_recovered",
    ]
    with sealpost.engine.connect() as conn:
        records = conn.execute(
            select(evidence_records.c.event).where(evidence_records.c.subject_id == bad["id"])
        ).scalars()
        assert sorted(records) == [
            "MailboxConfigured",
            "MailboxConfigured",
            "MailboxFailing",
            "MailboxRecovered",
        ]


def test_an_unreachable_server_fails_and_waits_longer_each_time(
    sealpost: Sealpost,
    client: TestClient,
    admin: dict[str, str],
    clock: ManualClock,
) -> None:
    closed = DovecotServer.__new__(DovecotServer)
    closed.port = free_port()  # nothing listens there
    box = add_mailbox(client, admin, closed)
    waits = []
    for _ in range(4):
        worker(sealpost).run_once()
        seen = state(client, admin, box["id"])
        assert seen["state"] == "failing"
        assert (
            seen["last_error"] == f"cannot connect to 127.0.0.1:{closed.port}: connection refused"
        )
        due = datetime.fromisoformat(seen["next_attempt_at"])
        waits.append((due - clock()).total_seconds())
        clock.set(due)
    assert waits == [15, 30, 60, 120]
    assert events(sealpost, box["id"]) == ["sealpost.archive.mailbox_failing"]


def test_a_silent_server_times_out_without_holding_up_another_mailbox(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    dovecot: DovecotServer,
) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        mute = DovecotServer.__new__(DovecotServer)
        mute.port = silent.getsockname()[1]
        hung = add_mailbox(client, admin, mute, name="colgado")
        dovecot.append("agent", mails(2))
        add_mailbox(client, admin, dovecot)
        started = time.monotonic()
        assert worker(sealpost, timeout_seconds=1.0).run_once() == 2
        assert time.monotonic() - started < 5
    assert archived(sealpost, tenant_id) == 2
    seen = state(client, admin, hung["id"])
    assert seen["state"] == "failing"
    assert seen["last_error"] == f"no answer from 127.0.0.1:{mute.port} in time"


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
def test_tls_with_a_trusted_certificate_and_refusal_of_an_untrusted_one(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    dovecot_tls: DovecotServer,
    tls: str,
) -> None:
    server = dovecot_tls
    server.append("agent", mails(1))
    port = server.tls_port if tls == "ssl" else server.port
    box = add_mailbox(client, admin, server, tls=tls, port=port)
    worker(sealpost).run_once()  # the system's trust store: this self-signed one is unknown
    refused = state(client, admin, box["id"])
    assert refused["state"] == "failing"
    assert refused["last_error"] == (
        f"TLS with 127.0.0.1:{port}: certificate not trusted (self-signed certificate)"
    )
    assert archived(sealpost, tenant_id) == 0

    trusted = ssl.create_default_context(cafile=str(server.certificate))
    client.patch(f"/v1/archive/mailboxes/{box['id']}", json={"name": "soporte-tls"}, headers=admin)
    worker(sealpost, ssl_context=trusted).run_once()
    assert state(client, admin, box["id"])["state"] == "ok"
    assert archived(sealpost, tenant_id) == 1
    assert "TLS" in server.log


def test_xoauth2_access_token(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    dovecot: DovecotServer,
) -> None:
    dovecot.add_user("oauth", "ya29.token")
    dovecot.append("oauth", mails(1))
    box = add_mailbox(client, admin, dovecot, username="oauth", auth="xoauth2", secret="ya29.token")
    worker(sealpost).run_once()
    assert state(client, admin, box["id"])["state"] == "ok"
    assert archived(sealpost, tenant_id) == 1
    assert "AUTH=XOAUTH2" in dovecot.log or "method=XOAUTH2" in dovecot.log


def test_idle_brings_new_mail_at_once_and_survives_a_dovecot_restart(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    dovecot: DovecotServer,
) -> None:
    dovecot.append("agent", mails(1, "i"))
    add_mailbox(client, admin, dovecot)
    loop = worker(sealpost, idle_seconds=30.0, poll_seconds=3600.0)  # no polling in time
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: archived(sealpost, tenant_id) == 1)
        time.sleep(0.3)  # the session is idling now
        dovecot.append("agent", mails(1, "j"))
        wait_for(lambda: archived(sealpost, tenant_id) == 2, 5.0)
        dovecot.restart()  # the connection drops: the next session resumes from the cursor
        dovecot.append("agent", mails(1, "k"))
        wait_for(lambda: archived(sealpost, tenant_id) == 3, 10.0)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert len(imap_sightings(sealpost, tenant_id)) == 3


def wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("not in time")
        time.sleep(0.05)


def test_serve_runs_the_imap_loop_unless_disabled(sealpost: Sealpost, settings: Settings) -> None:
    assert "archive-imap" in [loop.name for loop in sealpost.archive_loops()]
    off = Sealpost(settings.model_copy(update={"archive_imap_enabled": False}))
    assert "archive-imap" not in [loop.name for loop in off.archive_loops()]


def test_settings_are_checked_the_secret_is_never_shown_and_only_admins_write(
    sealpost: Sealpost, client: TestClient, admin: dict[str, str], dovecot: DovecotServer
) -> None:
    box = add_mailbox(client, admin, dovecot)
    for body, field in (
        ({"tls": "tls13"}, "tls"),
        ({"folders": []}, "folders"),
        ({"port": 0}, "port"),
        ({"host": "imap example.com"}, "host"),
        ({"folders": ["INBOX", "INBOX"]}, "folders"),
    ):
        r = client.patch(f"/v1/archive/mailboxes/{box['id']}", json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in r.text
    again = client.post(
        "/v1/archive/mailboxes",
        json={"name": "soporte", "host": "127.0.0.1", "username": "x", "secret": "y"},
        headers=admin,
    )
    assert again.status_code == 409
    listed = client.get("/v1/archive/mailboxes", headers=admin)
    assert "secret-1" not in listed.text and len(listed.json()) == 1
    agent = client.post(
        "/v1/archive/agents", json={"email": "ana@acme.es", "role": "auditor"}, headers=admin
    ).json()
    auditor = {"Authorization": f"Bearer {agent['api_key']}"}
    assert (
        client.get(f"/v1/archive/mailboxes/{box['id']}/state", headers=auditor).status_code == 200
    )
    r = client.patch(f"/v1/archive/mailboxes/{box['id']}", json={"enabled": False}, headers=auditor)
    assert r.status_code == 403
    off = client.patch(f"/v1/archive/mailboxes/{box['id']}", json={"enabled": False}, headers=admin)
    assert off.json()["state"] == "disabled"
    assert state(client, admin, box["id"])["next_attempt_at"] is None
    assert worker(sealpost).run_once() == 0  # a disabled mailbox is not read


def test_a_name_rebound_to_loopback_at_connect_time_gets_no_login(
    sealpost: Sealpost,
    tenant_id: str,
    client: TestClient,
    admin: dict[str, str],
    dovecot: DovecotServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: the name answers a public address to the private-network check and
    127.0.0.1 to the connection right after; the connected peer is checked before LOGIN."""
    dovecot.append("agent", mails(2))
    real = socket.getaddrinfo
    public = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 0))]

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "imap.rebind.test":
            if port is None:  # the check resolves the bare name
                return public
            host = "127.0.0.1"  # the connection's own lookup
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    box = sealpost.archive_mailboxes.create(
        tenant_id,
        name="soporte",
        host="127.0.0.1",
        port=dovecot.port,
        tls="none",
        username="agent",
        auth="password",
        secret="secret-1",
    )
    with sealpost.engine.begin() as conn:  # configured when the name still looked private
        conn.execute(
            archive_mailboxes.update()
            .where(archive_mailboxes.c.id == box.id)
            .values(host="imap.rebind.test")
        )
    puller = ImapPuller(
        sealpost.archive_mailboxes,
        sealpost.archive,
        timeout_seconds=5.0,
        idle_seconds=0.0,
        allow_private_networks=False,
    )
    logins = dovecot.log.count("Login: user=<agent>")  # the test's own APPEND
    unauthenticated = dovecot.log.count("no auth attempts")
    assert ImapWorker(puller, concurrency=1, look_seconds=0.05).run_once() == 1
    failing = state(client, admin, box.id)
    assert failing["state"] == "failing"
    assert failing["last_error"] == (
        "imap.rebind.test connected to a loopback/private address (127.0.0.1); refused before login"
    )
    assert "Dovecot" not in failing["last_error"]  # the server's greeting is not echoed
    assert archived(sealpost, tenant_id) == 0
    time.sleep(0.3)  # Dovecot writes its log line on the disconnect
    assert dovecot.log.count("Login: user=<agent>") == logins
    assert dovecot.log.count("no auth attempts") == unauthenticated + 1  # ours: no LOGIN sent


def test_plain_text_login_is_refused_for_a_public_server(
    client: TestClient, admin: dict[str, str], dovecot: DovecotServer
) -> None:
    body = {"name": "fuera", "host": "93.184.216.34", "port": 143, "tls": "none"}
    r = client.post(
        "/v1/archive/mailboxes", json={**body, "username": "u", "secret": "p"}, headers=admin
    )
    assert r.status_code == 422 and "tls: none" in r.text, r.text
    ok = client.post(
        "/v1/archive/mailboxes",
        json={**body, "tls": "starttls", "username": "u", "secret": "p"},
        headers=admin,
    )
    assert ok.status_code == 201, ok.text
    public_box = ok.json()["id"]
    r = client.patch(f"/v1/archive/mailboxes/{public_box}", json={"tls": "none"}, headers=admin)
    assert r.status_code == 422 and "tls: none" in r.text, r.text
    local = add_mailbox(client, admin, dovecot)  # loopback: plain text stays possible
    r = client.patch(
        f"/v1/archive/mailboxes/{local['id']}", json={"host": "93.184.216.34"}, headers=admin
    )
    assert r.status_code == 422 and "tls: none" in r.text, r.text
