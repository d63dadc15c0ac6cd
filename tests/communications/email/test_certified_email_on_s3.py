"""Certified email whose bytes live in an S3-compatible store (issue 17): smtplib → Sealpost
(``SEALPOST_BLOB_URL=s3://...``) → a real recipient server, against a real S3 API server on
127.0.0.1 (moto in server mode); then the same objects removed behind Sealpost's back."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import subprocess
import sys
import uuid
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from sealpost.app import build
from sealpost.certificates.verify import verify_certificate_pdf
from sealpost.communications.email.submission import SubmissionRequest
from sealpost.communications.tables import contents
from sealpost.config import Settings
from sealpost.db.s3_blobs import S3BlobStore
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv, email_settings, submit
from tests.support.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server

PREFIX = "acme-prod"


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


def s3_settings(s3_server: S3Server, bucket: str) -> dict[str, object]:
    return s3_server.blob_settings(bucket, f"{PREFIX}/")


@pytest.fixture
def mail_overrides(s3_server: S3Server, bucket: str) -> dict[str, object]:
    """``mail_env``'s Sealpost keeps its blobs in the test's bucket."""
    return s3_settings(s3_server, bucket)


def big_message(subject: str) -> bytes:
    """A message whose 1.5 MiB attachment takes it past the database's inline limit (1 MiB):
    its bytes must go to the blob store."""
    msg = EmailMessage()
    msg["From"] = "Acme Service <service@acme.test>"
    msg["To"] = f"bob@{RECIPIENT_DOMAIN}"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@acme.test>"
    msg.set_content("The signed contract is attached.\n")
    msg.add_attachment(
        os.urandom(1536 * 1024), maintype="application", subtype="pdf", filename="contract.pdf"
    )
    return msg.as_bytes(policy=SMTP)


def _submitted(mail_env: MailEnv, raw: bytes) -> str:
    code, reply = submit(mail_env, raw, [f"bob@{RECIPIENT_DOMAIN}"])
    assert code == 250, reply
    return reply.decode().split("queued as ")[1].strip()


def test_a_certified_email_whose_content_and_certificate_live_in_s3(
    mail_env: MailEnv, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    raw = big_message("Contract on S3")
    digest = hashlib.sha256(raw).hexdigest()
    assert len(raw) > mail_env.sp.settings.content_inline_max_bytes
    communication_id = _submitted(mail_env, raw)

    # written before the commit that names it: the 250 came after the object was in the bucket
    assert f"{PREFIX}/blobs/{digest}" in s3_server.keys(bucket)
    with mail_env.sp.engine.connect() as conn:  # and not in the database
        assert (
            conn.execute(select(contents.c.sha256).where(contents.c.sha256 == digest)).all() == []
        )

    mail_env.wait_status(communication_id, "delivered")
    (got,) = mail_env.peer.received
    assert got.data.endswith(raw)  # the recipient got the exact bytes, read back from S3

    communication = mail_env.wait_certificate(communication_id)
    (stored,) = mail_env.sp.communications.certificates(communication_id)
    key = f"{PREFIX}/blobs/{stored.sha256}"
    assert key in s3_server.keys(bucket)
    # the certificate as the bucket holds it, fetched with a plain S3 client: a sealed PDF
    # that verifies end to end, carrying the original message read back from S3
    pdf = s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(pdf).hexdigest() == stored.sha256
    assert mail_env.sp.certificates.latest(communication) == pdf
    report = verify_certificate_pdf(pdf, trust_roots=mail_env.sp.trust_roots)
    assert report.ok, report.failures
    assert report.communication_id == communication_id
    assert report.attachments["original.eml"] == raw

    # and with the command an auditor runs, offline, on the file
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    root = Path(str(mail_env.sp.settings.resolved_keys_dir)) / "root-ca.pem"
    done = subprocess.run(
        [sys.executable, "-m", "sealpost", "verify", str(path), "--trust", str(root)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_objects_removed_behind_sealpost_are_problems_naming_the_communication(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str], s3_server: S3Server
) -> None:
    raw = big_message("Removed behind our back")
    digest = hashlib.sha256(raw).hexdigest()
    communication_id = _submitted(mail_env, raw)
    mail_env.wait_certificate(communication_id)
    (stored,) = mail_env.sp.communications.certificates(communication_id)
    base = f"/v1/communications/{communication_id}"
    assert mail_client.get(f"{base}/original.eml", headers=mail_key).content == raw

    store = mail_env.sp.blobs
    assert isinstance(store, S3BlobStore)
    client = s3_server.client()
    for sha256 in (digest, stored.sha256):
        client.delete_object(Bucket=store.location.bucket, Key=store.key(sha256))

    for path, sha256 in (("original.eml", digest), ("certificate.pdf", stored.sha256)):
        response = mail_client.get(f"{base}/{path}", headers=mail_key)
        assert response.status_code == 500, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"] == "urn:sealpost:problem:blob_missing"
        assert problem["subject_type"] == "communication"
        assert problem["subject_id"] == communication_id
        assert problem["sha256"] == sha256
        assert "Traceback" not in response.text and "botocore" not in response.text


def test_the_delivery_worker_names_the_communication_whose_content_is_gone(
    settings: Settings, s3_server: S3Server, bucket: str
) -> None:
    sp = build(email_settings(settings, 9, **s3_settings(s3_server, bucket)))  # no delivery loop
    try:
        tenant = sp.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}")
        raw = big_message("Gone before delivery")
        digest = hashlib.sha256(raw).hexdigest()
        accepted = sp.submissions.accept(
            SubmissionRequest(
                tenant_id=tenant.id,
                via="api",
                mail_from="service@acme.test",
                recipients=(f"bob@{RECIPIENT_DOMAIN}",),
                raw=raw,
                identification={"method": "test"},
            )
        )
        (communication_id,) = accepted.communication_ids
        store = sp.blobs
        assert isinstance(store, S3BlobStore)
        s3_server.client().delete_object(Bucket=bucket, Key=store.key(digest))

        assert asyncio.run(sp.delivery.run_until_idle(max_rounds=1)) == 1  # one attempt
        communication = sp.communications.get(communication_id)
        assert communication is not None
        assert communication.status == "queued"  # a local fault: retried, never "delivered"
        (attempt,) = sp.communications.attempts(communication_id)
        assert attempt["outcome"] == "deferred"
        assert f"communication {communication_id}" in attempt["reply"]
        assert digest in attempt["reply"] and "missing from the blob store" in attempt["reply"]
    finally:
        sp.stop_background()
        sp.engine.dispose()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


@pytest.mark.parametrize(
    "mail_overrides",
    [
        {
            "blob_url": "s3://evidence-bucket/acme",
            "blob_s3_endpoint_url": f"http://127.0.0.1:{_closed_port()}",
            "blob_s3_access_key_id": ACCESS_KEY_ID,
            "blob_s3_secret_access_key": SecretStr(SECRET_ACCESS_KEY),
            "blob_s3_addressing_style": "path",
        }
    ],
)
def test_an_unreachable_store_refuses_the_message_and_keeps_nothing(
    mail_env: MailEnv, mail_client: TestClient, mail_key: dict[str, str]
) -> None:
    """SMTP answers 451 (try again later), the API a 503 problem with an incident id (the
    bucket and the endpoint are in the operator's log, not told to clients); no communication
    is created, so nothing can name bytes that were not stored."""
    code, reply = submit(mail_env, big_message("Store down"), [f"bob@{RECIPIENT_DOMAIN}"])
    assert code == 451, reply

    raw = big_message("Store down, API")
    body = {"raw": base64.b64encode(raw).decode(), "recipients": [f"bob@{RECIPIENT_DOMAIN}"]}
    response = mail_client.post("/v1/communications", json=body, headers=mail_key)
    assert response.status_code == 503, response.text
    problem = response.json()
    assert problem["type"] == "urn:sealpost:problem:blob_store_unavailable"
    endpoint = str(mail_env.sp.settings.blob_s3_endpoint_url)
    # the client gets an incident id; the bucket and the internal endpoint stay in the log
    assert "incident" in problem["detail"] and problem["title"] in problem["detail"]
    assert endpoint not in response.text and "evidence-bucket" not in response.text
    assert response.headers["retry-after"] == "5"
    assert "Traceback" not in response.text
    assert response.headers["retry-after"]
    listed = mail_client.get("/v1/communications", headers=mail_key)
    assert listed.status_code == 200 and listed.json()["items"] == []
