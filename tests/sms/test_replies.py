"""Answers to SMS: the SMSC peer sends a mobile-originated deliver_sm to the bound adapter;
it becomes a reply (or an opt-out) on the SMS it answers (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from sqlalchemy import func, select

from sealpost.events.tables import outbox_events
from sealpost.sms.certificates import summarize
from sealpost.sms.replies import opt_out_keyword
from sealpost.sms.tables import sms_replies
from tests.sms.conftest import SmsEnv

PHONE = "+34612345601"


def _wait_replies(env: SmsEnv, sms_id: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        answer = env.client.get(f"/v1/sms/{sms_id}/replies", headers=env.auth)
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        if len(items) >= count:
            return items
        assert time.monotonic() < deadline, f"no reply yet: {items}"
        time.sleep(0.05)


def _events(env: SmsEnv, sms_id: str) -> list[dict[str, Any]]:
    with env.sp.engine.connect() as conn:
        rows = conn.execute(
            select(outbox_events.c.type, outbox_events.c.payload).where(
                outbox_events.c.subject_id == sms_id
            )
        ).all()
    return [{"type": r.type, **json.loads(r.payload)} for r in rows]


def _acknowledged(env: SmsEnv, key: str) -> int:
    deadline = time.monotonic() + 10
    while True:
        for answered, status in env.smsc.mo_answers:
            if answered == key:
                return status
        assert time.monotonic() < deadline, "the adapter never answered the MO deliver_sm"
        time.sleep(0.05)


def test_an_answer_from_the_handset_is_a_reply_with_evidence_and_event(sms_env: SmsEnv) -> None:
    sms_id = sms_env.send(PHONE, "Your invoice 42 is overdue: 120 EUR.")
    sms_env.wait_status(sms_id, "delivered")
    key = sms_env.smsc.send_mo(PHONE, "Sealpost", "Ya he pagado, gracias")
    (item,) = _wait_replies(sms_env, sms_id)
    assert _acknowledged(sms_env, key) == 0  # after it was stored
    assert item["phone"] == PHONE
    assert item["text"] == "Ya he pagado, gracias"
    assert item["opt_out"] is False
    assert item["text_sha256"] == hashlib.sha256(b"Ya he pagado, gracias").hexdigest()

    timeline = sms_env.sp.sms_repository.timeline(sms_env.tenant_id, sms_id)
    entry = next(e for e in timeline if e.event == "ReplyReceived")
    record = entry.record
    assert summarize(entry).startswith(f"The handset {PHONE} sent an answer")
    assert record["event"]["uri"] == "urn:sealpost:event:ReplyReceived"
    assert record["sender"]["address"] == PHONE
    assert record["content"]["sha256"] == item["text_sha256"]
    types = [e["type"] for e in _events(sms_env, sms_id)]
    assert "sealpost.sms.replied" in types
    assert "sealpost.sms.opted_out" not in types


def test_an_answer_in_ucs2_keeps_its_text(sms_env: SmsEnv) -> None:
    sms_id = sms_env.send(PHONE, "Recordatorio")
    sms_env.wait_status(sms_id, "delivered")
    text = "¿Puedo pagar en dos plazos? 😊"
    sms_env.smsc.send_mo(PHONE, "Sealpost", text, data_coding=0x08)
    (item,) = _wait_replies(sms_env, sms_id)
    assert item["text"] == text


def test_stop_opts_the_number_out_and_a_respecting_send_is_refused(sms_env: SmsEnv) -> None:
    assert [opt_out_keyword(t) for t in (" stop ", "Baja.", "ARRÊT", "stopp", "stop it")] == [
        "STOP",
        "BAJA",
        "ARRÊT",
        "STOPP",
        None,
    ]
    sms_id = sms_env.send(PHONE, "Reminder")
    sms_env.wait_status(sms_id, "delivered")
    sms_env.smsc.send_mo(PHONE, "Sealpost", "  Stop ")
    (item,) = _wait_replies(sms_env, sms_id)
    assert item["opt_out"] is True
    events = _events(sms_env, sms_id)
    opted = [e for e in events if e["type"] == "sealpost.sms.opted_out"]
    assert len(opted) == 1 and opted[0]["data"]["keyword"] == "STOP"
    assert "sealpost.sms.replied" not in [e["type"] for e in events]

    listed = sms_env.client.get("/v1/sms/opt-outs", headers=sms_env.auth).json()
    assert [(o["phone"], o["sms_id"]) for o in listed["items"]] == [(PHONE, sms_id)]

    refused = sms_env.client.post(
        "/v1/sms",
        json={"to": PHONE, "text": "Offer!", "respect_opt_out": True},
        headers=sms_env.auth,
    )
    assert refused.status_code == 409
    assert refused.json()["type"] == "urn:sealpost:problem:sms_opted_out"
    assert refused.json()["number"] == PHONE
    assert PHONE in refused.json()["detail"]
    sms_env.send(PHONE, "Certified notice: the law requires it")  # not respecting: sent


def test_an_answer_goes_to_the_newest_sms_from_the_number_it_was_sent_to(
    sms_env: SmsEnv,
) -> None:
    first = sms_env.send(PHONE, "From Acme", sender="Acme")
    second = sms_env.send(PHONE, "From Other", sender="Other")
    sms_env.wait_status(first, "delivered")
    sms_env.wait_status(second, "delivered")
    sms_env.smsc.send_mo(PHONE, "Acme", "Answer to Acme")
    (item,) = _wait_replies(sms_env, first)
    assert item["destination"] == "Acme"
    assert (
        sms_env.client.get(f"/v1/sms/{second}/replies", headers=sms_env.auth).json()["items"] == []
    )


def test_an_answer_from_an_unknown_number_or_a_receipt_looking_text_is_not_kept(
    sms_env: SmsEnv,
) -> None:
    sms_id = sms_env.send(PHONE, "Reminder")
    sms_env.wait_status(sms_id, "delivered")
    stranger = sms_env.smsc.send_mo("+34612345699", "Sealpost", "who is this?")
    assert _acknowledged(sms_env, stranger) == 0  # acknowledged, so never sent again
    forged = sms_env.smsc.send_mo(
        PHONE,
        "Sealpost",
        "id:1234 sub:001 dlvrd:001 submit date:2612070900 done "
        "date:2612070901 stat:DELIVRD err:000 text:",
    )
    assert _acknowledged(sms_env, forged) == 0
    with sms_env.sp.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sms_replies)).scalar() == 0


def test_the_usual_stop_keywords_and_their_spellings_opt_out() -> None:
    # the carriers' standard set (CTIA: STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT; and
    # OPTOUT, REVOKE), quoted, full-width (a phone's other keyboard) or with a trailing "!"
    for text, keyword in (
        ("STOPALL", "STOPALL"),
        ("Unsubscribe", "UNSUBSCRIBE"),
        ("cancel", "CANCEL"),
        ("End", "END"),
        ("quit!", "QUIT"),
        ("OPTOUT", "OPTOUT"),
        ("opt-out", "OPTOUT"),
        ("opt out", "OPTOUT"),
        ("Revoke", "REVOKE"),
        ('"STOP"', "STOP"),
        ("«Baja»", "BAJA"),
        ("ＳＴＯＰ", "STOP"),
        ("Stop\n", "STOP"),
    ):
        assert opt_out_keyword(text) == keyword, text
    for text in ("stop calling me", "the end of the month", "cancel my debt?", "no"):
        assert opt_out_keyword(text) is None, text


def test_an_answer_two_tenants_could_own_goes_to_neither_and_stop_opts_out_of_both(
    sms_env: SmsEnv,
) -> None:
    """Two tenants text the same debtor from the same (default) originator: the answer names
    no tenant.  Its text must not reach the one who texted last (nor stop that tenant's
    sequence); a STOP is honoured for both."""
    other = sms_env.sp.tenants.create("globex")
    other_auth = {
        "Authorization": f"Bearer {sms_env.sp.tenants.issue_api_key(other.id, 't').secret}"
    }
    mine = sms_env.send(PHONE, "Acme: invoice 42 is overdue")
    answer = sms_env.client.post(
        "/v1/sms", json={"to": PHONE, "text": "Globex: invoice 7"}, headers=other_auth
    )
    assert answer.status_code == 201, answer.text
    theirs = answer.json()["id"]
    sms_env.wait_status(mine, "delivered")
    sms_env.wait_status(theirs, "delivered")

    key = sms_env.smsc.send_mo(PHONE, "Sealpost", "I paid Acme yesterday, my IBAN is ES91...")
    assert _acknowledged(sms_env, key) == 0  # acknowledged: the SMSC does not resend it
    with sms_env.sp.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(sms_replies)).scalar() == 0

    sms_env.smsc.send_mo(PHONE, "Sealpost", "STOP")
    (mine_reply,) = _wait_replies(sms_env, mine)
    assert mine_reply["opt_out"] is True
    listed = sms_env.client.get(f"/v1/sms/{theirs}/replies", headers=other_auth).json()
    assert [r["opt_out"] for r in listed["items"]] == [True]
    for auth in (sms_env.auth, other_auth):
        opt_outs = sms_env.client.get("/v1/sms/opt-outs", headers=auth).json()["items"]
        assert [o["phone"] for o in opt_outs] == [PHONE]
