"""Certified email end to end: smtplib → Sealpost → a real recipient server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess

import pytest

from sealpost.certificates.manifest import utc_text
from sealpost.certificates.verify import verify_certificate_pdf
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv, make_message, submit


def test_starttls_auth_submission_is_delivered_with_evidence_and_a_valid_certificate(
    mail_env: MailEnv, keys_dir: object
) -> None:
    raw = make_message()
    code, reply = submit(mail_env, raw, [f"bob@{RECIPIENT_DOMAIN}"])
    assert code == 250
    communication_id = reply.decode().split("queued as ")[1].strip()

    delivered = mail_env.wait_status(communication_id, "delivered")
    assert delivered.attempts == 1
    # the recipient got the exact submitted bytes, under Sealpost's trace headers
    (got,) = mail_env.peer.received
    assert got.data.endswith(raw)
    assert f"X-Sealpost-Communication: {communication_id}" in got.data.decode()
    assert got.mail_from == mail_env.sp.return_paths.address(communication_id)
    assert got.mail_from.startswith(f"bounces+{communication_id}.")  # signed VERP

    timeline = mail_env.sp.communications.timeline(mail_env.tenant_id, communication_id)
    assert [e.event for e in timeline][:2] == ["SubmissionAcceptance", "RelayToNonERDS"]
    accepted, consigned = timeline[0].record, timeline[1].record
    assert accepted["sender"]["identification"]["method"] == "smtp-auth"
    assert accepted["sender"]["identification"]["tls"]["version"].startswith("TLSv1.")
    assert accepted["application_identifier"] == "<Warranty-notice-42@acme.test>"
    assert len(accepted["content"]["parts"]) == 2
    assert consigned["details"]["reply"] == "250 2.0.0 Ok: queued as QID1"
    assert consigned["details"]["queue_id"] == "QID1"
    assert consigned["details"]["remote"]["ip"] == "127.0.0.1"

    mail_env.wait_certificate(communication_id)
    pdf = mail_env.sp.certificates.latest(mail_env.sp.communications.get(communication_id))  # type: ignore[arg-type]
    report = verify_certificate_pdf(pdf, trust_roots=mail_env.sp.trust_roots)
    assert report.ok, report.failures
    assert report.communication_id == communication_id
    assert report.attachments["original.eml"] == raw
    # one time: the PDF's "issued on", the API's issued_at and the CertificateIssued record's
    (stored,) = mail_env.sp.communications.certificates(communication_id)
    issued = next(
        e
        for e in mail_env.sp.communications.timeline(mail_env.tenant_id, communication_id)
        if e.event == "CertificateIssued"
    )
    assert issued.event_time == stored.created_at
    manifest = json.loads(report.attachments["manifest.json"])
    assert manifest["issued_at"] == utc_text(stored.created_at)


@pytest.mark.parametrize("replies", [["451 4.7.1 Greylisted, try later"] * 2])
def test_temporary_failures_are_retried_then_delivered(mail_env: MailEnv) -> None:
    _code, reply = submit(mail_env, make_message("greylisted"), [f"carol@{RECIPIENT_DOMAIN}"])
    communication_id = reply.decode().split("queued as ")[1].strip()
    delivered = mail_env.wait_status(communication_id, "delivered")
    assert delivered.attempts == 3
    attempts = mail_env.sp.communications.attempts(communication_id)
    assert [a["outcome"] for a in attempts] == ["deferred", "deferred", "delivered"]
    assert attempts[0]["reply"] == "451 4.7.1 Greylisted, try later"
    events = [
        e.event for e in mail_env.sp.communications.timeline(mail_env.tenant_id, communication_id)
    ]
    assert events[:4] == [
        "SubmissionAcceptance",
        "RelayToNonERDSFailure",
        "RelayToNonERDSFailure",
        "RelayToNonERDS",
    ]
    assert len(mail_env.peer.received) == 1


@pytest.mark.parametrize("replies", [["550 5.1.1 <dave@recipient.test>: user unknown"]])
def test_permanent_failure_is_non_delivery_with_the_reply(mail_env: MailEnv) -> None:
    _, reply = submit(mail_env, make_message("unknown user"), [f"dave@{RECIPIENT_DOMAIN}"])
    communication_id = reply.decode().split("queued as ")[1].strip()
    failed = mail_env.wait_status(communication_id, "failed")
    assert failed.attempts == 1
    timeline = mail_env.sp.communications.timeline(mail_env.tenant_id, communication_id)
    non_delivery = timeline[1].record
    assert non_delivery["event"]["name"] == "NonDelivery"
    assert non_delivery["reasons"] == [
        {"code": "smtp-550", "text": "550 5.1.1 <dave@recipient.test>: user unknown"}
    ]


def test_certificate_validates_in_pdfsig(mail_env: MailEnv, tmp_path: object) -> None:
    _, reply = submit(mail_env, make_message("pdfsig"), [f"erin@{RECIPIENT_DOMAIN}"])
    communication_id = reply.decode().split("queued as ")[1].strip()
    communication = mail_env.wait_certificate(communication_id)
    pdf = mail_env.sp.certificates.latest(communication)
    from pathlib import Path

    path = Path(str(tmp_path)) / "certificate.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, check=False)
    assert "Signature is Valid" in out.stdout, out.stdout + out.stderr


def test_an_intermediary_relay_is_evidence_of_relay_not_of_delivery(mail_env: MailEnv) -> None:
    routes = mail_env.sp.delivery.router.routes
    routes[RECIPIENT_DOMAIN] = "relay:" + routes[RECIPIENT_DOMAIN]  # the operator's own MTA
    _, reply = submit(mail_env, make_message("via relay"), [f"rita@{RECIPIENT_DOMAIN}"])
    cid = reply.decode().split("queued as ")[1]
    relayed = mail_env.wait_status(cid, "relayed")
    events = [e.event for e in mail_env.sp.communications.timeline(mail_env.tenant_id, relayed.id)]
    timeline = mail_env.sp.communications.timeline(mail_env.tenant_id, relayed.id)
    assert events[:2] == ["SubmissionAcceptance", "RelayToNonERDS"]
    assert timeline[1].record["details"]["remote"]["kind"] == "smarthost"
    assert relayed.status == "relayed"  # not "delivered": the smarthost is not the recipient's
