"""Fixtures: a running Sealpost with SMTP listeners and a real recipient server on 127.0.0.1."""

from __future__ import annotations

import smtplib
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost, build
from sealpost.communications.email.submission import SubmissionRequest
from sealpost.communications.repository import Communication
from sealpost.config import Settings
from sealpost.tenants.senders import SmtpCredential
from tests.support.smtp_peer import RecipientServer

RECIPIENT_DOMAIN = "recipient.test"


@dataclass
class MailEnv:
    sp: Sealpost
    tenant_id: str
    credential: SmtpCredential
    peer: RecipientServer

    @property
    def submission_port(self) -> int:
        return self.sp.smtp_ports["submission"]

    def wait_for(
        self,
        communication_id: str,
        predicate: Callable[[Communication], bool],
        timeout: float = 20.0,
    ) -> Communication:
        deadline = time.monotonic() + timeout
        while True:
            found = self.sp.communications.get(communication_id)
            if found is not None and predicate(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; last state: {found}")
            time.sleep(0.05)

    def wait_status(self, communication_id: str, *statuses: str) -> Communication:
        return self.wait_for(communication_id, lambda c: c.status in statuses)

    def wait_certificate(self, communication_id: str, version: int = 1) -> Communication:
        return self.wait_for(
            communication_id, lambda c: c.certificate_version >= version, timeout=30.0
        )


def email_settings(settings: Settings, peer_port: int, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "hostname": "sealpost.test",
        "smtp_submission_port": 0,
        "smtp_tls_port": 0,
        "smtp_inbound_port": 0,
        "delivery_routes": {RECIPIENT_DOMAIN: f"127.0.0.1:{peer_port}"},
        "delivery_retry_initial_seconds": 0.2,
        "delivery_retry_max_seconds": 1.0,
        "delivery_lease_seconds": 30.0,
        "certify_domain": "certify.sealpost.test",
        "bounce_domain": "bounces.sealpost.test",
    }
    values.update(overrides)
    return settings.model_copy(update=values)


@pytest.fixture
def replies() -> list[str]:
    """What the recipient server answers to DATA, in order (then 250)."""
    return []


@pytest.fixture
def mail_overrides() -> dict[str, object]:
    """Settings a test changes (parametrize it), e.g. a small size limit."""
    return {}


@pytest.fixture
def mail_env(
    settings: Settings, replies: list[str], mail_overrides: dict[str, object]
) -> Iterator[MailEnv]:
    with RecipientServer(replies) as peer:
        sp = build(email_settings(settings, peer.port, **mail_overrides))
        tenant = sp.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}")
        credential = sp.senders.issue_smtp_credential(tenant.id)
        sp.start_background()
        sp.start_email()
        try:
            yield MailEnv(sp, tenant.id, credential, peer)
        finally:
            sp.stop_background()
            sp.engine.dispose()


@pytest.fixture
def mail_client(mail_env: MailEnv) -> Iterator[TestClient]:
    """The REST API of ``mail_env``'s Sealpost (its background work is the fixture's own)."""
    with TestClient(create_app(mail_env.sp, start_background=False)) as test_client:
        yield test_client


@pytest.fixture
def mail_key(mail_env: MailEnv) -> dict[str, str]:
    """Headers with an API key of ``mail_env``'s tenant."""
    secret = mail_env.sp.tenants.issue_api_key(mail_env.tenant_id, "crm").secret
    return {"Authorization": f"Bearer {secret}"}


def accept_one(sp: Sealpost, tenant_id: str, local: str) -> str:
    """Accept one message for ``local@recipient.test`` the way SMTP and the API do
    (``SubmissionService``, group commit), without a socket; returns its communication id."""
    accepted = sp.submissions.accept(
        SubmissionRequest(
            tenant_id=tenant_id,
            via="api",
            mail_from="care@acme.test",
            recipients=(f"{local}@{RECIPIENT_DOMAIN}",),
            raw=make_message(f"Notice {local}"),
            identification={"method": "test"},
        )
    )
    return accepted.communication_ids[0]


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def make_message(subject: str = "Warranty notice 42", to: str = f"bob@{RECIPIENT_DOMAIN}") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Acme Service <service@acme.test>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@acme.test>"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg.set_content("Your warranty expires on 2027-01-31.\n")
    msg.add_attachment(b"%PDF-1.4 terms", maintype="application", subtype="pdf", filename="t.pdf")
    return msg.as_bytes(policy=SMTP)  # CRLF, as on the wire


def submit(env: MailEnv, raw: bytes, rcpts: list[str]) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", env.submission_port, timeout=10) as client:
        client.ehlo("crm.acme.test")
        client.starttls(context=_client_tls())
        client.ehlo("crm.acme.test")
        client.login(env.credential.username, env.credential.password)
        client.mail("service@acme.test")
        for rcpt in rcpts:
            client.rcpt(rcpt)
        return client.data(raw)
