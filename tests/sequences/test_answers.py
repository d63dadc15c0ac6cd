"""A reminder sequence stops on the person's answer (real SMTP and SMSC peers, SQLite and
PostgreSQL): an email reply to the step's own reply address (``replied``; an out-of-office
does not stop it), an SMS answer (``replied``) and an SMS "STOP" (``opted_out``), which a
plain ``sms`` step of another sequence then respects while a ``certified_sms`` step does not.
"""

from __future__ import annotations

import smtplib
import time
import uuid
from email import message_from_bytes
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from tests.sequences.conftest import SeqEnv
from tests.sequences.test_sequences import (
    _create,
    _enrol,
    _pdf_text,
    _template,
    _timeline,
    _wait,
)

EMAIL_EMAIL: dict[str, Any] = {
    "name": "Recordatorio por correo",
    "sender": {"email": "cobros@acme.test", "name": "Acme Cobros"},
    "steps": [
        {"channel": "email", "template": _template("Debe {{ amount }} EUR.", "Factura F-7")},
        {
            "channel": "email",
            "delay": {"amount": 1, "unit": "natural_days"},
            "template": _template("Segundo aviso: {{ amount }} EUR.", "Factura F-7 (2)"),
        },
    ],
}

SMS_SMS: dict[str, Any] = {
    "name": "Recordatorio por SMS",
    "steps": [
        {"channel": "sms", "template": _template("Debe {{ amount }} EUR.")},
        {
            "channel": "sms",
            "delay": {"amount": 1, "unit": "natural_days"},
            "template": _template("Segundo aviso: {{ amount }} EUR."),
        },
    ],
}

PHONE = "+34612345678"
HANDSET = "34612345678"


def _reply(env: SeqEnv, to: str, message_id: str, extra: str = "") -> None:
    raw = (
        "From: Ana <ana@recipient.test>\r\nTo: cobros@acme.test\r\n"
        "Subject: Re: Factura F-7\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@recipient.test>\r\n"
        f"In-Reply-To: {message_id}\r\nReferences: {message_id}\r\n{extra}"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Ya he pagado.\r\n"
    ).encode()
    port = env.sp.smtp_ports["inbound"]
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("mx.recipient.test")
        client.mail("ana@recipient.test")
        assert client.rcpt(to)[0] == 250
        code, answer = client.data(raw)
    assert code == 250 and b"Reply received" in answer, answer


def _follow_until_stopped(env: SeqEnv, enrolment_id: str) -> tuple[str, str | None]:
    deadline = time.monotonic() + 20
    while True:
        env.sp.sequence_follower.run_once()
        found = env.sp.sequences.enrolment(None, enrolment_id)
        if found.status != "active" or time.monotonic() > deadline:
            return found.status, found.stop_cause
        time.sleep(0.05)


def _followed(env: SeqEnv) -> list[str]:
    """Run the follower once; the types of the events it has read so far."""
    env.sp.sequence_follower.run_once()
    outbox = env.sp.outbox
    cursor = outbox.cursor("sequences")
    return [e.type for e in outbox.after(0, 10_000) if (e.position or 0) <= cursor]


def _stats(env: SeqEnv, sequence_id: str) -> dict[str, Any]:
    answer = env.client.get(f"/v1/sequences/{sequence_id}/stats", headers=env.auth)
    assert answer.status_code == 200, answer.text
    (variant,) = answer.json()["variants"]
    return dict(variant)


