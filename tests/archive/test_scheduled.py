"""Scheduled sends, delivered for real to an SMTP peer (aiosmtpd) by the sequences' own
scheduler round, with a controlled clock: never before their time, held over a weekend to the
recipient's working hours, never after a cancel, once after a worker's crash."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sealpost.api.app import create_app
from sealpost.app import Sealpost, build
from sealpost.archive.scheduled import ScheduledSendService
from sealpost.communications.tables import communications
from sealpost.config import Settings
from sealpost.events.tables import outbox_events
from sealpost.ledger.tables import evidence_records
from tests.support.mail import RECIPIENT_DOMAIN, email_settings
from tests.support.smtp_peer import RecipientServer

MADRID = ZoneInfo("Europe/Madrid")
BOB = f"bob@{RECIPIENT_DOMAIN}"


class FrozenClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment.astimezone(UTC)


@dataclass
class Env:
    sp: Sealpost
    client: TestClient
    admin: dict[str, str]
    tenant_id: str
    clock: FrozenClock
    peer: RecipientServer

    def schedule(self, headers: dict[str, str] | None = None, **fields: Any) -> Any:
        body = {
            "sender": "care@acme.test",
            "to": BOB,
            "subject": "Su cita del lunes",
            "text": "Le esperamos el lunes a las 10:00.\n",
            **fields,
        }
        r = self.client.post(
            "/v1/archive/scheduled-sends", json=body, headers=headers or self.admin
        )
        assert r.status_code == 201, r.text
        return r.json()

    def get(self, send_id: str) -> Any:
        return self.client.get(f"/v1/archive/scheduled-sends/{send_id}", headers=self.admin).json()

    def run(self) -> int:
        return self.sp.sequence_scheduler.run_once()


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.fixture
def env(settings: Settings) -> Iterator[Env]:
    with RecipientServer([]) as peer:
        sp = build(email_settings(settings, peer.port, certificates_enabled=False))
        clock = FrozenClock(datetime(2026, 12, 4, 17, 30, tzinfo=MADRID).astimezone(UTC))
        sp.clock = clock
        tenant = sp.tenants.create(f"acme-{uuid.uuid4().hex[:6]}")
        key = sp.tenants.issue_api_key(tenant.id, "crm").secret
        try:
            sp.start_background()
            sp.start_email()
            with TestClient(create_app(sp, start_background=False)) as client:
                yield Env(sp, client, {"Authorization": f"Bearer {key}"}, tenant.id, clock, peer)
        finally:
            sp.stop_background()
            sp.engine.dispose()


def _records(env: Env, subject_id: str) -> list[str]:
    with env.sp.engine.connect() as conn:
        return list(
            conn.execute(
                select(evidence_records.c.event)
                .where(evidence_records.c.subject_id == subject_id)
                .order_by(evidence_records.c.seq)
            ).scalars()
        )


def test_it_goes_out_at_its_time_not_before_with_a_communication_s_evidence(env: Env) -> None:
    at = env.clock.now + timedelta(hours=1)
    created = env.schedule(send_at=at.isoformat())
    assert (created["state"], created["communication_id"]) == ("scheduled", None)
    assert created["send_at"] == at.isoformat().replace("+00:00", "Z")
    env.clock.set(at - timedelta(seconds=1))
    assert env.run() == 0
    env.clock.set(at)
    assert env.run() == 1
    _wait(lambda: len(env.peer.received) == 1)
    got = message_from_bytes(env.peer.received[0].data, policy=default)
    assert got["Subject"] == "Su cita del lunes"
    assert env.peer.received[0].rcpt_tos == [BOB]
    sent = env.get(created["id"])
    assert sent["state"] == "sent"
    communication_id = sent["communication_id"]
    communication = env.client.get(f"/v1/communications/{communication_id}", headers=env.admin)
    assert communication.status_code == 200, communication.text
    assert "SubmissionAcceptance" in _records(env, communication_id)
    assert _records(env, created["id"]) == ["SendScheduled"]
    with env.sp.engine.connect() as conn:
        types = conn.execute(
            select(outbox_events.c.type).where(outbox_events.c.subject_id == created["id"])
        ).scalars()
        assert list(types) == ["sealpost.archive.scheduled_send_sent"]
    assert env.run() == 0
    time.sleep(0.3)
    assert len(env.peer.received) == 1
    # too late to cancel now
    late = env.client.post(f"/v1/archive/scheduled-sends/{created['id']}/cancel", headers=env.admin)
    assert late.status_code == 409
    assert communication_id in late.json()["detail"]


def test_held_over_the_weekend_to_the_recipient_s_working_hours(env: Env) -> None:
    # Friday 4 December 2026, 19:30 in Madrid: after hours there, 13:30 in New York
    env.clock.set(datetime(2026, 12, 4, 19, 30, tzinfo=MADRID))
    madrid = env.schedule(hold_until_working_hours={"time_zone": "Europe/Madrid", "calendar": "ES"})
    new_york = env.schedule(
        to=f"nina@{RECIPIENT_DOMAIN}",
        hold_until_working_hours={"time_zone": "America/New_York", "calendar": "US"},
    )
    monday = datetime(2026, 12, 7, 9, 0, tzinfo=MADRID)
    assert madrid["send_at"] == monday.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert madrid["hold"]["hours"]["mon"] == [["09:00", "18:00"]]
    assert new_york["send_at"] == env.clock.now.isoformat().replace("+00:00", "Z")
    assert env.run() == 1  # New York's, at once
    _wait(lambda: len(env.peer.received) == 1)
    assert env.peer.received[0].rcpt_tos == [f"nina@{RECIPIENT_DOMAIN}"]
    for moment in (
        datetime(2026, 12, 5, 11, 0, tzinfo=MADRID),
        datetime(2026, 12, 6, 23, 0, tzinfo=MADRID),
        monday - timedelta(minutes=1),
    ):
        env.clock.set(moment)
        assert env.run() == 0
    env.clock.set(monday)
    assert env.run() == 1
    _wait(lambda: len(env.peer.received) == 2)
    assert env.peer.received[1].rcpt_tos == [BOB]
    # a recipient whose Tuesday is a holiday (Inmaculada), asked on Monday evening: Wednesday
    env.clock.set(datetime(2026, 12, 7, 18, 30, tzinfo=MADRID))
    later = env.schedule(
        send_at=datetime(2026, 12, 7, 20, 0, tzinfo=MADRID).isoformat(),
        hold_until_working_hours={
            "time_zone": "Europe/Madrid",
            "calendar": "ES",
            "hours": {
                "mon": [["10:00", "14:00"]],
                "tue": [["10:00", "14:00"]],
                "wed": [["10:00", "14:00"]],
            },
        },
    )
    wednesday = datetime(2026, 12, 9, 10, 0, tzinfo=MADRID).astimezone(UTC)
    assert later["send_at"] == wednesday.isoformat().replace("+00:00", "Z")
    assert later["requested_at"] == "2026-12-07T19:00:00Z"


def test_a_cancel_before_its_time_means_it_is_never_sent(env: Env) -> None:
    created = env.schedule(send_at=(env.clock.now + timedelta(minutes=30)).isoformat())
    url = f"/v1/archive/scheduled-sends/{created['id']}/cancel"
    cancelled = env.client.post(url, json={"reason": "el cliente llamó"}, headers=env.admin)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert env.client.post(url, headers=env.admin).json()["state"] == "cancelled"  # idempotent
    env.clock.set(env.clock.now + timedelta(hours=2))
    assert env.run() == 0
    time.sleep(0.3)
    assert env.peer.received == []
    assert _records(env, created["id"]) == ["SendScheduled", "ScheduledSendCancelled"]
    listed = env.client.get("/v1/archive/scheduled-sends?state=cancelled", headers=env.admin)
    assert [s["id"] for s in listed.json()["items"]] == [created["id"]]


def test_a_cancel_between_the_claim_and_the_send_withdraws_the_message(env: Env) -> None:
    created = env.schedule(send_at=env.clock.now.isoformat())
    worker = env.sp.archive_scheduled
    [claimed] = worker.claim()
    url = f"/v1/archive/scheduled-sends/{created['id']}/cancel"
    assert env.client.post(url, headers=env.admin).json()["state"] == "cancelled"
    assert worker.send(claimed) == "withdrawn"
    time.sleep(0.3)
    assert env.peer.received == []
    assert env.get(created["id"])["communication_id"] is None


def test_a_worker_that_dies_between_claim_and_send_does_not_double_send(env: Env) -> None:
    created = env.schedule(send_at=env.clock.now.isoformat())
    crashed = ScheduledSendService(
        env.sp.archive_scheduled.repo, env.sp.archive_scheduled.sender, clock=env.clock
    )
    [claimed] = crashed.claim(lease_seconds=120)
    assert env.run() == 0  # its lease holds the send
    env.clock.set(env.clock.now + timedelta(seconds=121))
    assert env.run() == 1  # the lease expired: taken over and sent
    _wait(lambda: len(env.peer.received) == 1)
    # the first worker comes back and tries: its guard finds the send sent by another
    assert crashed.send(claimed) == "withdrawn"
    time.sleep(0.3)
    assert len(env.peer.received) == 1
    sent = env.get(created["id"])
    assert (sent["state"], sent["attempts"]) == ("sent", 2)


def test_bad_requests_are_clear_errors_and_agents_see_their_own(env: Env) -> None:
    base = {"sender": "care@acme.test", "to": BOB, "subject": "Hola", "text": "Hola.\n"}
    now = env.clock.now
    bad = [
        ({}, "send_at"),
        ({"send_at": "2026-12-04T20:00:00"}, "send_at"),
        ({"send_at": (now - timedelta(days=1)).isoformat()}, "past"),
        ({"send_at": (now + timedelta(days=900)).isoformat()}, "two years"),
        ({"to": "not an address", "send_at": now.isoformat()}, "to"),
        ({"hold_until_working_hours": {"time_zone": "Mars/Olympus"}}, "time_zone"),
        ({"hold_until_working_hours": {"time_zone": "UTC", "calendar": "XX"}}, "calendar"),
        ({"subject": "a\nBcc: x@y.z", "send_at": now.isoformat()}, "subject"),
    ]
    for change, word in bad:
        r = env.client.post(
            "/v1/archive/scheduled-sends", json={**base, **change}, headers=env.admin
        )
        assert r.status_code == 422, (change, r.text)
        assert word in r.json()["detail"], (change, r.json())
        assert r.headers["content-type"].startswith("application/problem+json")

    def agent(email: str, role: str) -> dict[str, str]:
        r = env.client.post(
            "/v1/archive/agents", json={"email": email, "role": role}, headers=env.admin
        )
        return {"Authorization": f"Bearer {r.json()['api_key']}"}

    ana, luis, audit = (
        agent("ana@acme.test", "agent"),
        agent("luis@acme.test", "agent"),
        agent("audit@acme.test", "auditor"),
    )
    mine = env.schedule(ana, send_at=(now + timedelta(hours=1)).isoformat())
    refused = env.client.post(
        "/v1/archive/scheduled-sends", json={**base, "send_at": now.isoformat()}, headers=audit
    )
    assert refused.status_code == 403
    url = f"/v1/archive/scheduled-sends/{mine['id']}"
    assert env.client.get(url, headers=luis).status_code == 404
    assert env.client.post(f"{url}/cancel", headers=luis).status_code == 404
    assert env.client.get(url, headers=audit).status_code == 200
    assert [
        s["id"] for s in env.client.get("/v1/archive/scheduled-sends", headers=ana).json()["items"]
    ] == [mine["id"]]
    assert env.client.get("/v1/archive/scheduled-sends", headers=luis).json()["items"] == []


def test_plain_certified_and_pickup_sends_are_the_communications_they_say(env: Env) -> None:
    now = env.clock.now.isoformat()
    plain = env.schedule(to=f"p@{RECIPIENT_DOMAIN}", send_at=now, certified=False)
    certified = env.schedule(to=f"c@{RECIPIENT_DOMAIN}", send_at=now)
    pickup = env.schedule(to=f"k@{RECIPIENT_DOMAIN}", send_at=now, certified=False, pickup=True)
    assert (plain["certified"], certified["certified"], pickup["certified"]) == (
        False,
        True,
        True,  # by registered pickup is certified
    )
    assert env.run() == 3
    states = [env.get(x["id"]) for x in (plain, certified, pickup)]
    assert [(x["state"], x["error"]) for x in states] == [("sent", None)] * 3
    details = [
        env.client.get(f"/v1/communications/{x['communication_id']}", headers=env.admin).json()
        for x in states
    ]
    assert [d["pickup"] is not None for d in details] == [False, False, True]
    # the direct ones are delivered with their content; the pickup one waits for its notice
    _wait(lambda: {"p", "c"} <= {r.rcpt_tos[0].split("@")[0] for r in env.peer.received})
    bodies = {r.rcpt_tos[0].split("@")[0]: r.data for r in env.peer.received}
    assert b"Le esperamos" in bodies["p"] and b"Le esperamos" in bodies["c"]
    assert b"Le esperamos" not in bodies.get("k", b"")  # never the content itself
    with env.sp.engine.connect() as conn:
        auto = dict(
            conn.execute(
                select(communications.c.recipient, communications.c.certificate_auto).where(
                    communications.c.tenant_id == env.tenant_id
                )
            ).all()
        )
    assert auto[f"p@{RECIPIENT_DOMAIN}"] == 0
    assert auto[f"c@{RECIPIENT_DOMAIN}"] == 1


def test_a_sender_outside_the_tenant_s_domains_is_refused_when_scheduled_and_when_sent(
    env: Env,
) -> None:
    """The From rule of ``POST /v1/communications`` (sender_not_allowed) holds for a
    scheduled send: refused at once, and refused again at the send if the tenant registered
    its domains after the send was scheduled (nothing goes out as security@bank.example)."""
    from sealpost.communications.email.dkim import generate_dkim_key

    now = env.clock.now.isoformat()
    early = env.schedule(sender="security@bank.example", send_at=now)  # no domain yet: any
    key, record = generate_dkim_key()
    env.sp.senders.add_domain(
        env.tenant_id, "acme.test", selector="sp", private_key_pem=key, public_record=record
    )
    body = {"to": BOB, "subject": "Urgente", "text": "Verifique su cuenta.\n", "send_at": now}
    direct = env.client.post(
        "/v1/communications",
        json={"from": "security@bank.example", "to": [BOB], "subject": "Urgente", "text": "x\n"},
        headers=env.admin,
    )
    assert (direct.status_code, direct.json()["error"]) == (422, "sender_not_allowed")
    refused = env.client.post(
        "/v1/archive/scheduled-sends",
        json={**body, "sender": "security@bank.example"},
        headers=env.admin,
    )
    assert (refused.status_code, refused.json()["error"]) == (422, "sender_not_allowed")
    assert "acme.test" in refused.json()["detail"]
    ok = env.schedule(sender="care@acme.test", send_at=now)
    assert env.run() == 2
    assert env.get(ok["id"])["state"] == "sent"
    failed = env.get(early["id"])
    assert failed["state"] == "failed"
    assert failed["error"].startswith("sender_not_allowed")
    _wait(lambda: len(env.peer.received) == 1)
    time.sleep(0.3)
    assert len(env.peer.received) == 1
    assert b"security@bank.example" not in env.peer.received[0].data
