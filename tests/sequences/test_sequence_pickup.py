"""Stops from other domains, read from the outbox by the sequences' follower.  A
``certified_email_pickup`` step is a registered pickup like any other (notice, code,
acceptance on the page); the recipient's acceptance, read from the outbox by the sequences'
follower, stops the enrolment: the next step is never sent."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sealpost.communications.tables import communications
from tests.pickup.flow import Recipient, code_in, link_in, notify, token_of, wait_mail
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv


@pytest.fixture
def mail_overrides() -> dict[str, object]:
    return {"certificates_enabled": False, "pickup_worker_enabled": False}


def _template(text: str, subject: str) -> dict[str, Any]:
    return {"fallback_language": "es", "languages": {"es": {"subject": subject, "text": text}}}


def test_pickup_accepted_stops_the_sequence(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    client, key, sp = mail_client, mail_key, mail_env.sp
    definition = {
        "name": "Requerimiento con recogida",
        "sender": {"email": "cobros@acme.test"},
        "steps": [
            {
                "channel": "certified_email_pickup",
                "template": _template("Requerimiento {{ reference }}: {{ amount }} EUR", "Req."),
            },
            {
                "channel": "email",
                "template": _template("Segundo aviso {{ reference }}", "Aviso"),
                "delay": {"amount": 2, "unit": "hours"},
            },
        ],
    }
    created = client.post("/v1/sequences", json=definition, headers=key)
    assert created.status_code == 201, created.text
    enrolled = client.post(
        f"/v1/sequences/{created.json()['id']}/enrolments",
        json={
            "person": {"name": "Dora", "email": f"dora@{RECIPIENT_DOMAIN}"},
            "variables": {"reference": "F-9", "amount": "300"},
        },
        headers=key,
    )
    assert enrolled.status_code == 201, enrolled.text
    enrolment_id = enrolled.json()["id"]
    assert sp.sequence_scheduler.run_once() == 1
    [step] = sp.sequences.repo.steps(enrolment_id)[:1]
    assert step.message_type == "communication" and step.message_id
    detail = client.get(f"/v1/communications/{step.message_id}", headers=key).json()
    assert detail["pickup"] is not None  # a registered pickup, not a direct email
    with sp.engine.connect() as conn:  # certified: its certificate is issued by the loop
        auto = conn.execute(
            select(communications.c.certificate_auto).where(communications.c.id == step.message_id)
        ).scalar_one()
    assert auto == 1

    notify(mail_env)
    link = link_in(wait_mail(mail_env, "dora", "certified message is waiting"))
    recipient = Recipient(client)
    recipient.open(token_of(link))
    assert recipient.call("POST", "/code").status_code == 200
    code = code_in(wait_mail(mail_env, "dora", "Su código"))
    assert recipient.call("POST", "/identify", {"answer": code}).status_code == 200
    assert recipient.call("POST", "/accept").status_code == 200

    sp.start_events()
    deadline = time.monotonic() + 30
    while sp.sequences.enrolment(None, enrolment_id).status == "active":
        assert time.monotonic() < deadline, "the acceptance did not stop the enrolment"
        sp.sequence_follower.run_once()
        time.sleep(0.1)
    found = sp.sequences.enrolment(None, enrolment_id)
    assert (found.status, found.stop_cause) == ("stopped", "pickup_accepted")
    steps = sp.sequences.repo.steps(enrolment_id)
    assert [s.status for s in steps] == ["sent", "cancelled"]


def test_a_signed_document_stops_the_enrolment_that_names_its_process(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    from tests.signatures.flow import (
        drawn_signature,
        link_path,
        open_page,
        process_request,
        signer,
    )
    from tests.signatures.flow import wait_mail as wait_signing_mail

    client, key, sp = mail_client, mail_key, mail_env.sp
    body = process_request(signer("Jane", "jane", identification="none"))
    created = client.post("/v1/signatures", json=body, headers=key)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    definition = {
        "name": "Firma pendiente",
        "sender": {"email": "firmas@acme.test"},
        "steps": [
            {"channel": "email", "template": _template("Firme el presupuesto", "Firma")},
            {
                "channel": "email",
                "template": _template("Segundo aviso", "Firma"),
                "delay": {"amount": 1, "unit": "hours"},
            },
        ],
    }
    sequence = client.post("/v1/sequences", json=definition, headers=key).json()
    enrolled = client.post(
        f"/v1/sequences/{sequence['id']}/enrolments",
        json={
            "person": {"name": "Jane", "email": f"jane@{RECIPIENT_DOMAIN}"},
            "external_ids": {"signature_process": pid},
        },
        headers=key,
    )
    assert enrolled.status_code == 201, enrolled.text
    enrolment_id = enrolled.json()["id"]

    page = open_page(client, link_path(wait_signing_mail(mail_env, "jane", "asks you to sign")))
    assert page.call("POST", "/view").status_code == 204
    assert page.sign(drawn_signature()).json() == {"status": "signed"}
    deadline = time.monotonic() + 30
    while client.get(f"/v1/signatures/{pid}", headers=key).json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)

    sp.start_events()
    while sp.sequences.enrolment(None, enrolment_id).status == "active":
        assert time.monotonic() < deadline + 30, "the signature did not stop the enrolment"
        sp.sequence_follower.run_once()
        time.sleep(0.1)
    found = sp.sequences.enrolment(None, enrolment_id)
    assert (found.status, found.stop_cause) == ("stopped", "signed")
    assert sp.sequence_scheduler.run_once() == 0  # the first step, due, was cancelled