def test_an_email_reply_stops_the_sequence_and_an_out_of_office_does_not(
    peers_env: SeqEnv, tmp_path: Path
) -> None:
    env = peers_env
    assert env.peer is not None
    env.sp.start_events()  # the dispatcher positions the outbox the follower reads
    sequence_id = _create(env, EMAIL_EMAIL)
    enrolment_id = _enrol(env, sequence_id)
    assert env.sp.sequence_scheduler.run_once() == 1
    _wait(lambda: len(env.peer.received) == 1)  # type: ignore[union-attr]
    delivered = env.peer.received[0].data
    step1 = _timeline(env, enrolment_id)["steps"][0]
    message_id = step1["message_id"]
    reply_to = [a for _, a in getaddresses(message_from_bytes(delivered).get_all("Reply-To") or [])]
    assert reply_to[0] == "cobros@acme.test"  # the collector still gets the answer
    assert reply_to[1].startswith(f"replies+{message_id}.")
    communication = env.sp.communications.get(message_id)
    assert communication is not None

    # an out-of-office is kept on the message, but it is no answer: the sequence goes on
    _reply(env, reply_to[1], communication.message_id, "Auto-Submitted: auto-replied\r\n")
    _wait(lambda: "sealpost.communication.auto_replied" in _followed(env))
    found = env.sp.sequences.enrolment(None, enrolment_id)
    assert (found.status, found.stop_cause) == ("active", None)

    _reply(env, reply_to[1], communication.message_id)
    assert _follow_until_stopped(env, enrolment_id) == ("stopped", "replied")

    env.clock.advance(days=2)
    assert env.sp.sequence_scheduler.run_once() == 0
    time.sleep(0.5)
    assert len(env.peer.received) == 1  # step 2 never went out

    timeline = _timeline(env, enrolment_id)
    assert timeline["enrolment"]["status"] == "stopped"
    assert timeline["enrolment"]["stop_cause"] == "replied"
    steps = timeline["steps"]
    assert [s["status"] for s in steps] == ["sent", "cancelled"]
    answers = [e.get("answer") for e in steps[0]["evidence"] if e["event"] == "ReplyReceived"]
    assert answers == ["automatic", "reply"]
    assert [r["event"] for r in timeline["records"]].count("SequenceStopped") == 1

    report = env.client.get(f"/v1/sequences/enrolments/{enrolment_id}/report.pdf", headers=env.auth)
    assert report.status_code == 200, report.text
    text = _pdf_text(report.content, tmp_path)
    assert message_id in text
    assert "Stop cause an answer to a step's message reached Sealpost" in text
    assert "an automatic answer (out-of-office or similar) to this message was kept" in text
    assert "an answer to this message reached Sealpost and was kept" in text
    assert "the recipient answered" not in text  # an email's From is not authenticated

    stats = _stats(env, sequence_id)
    assert (stats["stopped"], stats["replied"], stats["opted_out"], stats["paid"]) == (1, 1, 0, 0)


def test_stop_by_sms_opts_out_a_plain_sms_step_of_another_sequence_not_a_certified_one(
    peers_env: SeqEnv, tmp_path: Path
) -> None:
    env = peers_env
    assert env.smsc is not None
    env.sp.start_events()
    first = _create(env, SMS_SMS)
    enrolment_id = _enrol(env, first)
    assert env.sp.sequence_scheduler.run_once() == 1
    _wait(lambda: len(env.smsc.taken(HANDSET)) == 1)  # type: ignore[union-attr]

    env.smsc.send_mo(PHONE, "Sealpost", "STOP")
    assert _follow_until_stopped(env, enrolment_id) == ("stopped", "opted_out")
    env.clock.advance(days=2)
    assert env.sp.sequence_scheduler.run_once() == 0
    time.sleep(0.5)
    assert len(env.smsc.taken(HANDSET)) == 1

    timeline = _timeline(env, enrolment_id)
    assert timeline["enrolment"]["stop_cause"] == "opted_out"
    assert [s["status"] for s in timeline["steps"]] == ["sent", "cancelled"]
    report = env.client.get(f"/v1/sequences/enrolments/{enrolment_id}/report.pdf", headers=env.auth)
    text = _pdf_text(report.content, tmp_path)
    assert "Stop cause the person opted out (the opt-out link, or an opt-out keyword" in text
    assert "number with an opt-out keyword (STOP) reached Sealpost" in text
    stats = _stats(env, first)
    assert (stats["stopped"], stats["opted_out"], stats["replied"]) == (1, 1, 0)

    # another sequence to the same number: its plain sms step is refused by the opt-out and
    # goes on to the next channel, a certified SMS, which the opt-out does not hold back
    second = _create(
        env,
        {
            "name": "Requerimiento",
            "steps": [
                {"channel": "sms", "on_failure": "next", "template": _template("Aviso.")},
                {
                    "channel": "certified_sms",
                    "delay": {"amount": 1, "unit": "natural_days"},
                    "template": _template("Requerimiento formal F-7."),
                },
            ],
        },
    )
    other = _enrol(env, second)
    assert env.sp.sequence_scheduler.run_once() == 1  # the sms step: refused
    steps = _timeline(env, other)["steps"]
    assert steps[0]["status"] == "failed" and "sms_opted_out" in steps[0]["error"]
    assert steps[0]["message_id"] is None
    assert env.sp.sequence_scheduler.run_once() == 1  # the certified_sms step, brought forward
    _wait(lambda: len(env.smsc.taken(HANDSET)) == 2)  # type: ignore[union-attr]
    assert b"Requerimiento formal F-7" in env.smsc.taken(HANDSET)[1].text
    timeline = _timeline(env, other)
    assert [s["status"] for s in timeline["steps"]] == ["failed", "sent"]
    assert timeline["enrolment"]["status"] == "completed"

    # a sequence whose plain sms step stops on failure: refused, then stopped as failed
    third = _create(
        env,
        {
            "name": "Solo SMS",
            "steps": [{"channel": "sms", "on_failure": "stop", "template": _template("Aviso.")}],
        },
    )
    last = _enrol(env, third)
    assert env.sp.sequence_scheduler.run_once() == 1
    found = env.sp.sequences.enrolment(None, last)
    assert (found.status, found.stop_cause) == ("failed", "failed")
    assert len(env.smsc.taken(HANDSET)) == 2


