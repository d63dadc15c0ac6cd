"""Unanswered-mail alerts with a controlled clock: business hours with a lunch break, a
weekend, Spanish holidays (Inmaculada on 8 December 2026) and a tenant's own closure day; no
alert outside service hours; a reply pauses the clock and the customer's next mail restarts
it; escalation to the supervisors; reassignment to the team."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.archive.model import Source, Viewer
from sealpost.archive.sla import SlaService
from sealpost.archive.sla_repository import SlaRepository
from sealpost.archive.tables import archive_sla_alerts
from sealpost.deadlines.calendars import ExtraDay
from sealpost.events.tables import outbox_events
from sealpost.ledger.tables import evidence_records

MADRID = ZoneInfo("Europe/Madrid")
WEEK = {d: [["09:00", "14:00"], ["15:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}


def at(day: int, hour: int, minute: int = 0, month: int = 12) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=MADRID)


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def mail(
    subject: str,
    *,
    sender: str = "cliente@gmail.com",
    to: str = "soporte@acme.es",
    msg_id: str,
    in_reply_to: str | None = None,
    date: datetime | None = None,
) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = msg_id
    if date is not None:
        m["Date"] = format_datetime(date)
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
        m["References"] = in_reply_to
    m.set_content("Hola.\n")
    return m.as_bytes()


class Clock:
    def __init__(self, sp: Sealpost) -> None:
        self.now = at(1, 9)
        sp.clock = lambda: self.now.astimezone(UTC)

    def __call__(self, moment: datetime) -> datetime:
        self.now = moment
        return moment


@pytest.fixture
def clock(sealpost: Sealpost) -> Clock:
    return Clock(sealpost)


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


def policy(client: TestClient, headers: dict[str, str], **fields: Any) -> Any:
    body = {"time_zone": "Europe/Madrid", "calendar": "ES", "hours": WEEK, **fields}
    r = client.post("/v1/archive/sla-policies", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def inbox(client: TestClient, headers: dict[str, str]) -> list[tuple[str, str]]:
    items = client.get("/v1/archive/inbox", headers=headers).json()
    return [(n["kind"], n["text"]) for n in reversed(items) if n["kind"].startswith("sla_")]


def events(sealpost: Sealpost, thread_id: str) -> list[tuple[str, dict[str, Any]]]:
    with sealpost.engine.connect() as conn:
        rows = conn.execute(
            select(outbox_events.c.type, outbox_events.c.payload)
            .where(outbox_events.c.subject_id == thread_id)
            .order_by(outbox_events.c.seq)
        ).all()
    return [(t, json.loads(p)["data"]) for t, p in rows if ".sla_" in t or "assigned" in t]


def records(sealpost: Sealpost, thread_id: str) -> list[str]:
    with sealpost.engine.connect() as conn:
        return list(
            conn.execute(
                select(evidence_records.c.event)
                .where(evidence_records.c.subject_id == thread_id)
                .order_by(evidence_records.c.seq)
            ).scalars()
        )


def test_the_clock_crosses_a_weekend_a_holiday_and_lunch_and_alerts_only_in_hours(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str], clock: Clock
) -> None:
    ana_id, ana = agent(client, admin, "ana@acme.es")
    _, sofia = agent(client, admin, "sofia@acme.es", "supervisor")
    policy(
        client,
        admin,
        first_reply_minutes=16 * 60,
        reply_minutes=8 * 60,
        warning_percent=75,
        escalate_after_minutes=60,
    )
    tick = sealpost.archive_sla.tick
    # the customer writes on Friday 4 December at 17:00
    clock(at(4, 17))
    thread_id = sealpost.archive.ingest(
        tenant_id, mail("Avería", msg_id="<c1@gmail.com>"), Source("journal")
    ).message.thread_id
    sealpost.archive.assign(
        Viewer(tenant_id), thread_id, agent_id=ana_id, team_id=None, reason=None
    )
    sla = client.get(f"/v1/archive/threads/{thread_id}/sla", headers=ana).json()
    # 16 business hours: Friday 1, Monday 8 (lunch excluded), Tuesday 8 is Inmaculada,
    # Wednesday 7 → Wednesday 17:00; 75 % (12 h) → Wednesday 12:00
    assert sla["state"] == "ok"
    assert sla["target"] == "first_reply"
    assert sla["started_at"] == z(at(4, 17))
    assert sla["due_at"] == z(at(9, 17))
    assert sla["warning_at"] == z(at(9, 12))
    # escalation 60 business minutes after the deadline: the closing instant, 18:00
    assert sla["escalate_at"] == z(at(9, 18))

    for moment in (at(4, 18, 30), at(7, 12), at(8, 12), at(9, 11, 59)):
        clock(moment)
        assert tick() == 0
    clock(at(9, 12))
    assert client.get(f"/v1/archive/threads/{thread_id}/sla", headers=ana).json()["state"] == (
        "warning"
    )
    assert tick() == 1
    assert tick() == 0  # once
    assert inbox(client, ana) == [("sla_warning", f"Reply due by {z(at(9, 17))}: Avería")]
    clock(at(9, 17))
    assert tick() == 1
    assert inbox(client, ana)[-1] == (
        "sla_breached",
        f"Reply deadline {z(at(9, 17))} missed: Avería",
    )
    # the escalation falls due at 18:00, when the service closes: not at night, but at 09:00
    for moment in (at(9, 18), at(9, 23)):
        clock(moment)
        assert tick() == 0
    assert inbox(client, sofia) == []
    clock(at(10, 9))
    assert tick() == 1
    [(kind, text)] = inbox(client, sofia)
    assert kind == "sla_escalated"
    assert f"due {z(at(9, 18))}, held to service hours" in text
    assert [k for k, _ in inbox(client, ana)] == ["sla_warning", "sla_breached"]

    sla = client.get(f"/v1/archive/threads/{thread_id}/sla", headers=sofia).json()
    assert sla["state"] == "escalated"
    assert [(a["kind"], a["due_at"], a["raised_at"]) for a in sla["alerts"]] == [
        ("warning", z(at(9, 12)), z(at(9, 12))),
        ("breached", z(at(9, 17)), z(at(9, 17))),
        ("escalated", z(at(9, 18)), z(at(10, 9))),
    ]
    breaching = client.get("/v1/archive/sla/breaching", headers=sofia).json()
    assert [(b["thread_id"], b["state"]) for b in breaching] == [(thread_id, "escalated")]
    assert client.get("/v1/archive/sla/breaching", headers=ana).status_code == 403

    found = events(sealpost, thread_id)
    assert [t for t, _ in found] == [
        "sealpost.archive.thread_assigned",
        "sealpost.archive.sla_warning",
        "sealpost.archive.sla_breached",
        "sealpost.archive.sla_escalated",
    ]
    escalated = found[-1][1]
    assert escalated["due_at"] == z(at(9, 18))
    assert escalated["deadline"] == z(at(9, 17))
    assert escalated["evidence_event"] == "ReplyEscalated"
    assert records(sealpost, thread_id) == [
        "ThreadAssigned",
        "ReplyDeadlineApproaching",
        "ReplyDeadlineMissed",
        "ReplyEscalated",
    ]


def test_an_alert_due_on_friday_evening_waits_to_tuesday_after_a_monday_closure(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str], clock: Clock
) -> None:
    ana_id, ana = agent(client, admin, "ana@acme.es")
    # the office closes on Monday 14 December (the tenant's own day on the ES calendar)
    sealpost.deadlines.replace_days(
        tenant_id, "ES", [ExtraDay(date(2026, 12, 14), "Cierre", "closure")]
    )
    policy(client, admin, first_reply_minutes=30, reply_minutes=30)
    clock(at(11, 17, 20))
    thread_id = sealpost.archive.ingest(
        tenant_id, mail("Pedido", msg_id="<p1@gmail.com>"), Source("journal")
    ).message.thread_id
    sealpost.archive.assign(
        Viewer(tenant_id), thread_id, agent_id=ana_id, team_id=None, reason=None
    )
    # due at 17:50; the round does not run again before the service closes
    for moment in (at(11, 18, 30), at(12, 11), at(14, 9), at(14, 12)):
        clock(moment)
        assert sealpost.archive_sla.tick() == 0
    assert inbox(client, ana) == []
    clock(at(15, 9))
    assert sealpost.archive_sla.tick() == 1
    [(kind, text)] = inbox(client, ana)
    assert kind == "sla_breached"
    assert f"due {z(at(11, 17, 50))}, held to service hours" in text
    [alert] = client.get(f"/v1/archive/threads/{thread_id}/sla", headers=ana).json()["alerts"]
    assert (alert["due_at"], alert["raised_at"]) == (z(at(11, 17, 50)), z(at(15, 9)))


def test_a_reply_pauses_the_clock_the_customer_restarts_it_and_the_team_gets_the_thread(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str], clock: Clock
) -> None:
    ana_id, ana = agent(client, admin, "ana@acme.es")
    luis_id, luis = agent(client, admin, "luis@acme.es")
    _, sofia = agent(client, admin, "sofia@acme.es", "supervisor")
    team = client.post(
        "/v1/archive/teams", json={"name": "Soporte", "agent_ids": [ana_id, luis_id]}, headers=admin
    ).json()
    # the tenant's default is lax; the team's own policy is what its threads follow
    policy(client, admin, first_reply_minutes=600, reply_minutes=600)
    policy(
        client,
        sofia,
        team_id=team["id"],
        first_reply_minutes=60,
        reply_minutes=60,
        reassign_to="team",
        reassign_after_minutes=30,
    )
    ingest = sealpost.archive.ingest
    clock(at(9, 10))
    thread_id = ingest(
        tenant_id, mail("Baja", msg_id="<b1@gmail.com>"), Source("journal")
    ).message.thread_id
    sealpost.archive.assign(
        Viewer(tenant_id), thread_id, agent_id=ana_id, team_id=team["id"], reason=None
    )
    assert client.get(f"/v1/archive/threads/{thread_id}/sla", headers=ana).json()["due_at"] == z(
        at(9, 11)
    )
    # Ana answers at 10:30: the thread waits on the customer, the clock pauses
    clock(at(9, 10, 30))
    ingest(
        tenant_id,
        mail(
            "Re: Baja",
            sender="ana@acme.es",
            to="cliente@gmail.com",
            msg_id="<a1@acme.es>",
            in_reply_to="<b1@gmail.com>",
        ),
        Source("journal"),
    )
    clock(at(9, 11, 30))
    assert sealpost.archive_sla.tick() == 0
    assert client.get(f"/v1/archive/threads/{thread_id}/sla", headers=ana).json()["state"] == (
        "paused"
    )
    # the customer writes again at 12:00: a new clock, the "reply" target, due 13:00
    clock(at(9, 12))
    ingest(
        tenant_id,
        mail("Re: Baja", msg_id="<b2@gmail.com>", in_reply_to="<a1@acme.es>"),
        Source("journal"),
    )
    sla = client.get(f"/v1/archive/threads/{thread_id}/sla", headers=ana).json()
    assert (sla["state"], sla["target"], sla["due_at"]) == ("ok", "reply", z(at(9, 13)))
    clock(at(9, 13))
    assert sealpost.archive_sla.tick() == 1
    # writing again while unanswered keeps the first unanswered message's clock: no new alert
    clock(at(9, 13, 10))
    ingest(
        tenant_id,
        mail("Re: Baja", msg_id="<b3@gmail.com>", in_reply_to="<a1@acme.es>"),
        Source("journal"),
    )
    assert sealpost.archive_sla.tick() == 0
    # 30 business minutes after the deadline the thread goes back to the team's queue
    clock(at(9, 13, 30))
    assert sealpost.archive_sla.tick() == 1
    thread = client.get(f"/v1/archive/threads/{thread_id}", headers=sofia).json()
    assert (thread["owner_agent_id"], thread["team_id"]) == (None, team["id"])
    assert [k for k, _ in inbox(client, ana)] == ["sla_breached", "sla_reassigned"]
    assert [k for k, _ in inbox(client, luis)] == ["sla_reassigned"]
    assigned = [d for t, d in events(sealpost, thread_id) if t.endswith("thread_assigned")]
    assert assigned[-1]["reason"] == "sla_reassigned"
    assert assigned[-1]["previous_owner_agent_id"] == ana_id
    assert sealpost.archive_sla.tick() == 0
    # Luis answers: nothing is overdue any more
    clock(at(9, 13, 45))
    ingest(
        tenant_id,
        mail(
            "Re: Baja",
            sender="luis@acme.es",
            to="cliente@gmail.com",
            msg_id="<l1@acme.es>",
            in_reply_to="<b3@gmail.com>",
        ),
        Source("journal"),
    )
    assert client.get("/v1/archive/sla/breaching", headers=sofia).json() == []
    # the SLA's reassignment, then Luis taking the thread from the queue by answering it
    assert records(sealpost, thread_id)[-3:] == [
        "ReplyDeadlineMissed",
        "ThreadAssigned",
        "ThreadAssigned",
    ]
    assert (
        client.get(f"/v1/archive/threads/{thread_id}", headers=luis).json()["owner_agent_id"]
        == luis_id
    )


def test_policies_api_checks_roles_and_fields(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str]
) -> None:
    _, ana = agent(client, admin, "ana@acme.es")
    body = {
        "first_reply_minutes": 480,
        "reply_minutes": 1440,
        "time_zone": "Europe/Madrid",
        "calendar": "es-md",
        "hours": WEEK,
    }
    assert client.post("/v1/archive/sla-policies", json=body, headers=ana).status_code == 403
    created = client.post("/v1/archive/sla-policies", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["calendar"] == "ES-MD"
    assert client.post("/v1/archive/sla-policies", json=body, headers=admin).status_code == 409
    bad = [
        ({"hours": {"mon": [["18:00", "09:00"]]}}, "hours.mon.0"),
        ({"hours": {"mon": []}}, "hours"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"calendar": "XX"}, "calendar"),
        ({"warning_percent": 75, "warning_before_minutes": 30}, "warning_percent"),
        ({"reassign_to": "team"}, "reassign_after_minutes"),
        ({"team_id": "no-such-team"}, "team_id"),
    ]
    for change, field in bad:
        r = client.put(
            f"/v1/archive/sla-policies/{created.json()['id']}",
            json={**body, **change},
            headers=admin,
        )
        assert r.status_code == 422, (change, r.text)
        assert field in r.json()["detail"], (change, r.json())
    listed = client.get("/v1/archive/sla-policies", headers=ana).json()
    assert [p["id"] for p in listed] == [created.json()["id"]]
    pid = created.json()["id"]
    changed = client.put(
        f"/v1/archive/sla-policies/{pid}", json={**body, "reply_minutes": 60}, headers=admin
    )
    assert changed.json()["reply_minutes"] == 60
    assert client.delete(f"/v1/archive/sla-policies/{pid}", headers=ana).status_code == 403
    assert client.delete(f"/v1/archive/sla-policies/{pid}", headers=admin).status_code == 204
    assert client.get(f"/v1/archive/sla-policies/{pid}", headers=admin).status_code == 404


def test_a_deadline_at_the_lunch_break_is_raised_when_the_service_reopens(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str], clock: Clock
) -> None:
    ana_id, ana = agent(client, admin, "ana@acme.es")
    policy(client, admin, first_reply_minutes=90, reply_minutes=90, warning_before_minutes=60)
    clock(at(10, 12, 30))  # Thursday 10 December
    thread_id = sealpost.archive.ingest(
        tenant_id, mail("Garantía", msg_id="<g1@gmail.com>"), Source("journal")
    ).message.thread_id
    sealpost.archive.assign(
        Viewer(tenant_id), thread_id, agent_id=ana_id, team_id=None, reason=None
    )
    sla = client.get(f"/v1/archive/threads/{thread_id}/sla", headers=ana).json()
    assert (sla["warning_at"], sla["due_at"]) == (z(at(10, 13)), z(at(10, 14)))
    clock(at(10, 13))
    assert sealpost.archive_sla.tick() == 1  # the warning, in hours
    for moment in (at(10, 14), at(10, 14, 59)):  # the deadline falls at the lunch break
        clock(moment)
        assert sealpost.archive_sla.tick() == 0
        assert (
            client.get(f"/v1/archive/threads/{thread_id}/sla", headers=ana).json()["state"]
            == "breached"
        )
    clock(at(10, 15))
    assert sealpost.archive_sla.tick() == 1
    assert [k for k, _ in inbox(client, ana)] == ["sla_warning", "sla_breached"]
    assert "held to service hours" in inbox(client, ana)[-1][1]


def test_rounds_running_at_once_raise_each_alert_once(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str], clock: Clock
) -> None:
    ana_id, ana = agent(client, admin, "ana@acme.es")
    policy(
        client,
        admin,
        first_reply_minutes=30,
        reply_minutes=30,
        warning_percent=50,
        escalate_after_minutes=0,
    )
    clock(at(10, 10))
    for i in range(5):
        thread_id = sealpost.archive.ingest(
            tenant_id, mail(f"Consulta {i}", msg_id=f"<q{i}@gmail.com>"), Source("journal")
        ).message.thread_id
        sealpost.archive.assign(
            Viewer(tenant_id), thread_id, agent_id=ana_id, team_id=None, reason=None
        )
    clock(at(10, 11))
    other = SlaService(SlaRepository(sealpost.engine), sealpost.archive, clock=sealpost.clock)
    rounds = [sealpost.archive_sla, other] * 3
    with ThreadPoolExecutor(len(rounds)) as pool:
        raised = list(pool.map(lambda service: service.tick(), rounds))
    assert sum(raised) == 5 * 3  # warning, breach and escalation of each thread, once
    assert [k for k, _ in inbox(client, ana)].count("sla_breached") == 5
    with sealpost.engine.connect() as conn:
        kinds = conn.execute(
            select(archive_sla_alerts.c.kind).where(archive_sla_alerts.c.tenant_id == tenant_id)
        ).scalars()
        assert sorted(kinds) == ["breached"] * 5 + ["escalated"] * 5 + ["warning"] * 5


def test_mail_older_than_the_policy_is_counted_from_the_policy(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str], clock: Clock
) -> None:
    _, ana = agent(client, admin, "ana@acme.es")
    clock(at(1, 10))
    thread_id = sealpost.archive.ingest(
        tenant_id, mail("Antiguo", msg_id="<old@gmail.com>"), Source("journal")
    ).message.thread_id
    clock(at(3, 10))
    policy(client, admin, first_reply_minutes=60, reply_minutes=60)
    sla = client.get(f"/v1/archive/threads/{thread_id}/sla", headers=ana).json()
    assert (sla["started_at"], sla["due_at"], sla["state"]) == (z(at(3, 10)), z(at(3, 11)), "ok")
    assert sealpost.archive_sla.tick() == 0


def test_mail_read_late_counts_from_its_date_within_a_bound(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str], clock: Clock
) -> None:
    """A mailbox failing for two days: the customer's mail of Tuesday 1 December 10:00 is
    archived on Thursday 3 at 10:00; its clock starts at its Date, so the 8-hour first reply
    was due on Wednesday 2 at 10:00 and is breached at once.  A forged Date months old counts
    from at most 7 days before the archiving."""
    _, ana = agent(client, admin, "ana@acme.es")
    clock(at(20, 9, month=11))
    policy(client, admin, first_reply_minutes=8 * 60, reply_minutes=8 * 60)
    clock(at(3, 10))
    late_id = sealpost.archive.ingest(
        tenant_id, mail("Tarde", msg_id="<late@gmail.com>", date=at(1, 10)), Source("imap")
    ).message.thread_id
    sla = client.get(f"/v1/archive/threads/{late_id}/sla", headers=ana).json()
    # 8 business hours from Tuesday 10:00: 4 before lunch, 3 after, 1 on Wednesday → 10:00
    assert (sla["started_at"], sla["due_at"], sla["state"]) == (
        z(at(1, 10)),
        z(at(2, 10)),
        "breached",
    )
    forged_id = sealpost.archive.ingest(
        tenant_id,
        mail("Viejo", msg_id="<forged@gmail.com>", date=at(1, 10, month=9)),
        Source("imap"),
    ).message.thread_id
    sla = client.get(f"/v1/archive/threads/{forged_id}/sla", headers=ana).json()
    assert sla["started_at"] == z(at(26, 10, month=11))  # archived_at - 7 days
    future_id = sealpost.archive.ingest(
        tenant_id,
        mail("Futuro", msg_id="<future@gmail.com>", date=at(9, 10)),
        Source("imap"),
    ).message.thread_id
    sla = client.get(f"/v1/archive/threads/{future_id}/sla", headers=ana).json()
    assert (sla["started_at"], sla["state"]) == (z(at(3, 10)), "ok")  # never later than now


def _policy_records(sealpost: Sealpost, tenant_id: str) -> list[dict[str, Any]]:
    r_ = evidence_records.c
    with sealpost.engine.connect() as conn:
        rows = conn.execute(
            select(r_.canonical)
            .where(r_.tenant_id == tenant_id, r_.subject_type == "archive_sla_policy")
            .order_by(r_.seq)
        ).scalars()
        return [json.loads(bytes(c)) for c in rows]


def test_policy_changes_are_recorded_and_re_creating_one_never_erases_a_breach(
    sealpost: Sealpost, tenant_id: str, client: TestClient, admin: dict[str, str], clock: Clock
) -> None:
    _, ana = agent(client, admin, "ana@acme.es")
    boss_id, boss = agent(client, admin, "jefa@acme.es", "supervisor")
    clock(at(1, 9))
    first = policy(client, admin, first_reply_minutes=60, reply_minutes=60)
    assert first["counts_from"] == z(at(1, 9))
    clock(at(1, 10))
    thread_id = sealpost.archive.ingest(
        tenant_id, mail("Urgente", msg_id="<u1@gmail.com>"), Source("journal")
    ).message.thread_id
    # a supervisor loosens the target, then deletes the policy and creates it again
    clock(at(1, 10, 20))
    body = {"time_zone": "Europe/Madrid", "calendar": "ES", "hours": WEEK}
    url = f"/v1/archive/sla-policies/{first['id']}"
    r = client.put(url, json={**body, "first_reply_minutes": 90, "reply_minutes": 60}, headers=boss)
    assert r.status_code == 200, r.text
    clock(at(1, 10, 30))
    assert client.delete(url, headers=ana).status_code == 403
    assert client.delete(url, headers=boss).status_code == 204
    assert client.delete(url, headers=boss).status_code == 404
    clock(at(1, 10, 31))
    again = policy(client, boss, first_reply_minutes=60, reply_minutes=60)
    assert again["counts_from"] == z(at(1, 9))  # the scope's first policy, not 10:31
    clock(at(1, 11, 5))
    sla = client.get(f"/v1/archive/threads/{thread_id}/sla", headers=ana).json()
    assert (sla["started_at"], sla["due_at"], sla["state"]) == (
        z(at(1, 10)),
        z(at(1, 11)),
        "breached",
    )
    assert sealpost.archive_sla.tick() == 1
    assert records(sealpost, thread_id)[-1] == "ReplyDeadlineMissed"
    changes = _policy_records(sealpost, tenant_id)
    assert [(c["event"]["uri"], c["details"]["change"]) for c in changes] == [
        ("urn:sealpost:event:SlaPolicyChanged", "created"),
        ("urn:sealpost:event:SlaPolicyChanged", "replaced"),
        ("urn:sealpost:event:SlaPolicyChanged", "deleted"),
        ("urn:sealpost:event:SlaPolicyChanged", "created"),
    ]
    created, replaced, deleted, recreated = (c["details"] for c in changes)
    assert created["changed_by"] == "admin" and "previous" not in created
    assert created["policy"]["first_reply_minutes"] == 60
    assert replaced["changed_by"] == f"agent:{boss_id}"
    assert (
        replaced["previous"]["first_reply_minutes"],
        replaced["policy"]["first_reply_minutes"],
    ) == (
        60,
        90,
    )
    assert deleted["previous"]["first_reply_minutes"] == 90 and "policy" not in deleted
    assert deleted["policy_id"] == first["id"]
    assert recreated["policy_id"] == again["id"]
    assert recreated["counts_from"] == z(at(1, 9))
