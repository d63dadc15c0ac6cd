"""Reminder sequences end to end: SMS → email → certified email, stopped by "paid" after
step 2 (real SMTP and SMSC peers); the stop racing the scheduler on SQLite and PostgreSQL;
bulk enrolment with bad rows; YAML definitions; the opt-out page."""

from __future__ import annotations

import json
import threading
import time
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from sealpost.communications.tables import communications
from sealpost.events.tables import outbox_events
from sealpost.sequences.tables import sequence_steps
from tests.certificates.support import poppler
from tests.sequences.conftest import SeqEnv
from tests.support.smsc import Outcome


def _template(text: str, subject: str | None = None) -> dict[str, Any]:
    loc: dict[str, Any] = {"text": text}
    if subject:
        loc["subject"] = subject
    return {
        "fallback_language": "es",
        "languages": {"es": loc, "en": {**loc, "text": "EN " + text}},
    }


THREE_STEPS: dict[str, Any] = {
    "name": "Recobro 3 pasos",
    "sender": {"email": "cobros@acme.test", "name": "Acme Cobros"},
    "payment_link_base": "https://pay.acme.test/p/",
    "steps": [
        {
            "channel": "sms",
            "template": _template(
                "Hola {{ name }}, debe {{ amount }} {{ currency }}. {{ payment_link }}"
            ),
        },
        {
            "channel": "email",
            "template": _template(
                "Recordatorio: {{ amount }} {{ currency }} antes del {{ due_date }}. "
                "Pagar: {{ payment_link }} Baja: {{ opt_out_link }}",
                "Recordatorio {{ reference }}",
            ),
            "delay": {"amount": 1, "unit": "natural_days"},
        },
        {
            "channel": "certified_email",
            "template": _template(
                "Requerimiento formal {{ reference }}", "Requerimiento {{ reference }}"
            ),
            "delay": {"amount": 2, "unit": "natural_days"},
        },
    ],
}

PERSON = {
    "person": {"name": "Ana", "email": "ana@recipient.test", "phone": "+34 612 345 678"},
    "language": "es",
    "time_zone": "Europe/Madrid",
    "variables": {
        "amount": "120.50",
        "currency": "EUR",
        "due_date": "2026-03-31",
        "reference": "F-7",
    },
}