def test_an_sms_answer_stops_the_sequence_as_replied(peers_env: SeqEnv) -> None:
    env = peers_env
    assert env.smsc is not None
    env.sp.start_events()
    sequence_id = _create(env, SMS_SMS)
    enrolment_id = _enrol(env, sequence_id)
    assert env.sp.sequence_scheduler.run_once() == 1
    _wait(lambda: len(env.smsc.taken(HANDSET)) == 1)  # type: ignore[union-attr]
    env.smsc.send_mo(PHONE, "Sealpost", "I paid yesterday")
    assert _follow_until_stopped(env, enrolment_id) == ("stopped", "replied")
    env.clock.advance(days=2)
    assert env.sp.sequence_scheduler.run_once() == 0
    assert len(env.smsc.taken(HANDSET)) == 1
    stats = _stats(env, sequence_id)
    assert (stats["replied"], stats["opted_out"]) == (1, 0)
    # the number did not opt out: another sequence's plain sms step still goes out
    other = _enrol(env, _create(env, {**SMS_SMS, "name": "Otra"}))
    assert env.sp.sequence_scheduler.run_once() == 1
    _wait(lambda: len(env.smsc.taken(HANDSET)) == 2)  # type: ignore[union-attr]
    assert _timeline(env, other)["steps"][0]["status"] == "sent"


def test_stats_count_replied_and_opted_out_per_variant(seq_env: SeqEnv) -> None:
    env = seq_env
    steps = EMAIL_EMAIL["steps"]
    sequence_id = _create(
        env,
        {
            **{k: v for k, v in EMAIL_EMAIL.items() if k != "steps"},
            "variants": [
                {"name": "champion", "percentage": 50, "steps": steps},
                {"name": "challenger", "percentage": 50, "steps": steps},
            ],
        },
    )
    ids = [_enrol(env, sequence_id) for _ in range(24)]
    service = env.sp.sequences
    expected: dict[str, dict[str, int]] = {
        v: {"replied": 0, "opted_out": 0, "active": 0} for v in ("champion", "challenger")
    }
    for n, enrolment_id in enumerate(ids):
        found = service.enrolment(None, enrolment_id)
        if n % 3 == 0:  # what the follower does on sealpost.communication.replied
            service.stop(None, enrolment_id, "replied", via="event", if_configured=True)
            expected[found.variant]["replied"] += 1
        elif n % 3 == 1:  # the opt-out page's button
            page = env.client.post(f"/sequences/opt-out/{found.opt_out_token}")
            assert page.status_code == 200, page.text
            expected[found.variant]["opted_out"] += 1
        else:
            expected[found.variant]["active"] += 1
    answer = env.client.get(f"/v1/sequences/{sequence_id}/stats", headers=env.auth)
    assert answer.status_code == 200, answer.text
    got = {
        v["variant"]: {k: v[k] for k in ("replied", "opted_out", "active")}
        for v in answer.json()["variants"]
    }
    assert got == expected
    assert all(sum(c.values()) > 0 for c in got.values())  # both variants were assigned
    for v in answer.json()["variants"]:
        assert v["stopped"] == v["replied"] + v["opted_out"] and v["enrolled"] == sum(
            got[v["variant"]].values()
        )