def _create(env: SeqEnv, definition: dict[str, Any] | None = None) -> str:
    answer = env.client.post("/v1/sequences", json=definition or THREE_STEPS, headers=env.auth)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _enrol(env: SeqEnv, sequence_id: str, body: dict[str, Any] | None = None) -> str:
    answer = env.client.post(
        f"/v1/sequences/{sequence_id}/enrolments", json=body or PERSON, headers=env.auth
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _timeline(env: SeqEnv, enrolment_id: str) -> dict[str, Any]:
    answer = env.client.get(f"/v1/sequences/enrolments/{enrolment_id}/timeline", headers=env.auth)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _wait(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    result = poppler("pdftotext", "-layout", path, "-")
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())


def test_three_steps_paid_after_the_second_two_sent_third_never(
    peers_env: SeqEnv, tmp_path: Path
) -> None:
    env = peers_env
    assert env.peer is not None and env.smsc is not None
    sequence_id = _create(env)
    enrolment_id = _enrol(env, sequence_id)
    scheduler = env.sp.sequence_scheduler

    assert scheduler.run_once() == 1  # step 1, SMS, due at once
    _wait(lambda: len(env.smsc.taken("34612345678")) == 1)  # type: ignore[union-attr]
    assert scheduler.run_once() == 0  # step 2 waits a day

    env.clock.advance(days=1, minutes=1)
    assert scheduler.run_once() == 1  # step 2, email
    _wait(lambda: len(env.peer.received) == 1)  # type: ignore[union-attr]
    mail = message_from_bytes(env.peer.received[0].data, policy=default)
    body = mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "120.50 EUR" in text and "https://pay.acme.test/p/" in text
    assert "/sequences/opt-out/" in text and mail["Subject"] == "Recordatorio F-7"

    paid = env.client.post(f"/v1/sequences/enrolments/{enrolment_id}/paid", headers=env.auth)
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "stopped" and paid.json()["stop_cause"] == "paid"

    env.clock.advance(days=5)
    assert scheduler.run_once() == 0
    time.sleep(0.5)
    assert len(env.peer.received) == 1
    assert len(env.smsc.taken("34612345678")) == 1

    timeline = _timeline(env, enrolment_id)
    steps = timeline["steps"]
    assert [s["status"] for s in steps] == ["sent", "sent", "cancelled"]
    assert steps[2]["sent_at"] is None and steps[2]["message_id"] is None
    assert [s["channel"] for s in steps] == ["sms", "email", "certified_email"]
    for step in steps[:2]:
        events = {e["event"] for e in step["evidence"]}
        assert "SubmissionAcceptance" in events and "SequenceStepSent" in events
        assert step["message_id"]
    stop = [r for r in timeline["records"] if r["event"] == "SequenceStopped"]
    assert len(stop) == 1
    # plain sms and email steps: evidence, but a certificate only when asked for
    assert _certificate_auto(env, steps[0]["message_id"], steps[1]["message_id"]) == (0, 0)
    again = env.client.post(f"/v1/sequences/enrolments/{enrolment_id}/paid", headers=env.auth)
    assert again.status_code == 409 and again.json()["type"].endswith("enrolment_stopped")

    stats = env.client.get(f"/v1/sequences/{sequence_id}/stats", headers=env.auth).json()
    assert stats["variants"][0]["paid"] == 1 and stats["variants"][0]["stopped"] == 1

    report = env.client.get(f"/v1/sequences/enrolments/{enrolment_id}/report.pdf", headers=env.auth)
    assert report.status_code == 200 and report.content.startswith(b"%PDF")
    text = _pdf_text(report.content, tmp_path)
    assert enrolment_id in text and steps[0]["message_id"] in text
    assert steps[1]["message_id"] in text and "paid" in text.lower()

    with env.sp.engine.connect() as conn:
        types = list(
            conn.execute(
                select(outbox_events.c.type)
                .where(outbox_events.c.subject_id == enrolment_id)
                .order_by(outbox_events.c.sequence)
            ).scalars()
        )
    assert types == [
        "sealpost.sequence.enrolled",
        "sealpost.sequence.step_sent",
        "sealpost.sequence.step_sent",
        "sealpost.sequence.stopped",
    ]


def test_paid_racing_the_scheduler_never_a_step_after_the_stop(seq_env: SeqEnv) -> None:
    """Every enrolment's last step is due; the scheduler sends while "paid" arrives for each.
    Whatever the interleaving, a message exists only for a step marked sent, and the stop's
    own record counts exactly the steps sent before it: nothing was stored after it."""
    env = seq_env
    one_step = {**THREE_STEPS["steps"][1], "delay": {"amount": 0, "unit": "hours"}}
    definition = {**THREE_STEPS, "steps": [one_step]}  # one email step, due at once
    sequence_id = _create(env, definition)
    from sealpost.sequences.schemas import EnrolmentIn

    rows = [EnrolmentIn.model_validate(PERSON) for _ in range(150)]
    ids = [
        r.enrolment.id
        for r in env.sp.sequences.enrol_many(env.tenant_id, sequence_id, rows)
        if r.enrolment is not None
    ]
    scheduler = env.sp.sequence_scheduler
    service = env.sp.sequences
    start = threading.Barrier(2)

    def schedule() -> None:
        start.wait()
        while scheduler.run_once():
            pass

    def pay() -> None:
        start.wait()
        _wait(lambda: _count_sent(env) > 0)  # the scheduler is under way: race it
        for enrolment_id in reversed(ids):
            service.stop(env.tenant_id, enrolment_id, "paid", via="api")

    threads = [threading.Thread(target=schedule), threading.Thread(target=pay)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with env.sp.engine.connect() as conn:
        messages = conn.execute(
            select(func.count())
            .select_from(communications)
            .where(communications.c.tenant_id == env.tenant_id)
        ).scalar()
        sent = conn.execute(
            select(func.count())
            .select_from(sequence_steps)
            .where(sequence_steps.c.status == "sent")
        ).scalar()
    assert messages == sent
    stopped = completed = 0
    for enrolment_id in ids:
        timeline = _timeline(env, enrolment_id)
        records = timeline["records"]
        step_sent = sum(1 for s in timeline["steps"] if s["status"] == "sent")
        stops = [r for r in records if r["event"] == "SequenceStopped"]
        if timeline["enrolment"]["status"] == "stopped":
            stopped += 1
            assert len(stops) == 1
            events = [r["event"] for r in records]
            # nothing after the stop: the stop is the last record of the enrolment
            assert events[-1] == "SequenceStopped"
            assert step_sent == _steps_sent_in_stop(env, stops[0]["record_id"])
        else:
            assert timeline["enrolment"]["status"] == "completed" and step_sent == 1
            completed += 1
    with env.sp.engine.connect() as conn:
        withdrawn = conn.execute(
            select(func.count())
            .select_from(sequence_steps)
            .where(sequence_steps.c.status == "cancelled", sequence_steps.c.attempts > 0)
        ).scalar()
    print(f"race: {stopped} stopped, {completed} completed, {sent} sent, {withdrawn} withdrawn")
    assert stopped > 0 and sent


def _certificate_auto(env: SeqEnv, sms_id: str, communication_id: str) -> tuple[int, int]:
    from sealpost.sms.tables import sms_messages

    with env.sp.engine.connect() as conn:
        sms = conn.execute(
            select(sms_messages.c.certificate_auto).where(sms_messages.c.id == sms_id)
        ).scalar_one()
        email = conn.execute(
            select(communications.c.certificate_auto).where(communications.c.id == communication_id)
        ).scalar_one()
    return int(sms), int(email)


def _count_sent(env: SeqEnv) -> int:
    with env.sp.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(sequence_steps)
                .where(sequence_steps.c.status == "sent")
            ).scalar()
            or 0
        )


def _steps_sent_in_stop(env: SeqEnv, record_id: str) -> int:
    from sealpost.ledger.tables import evidence_records

    with env.sp.engine.connect() as conn:
        canonical = conn.execute(
            select(evidence_records.c.canonical).where(evidence_records.c.id == record_id)
        ).scalar()
    return int(json.loads(bytes(canonical))["details"]["steps_sent"])


def test_bulk_csv_and_json_lines_bad_rows_do_not_sink_the_others(seq_env: SeqEnv) -> None:
    env = seq_env
    sequence_id = _create(env)
    csv_body = (
        "name,email,phone,time_zone,amount,currency,due_date,reference,external.signature_process\n"
        "Ana,ana@recipient.test,+34612345678,Europe/Madrid,10,EUR,2026-04-01,R1,proc-1\n"
        "Bea,bea@recipient.test,not-a-phone,Europe/Madrid,10,EUR,2026-04-01,R2,\n"
        "Carl,carl@recipient.test,+34612345679,Mars/Olympus,10,EUR,2026-04-01,R3,\n"
        "Dan,dan@recipient.test,+34612345670,Europe/Madrid,10,EUR,,R4,\n"
        ",eve@recipient.test,+34612345671,Europe/Madrid,10,EUR,2026-04-01,R5,\n"
        "Fay,fay@recipient.test,+34612345672,America/Mexico_City,10,MXN,2026-04-01,R6,\n"
    )
    answer = env.client.post(
        f"/v1/sequences/{sequence_id}/enrolments:bulk",
        content=csv_body.encode(),
        headers={**env.auth, "Content-Type": "text/csv"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["accepted"], body["refused"]) == (2, 4)
    by_row = {r["row"]: r for r in body["rows"]}
    assert by_row[1]["status"] == "accepted" and by_row[6]["status"] == "accepted"
    assert (
        by_row[2]["error"]["code"] == "invalid_sequence"
        and "phone" in by_row[2]["error"]["message"]
    )
    assert "time_zone" in by_row[3]["error"]["message"]
    assert "due_date" in by_row[4]["error"]["message"]
    assert "person" in by_row[5]["error"]["message"]
    ana = env.client.get(
        f"/v1/sequences/enrolments/{by_row[1]['enrolment_id']}", headers=env.auth
    ).json()
    assert ana["external_ids"] == {"signature_process": "proc-1"}
    assert ana["person"]["phone"] == "+34612345678"

    lines = "\n".join(
        [json.dumps(PERSON), "{not json", json.dumps({**PERSON, "time_zone": "Nowhere/X"})]
    )
    answer = env.client.post(
        f"/v1/sequences/{sequence_id}/enrolments:bulk",
        content=lines.encode(),
        headers={**env.auth, "Content-Type": "application/x-ndjson"},
    )
    assert answer.status_code == 200, answer.text
    assert [r["status"] for r in answer.json()["rows"]] == ["accepted", "refused", "refused"]

    wrong = env.client.post(
        f"/v1/sequences/{sequence_id}/enrolments:bulk",
        content=b"x",
        headers={**env.auth, "Content-Type": "application/pdf"},
    )
    assert wrong.status_code == 422


YAML_DEFINITION = """
name: Reminder (YAML)
sender: {email: billing@acme.test}
steps:
  - channel: email
    template:
      fallback_language: en
      languages:
        en: {subject: "Invoice {{ reference }}", text: "Dear {{ name }}, {{ amount }} due."}
    window:
      quiet_hours: {start: "21:00", end: "09:00"}
      weekdays: [mon, tue, wed, thu, fri]
    on_failure: stop
"""


def test_yaml_definition_and_sandbox_refusals(seq_env: SeqEnv) -> None:
    env = seq_env
    answer = env.client.post(
        "/v1/sequences",
        content=YAML_DEFINITION.encode(),
        headers={**env.auth, "Content-Type": "application/yaml"},
    )
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["immutable"] is True
    assert created["definition"]["steps"][0]["window"]["weekdays"] == [
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
    ]
    got = env.client.get(f"/v1/sequences/{created['id']}", headers=env.auth).json()
    assert got["name"] == "Reminder (YAML)"

    preview = env.client.post(
        f"/v1/sequences/{created['id']}/preview",
        json={"language": "en", "variables": {"reference": "R-1"}},
        headers=env.auth,
    )
    assert preview.status_code == 200, preview.text
    assert preview.json()["missing"] == ["amount"]

    bad = YAML_DEFINITION.replace("{{ amount }} due.", "{{ ''.__class__.__mro__ }}")
    refused = env.client.post(
        "/v1/sequences",
        content=bad.encode(),
        headers={**env.auth, "Content-Type": "application/yaml"},
    )
    assert refused.status_code == 422, refused.text

    unsafe = "name: !!python/object/apply:os.system ['true']\n"
    refused = env.client.post(
        "/v1/sequences",
        content=unsafe.encode(),
        headers={**env.auth, "Content-Type": "application/yaml"},
    )
    assert refused.status_code == 422
    wrong_channel = {**THREE_STEPS, "steps": [{**THREE_STEPS["steps"][0], "channel": "fax"}]}
    refused = env.client.post("/v1/sequences", json=wrong_channel, headers=env.auth)
    assert refused.status_code == 422 and refused.json()["field"] == "steps.0.channel"


def test_opt_out_page_get_changes_nothing_post_stops(seq_env: SeqEnv) -> None:
    env = seq_env
    sequence_id = _create(env)
    enrolment_id = _enrol(env, sequence_id)
    enrolment = env.sp.sequences.enrolment(None, enrolment_id)
    path = f"/sequences/opt-out/{enrolment.opt_out_token}"
    for _ in range(3):  # a scanner following the link
        page = env.client.get(path)
        assert page.status_code == 200 and '<form method="post"' in page.text
    assert env.sp.sequences.enrolment(None, enrolment_id).status == "active"
    done = env.client.post(path)
    assert done.status_code == 200 and "opted out" in done.text
    found = env.sp.sequences.enrolment(None, enrolment_id)
    assert (found.status, found.stop_cause) == ("stopped", "opted_out")
    assert env.sp.sequence_scheduler.run_once() == 0  # step 1 was cancelled with the stop
    assert env.client.post(path).status_code == 200  # a second press is fine
    assert env.client.get("/sequences/opt-out/nope").status_code == 404


def test_undelivered_sms_goes_on_to_the_next_channel_at_once(peers_env: SeqEnv) -> None:
    """The SMSC reports the SMS undelivered: the follower (outbox, cursor ``sequences``)
    records the step failed and brings the email forward from its two-day delay."""
    env = peers_env
    assert env.smsc is not None and env.peer is not None
    env.smsc.script["34612345678"] = Outcome("undelivered")
    definition = {
        **THREE_STEPS,
        "steps": [
            {**THREE_STEPS["steps"][0], "on_failure": "next"},
            {**THREE_STEPS["steps"][1], "delay": {"amount": 2, "unit": "natural_days"}},
        ],
    }
    sequence_id = _create(env, definition)
    enrolment_id = _enrol(env, sequence_id)
    env.sp.start_events()  # positions events for the follower
    assert env.sp.sequence_scheduler.run_once() == 1
    follower = env.sp.sequence_follower

    def failed() -> bool:
        follower.run_once()
        return any(s.status == "failed" for s in env.sp.sequences.repo.steps(enrolment_id))

    _wait(failed, timeout=30)
    assert env.sp.sequence_scheduler.run_once() == 1  # the email, now (not in two days)
    _wait(lambda: len(env.peer.received) == 1)  # type: ignore[union-attr]
    timeline = _timeline(env, enrolment_id)
    assert [s["status"] for s in timeline["steps"]] == ["failed", "sent"]
    events = [r["event"] for r in timeline["records"]]
    assert "SequenceStepFailed" in events and events[-1] == "SequenceCompleted"


def test_bulk_of_ten_thousand_rows_and_no_more(seq_env: SeqEnv) -> None:
    env = seq_env
    sequence_id = _create(env)
    header = "name,email,phone,time_zone,amount,currency,due_date,reference\n"
    rows = "".join(
        f"P{i},p{i}@recipient.test,+346{i:08d},Europe/Madrid,{i},EUR,2026-04-01,R{i}\n"
        for i in range(10_000)
    )
    started = time.monotonic()
    answer = env.client.post(
        f"/v1/sequences/{sequence_id}/enrolments:bulk",
        content=(header + rows).encode(),
        headers={**env.auth, "Content-Type": "text/csv"},
    )
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["accepted"] == 10_000, answer.json()["rows"][:3]
    print(f"bulk: 10,000 enrolments in {elapsed:.1f} s ({10_000 / elapsed:.0f}/s)")
    over = env.client.post(
        f"/v1/sequences/{sequence_id}/enrolments:bulk",
        content=(header + rows + "X,x@recipient.test,+34612345678,UTC,1,EUR,d,r\n").encode(),
        headers={**env.auth, "Content-Type": "text/csv"},
    )
    assert over.status_code == 422 and "10000" in over.json()["detail"]


def test_payment_link_from_the_tenants_settings(seq_env: SeqEnv) -> None:
    env = seq_env
    definition = {k: v for k, v in THREE_STEPS.items() if k != "payment_link_base"}
    sequence_id = _create(env, definition)
    refused = env.client.post(
        f"/v1/sequences/{sequence_id}/enrolments", json=PERSON, headers=env.auth
    )
    assert refused.status_code == 422 and refused.json()["field"] == "payment_link_base"
    bad = env.client.put(
        "/v1/settings/sequences", json={"payment_link_base": "http://x"}, headers=env.auth
    )
    assert bad.status_code == 422
    put = env.client.put(
        "/v1/settings/sequences",
        json={"payment_link_base": "https://cobro.acme.test/pay?t="},
        headers=env.auth,
    )
    assert put.status_code == 200, put.text
    assert env.client.get("/v1/settings/sequences", headers=env.auth).json() == put.json()
    enrolment_id = _enrol(env, sequence_id)
    assert env.sp.sequence_scheduler.run_once() == 1
    step = env.sp.sequences.repo.steps(enrolment_id)[0]
    sms = env.sp.sms_repository.get(step.message_id or "")
    assert sms is not None
    token = env.sp.sequences.enrolment(None, enrolment_id).payment_token
    assert f"https://cobro.acme.test/pay?t={token}" in sms.text


def test_timeline_plans_every_step_after_delays_and_windows(seq_env: SeqEnv) -> None:
    """Enrolled on Monday 2 March 2026, 10:00 in Madrid: the SMS at once, the email four
    days later (Friday), the certified email a day after that — a Saturday, so held to
    Monday 09:00 Madrid (08:00 UTC), the window's first instant."""
    env = seq_env
    window = {
        "quiet_hours": {"start": "21:00", "end": "09:00"},
        "weekdays": ["mon", "tue", "wed", "thu", "fri"],
    }
    steps = [
        {**THREE_STEPS["steps"][0], "window": window},
        {
            **THREE_STEPS["steps"][1],
            "delay": {"amount": 4, "unit": "natural_days"},
            "window": window,
        },
        {
            **THREE_STEPS["steps"][2],
            "delay": {"amount": 1, "unit": "natural_days"},
            "window": window,
        },
    ]
    sequence_id = _create(env, {**THREE_STEPS, "steps": steps})
    enrolment_id = _enrol(env, sequence_id)
    planned = _timeline(env, enrolment_id)["steps"]
    assert [s["status"] for s in planned] == ["scheduled", "planned", "planned"]
    assert planned[0]["due_at"] == "2026-03-02T09:00:00Z"
    assert planned[1]["due_at"] == "2026-03-06T09:00:00Z"  # Friday 10:00 in Madrid
    assert planned[2]["planned_at"] == "2026-03-07T09:00:00Z"  # Saturday: not a weekday
    assert planned[2]["due_at"] == "2026-03-09T08:00:00Z"  # Monday 09:00 in Madrid


def test_champion_challenger_assignment_and_per_variant_stats(seq_env: SeqEnv) -> None:
    env = seq_env
    definition = {k: v for k, v in THREE_STEPS.items() if k != "steps"} | {
        "variants": [
            {"name": "champion", "percentage": 70, "steps": THREE_STEPS["steps"]},
            {"name": "challenger", "percentage": 30, "steps": THREE_STEPS["steps"][1:]},
        ]
    }
    sequence_id = _create(env, definition)
    lines = "\n".join(json.dumps(PERSON) for _ in range(400))
    answer = env.client.post(
        f"/v1/sequences/{sequence_id}/enrolments:bulk",
        content=lines.encode(),
        headers={**env.auth, "Content-Type": "application/x-ndjson"},
    )
    ids = [r["enrolment_id"] for r in answer.json()["rows"]]
    variants = {
        i: env.client.get(f"/v1/sequences/enrolments/{i}", headers=env.auth).json()["variant"]
        for i in ids[:40]
    }
    paid = next(i for i, v in variants.items() if v == "challenger")
    assert (
        env.client.post(f"/v1/sequences/enrolments/{paid}/paid", headers=env.auth).status_code
        == 200
    )
    stats = env.client.get(f"/v1/sequences/{sequence_id}/stats", headers=env.auth).json()
    by_name = {v["variant"]: v for v in stats["variants"]}
    assert by_name["champion"]["enrolled"] + by_name["challenger"]["enrolled"] == 400
    assert 240 <= by_name["champion"]["enrolled"] <= 320  # 70 % of 400, give or take
    assert by_name["challenger"]["paid"] == 1 and by_name["champion"]["paid"] == 0
    assert by_name["challenger"]["active"] == by_name["challenger"]["enrolled"] - 1


def test_a_sender_outside_the_tenant_s_domains_is_refused_when_defined_and_when_sent(
    peers_env: SeqEnv,
) -> None:
    """The From rule of ``POST /v1/communications`` holds for sequences: once the tenant has
    registered its sending domains, a sequence whose ``sender.email`` is elsewhere is refused
    at definition (422 ``sender_not_allowed``), and a sequence defined before the domains were
    registered fails its email step at the send: nothing goes out as security@bank.example."""
    from sealpost.communications.email.dkim import generate_dkim_key

    env = peers_env
    assert env.peer is not None
    spoofing = {
        **THREE_STEPS,
        "sender": {"email": "security@bank.example"},
        "steps": [THREE_STEPS["steps"][1]],  # the email step only
    }
    early = _create(env, spoofing)  # no domain registered yet: any From is allowed
    enrolment_id = _enrol(env, early)
    key, record = generate_dkim_key()
    env.sp.senders.add_domain(
        env.tenant_id, "acme.test", selector="sp", private_key_pem=key, public_record=record
    )
    refused = env.client.post("/v1/sequences", json=spoofing, headers=env.auth)
    assert (refused.status_code, refused.json()["error"]) == (422, "sender_not_allowed")
    assert "sender.email" in refused.json()["detail"] and "acme.test" in refused.json()["detail"]
    assert _create(env, {**spoofing, "sender": {"email": "cobros@acme.test"}})  # its own: fine

    env.clock.advance(days=1, minutes=1)
    assert env.sp.sequence_scheduler.run_once() == 1
    [step] = _timeline(env, enrolment_id)["steps"]
    assert step["status"] == "failed"
    assert step["error"].startswith("sender_not_allowed") and "acme.test" in step["error"]
    time.sleep(0.3)
    assert env.peer.received == []
