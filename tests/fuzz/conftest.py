"""One Sealpost on SQLite per fuzz module: the properties run hundreds of examples against it.

Only what a property drives is started: the SMTP listeners (no delivery worker, no sequencer),
and an inbound listener whose DKIM key lookup never leaves the machine (pinned keys only), so
that a mutated ``d=`` or ``s=`` tag cannot make a test wait on DNS.
"""

from __future__ import annotations

import smtplib
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sealpost.app import Sealpost, build
from sealpost.communications.email.dkim import generate_dkim_key
from sealpost.communications.email.inbound import BounceProcessor, InboundHandler, inbound_factory
from sealpost.config import Settings
from tests.fuzz.bundles import Bundle, genuine_bundles

CERTIFY_DOMAIN = "certify.sealpost.test"
BOUNCE_DOMAIN = "bounces.sealpost.test"
SENDER_DOMAIN = "acme.test"


def fuzz_settings_for(directory: Path, keys_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": directory / "data",
        "database_url": f"sqlite:///{directory / 'sealpost.db'}",
        "keys_dir": keys_dir,
        "batch_window_ms": 10,
        "ledger_origin": "test.sealpost.local/ledger",
        "hostname": "sealpost.test",
        "smtp_submission_port": 0,
        "smtp_tls_port": None,
        "smtp_inbound_port": None,
        "certify_domain": CERTIFY_DOMAIN,
        "bounce_domain": BOUNCE_DOMAIN,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[list[Bundle]]:
    """Genuine bundles of a ledger on SQLite (:func:`tests.fuzz.bundles.genuine_bundles`)."""
    sp = build(fuzz_settings_for(tmp_path_factory.mktemp("fuzz-ledger"), keys_dir))
    try:
        yield genuine_bundles(sp, sp.tenants.create("fuzz-ledger").id)
    finally:
        sp.engine.dispose()


@dataclass
class SmtpSession:
    """One SMTP client that sends raw DATA bytes exactly, reconnecting when the server hangs up."""

    port: int
    login: tuple[str, str] | None
    _client: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
        client.ehlo("client.acme.test")
        if self.login is not None:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            client.starttls(context=context)
            client.ehlo("client.acme.test")
            client.login(*self.login)
        return client

    def send(self, mail_from: str, rcpt: str, raw: bytes) -> tuple[int, str]:
        """One transaction; ``raw`` must end with CRLF.  Dot-stuffed by lines as the server
        reads them (RFC 5321 §4.5.2: a line is what ends in CRLF), nothing else changed."""
        assert raw.endswith(b"\r\n")
        for attempt in range(2):
            if self._client is None:
                self._client = self._connect()
            try:
                return self._transaction(self._client, mail_from, rcpt, raw)
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _transaction(
        client: smtplib.SMTP, mail_from: str, rcpt: str, raw: bytes
    ) -> tuple[int, str]:
        code, reply = client.mail(mail_from)
        if code != 250:
            return code, reply.decode()
        code, reply = client.rcpt(rcpt)
        if code != 250:
            client.rset()
            return code, reply.decode()
        code, reply = client.docmd("DATA")
        assert code == 354, reply
        lines = raw.split(b"\r\n")
        client.send(b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines))
        client.send(b".\r\n")
        code, reply = client.getreply()
        return code, reply.decode("utf-8", "replace")

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.quit()
            except (smtplib.SMTPException, OSError):
                self._client.close()
            self._client = None


@dataclass
class FuzzMail:
    sp: Sealpost
    tenant_id: str
    submission: SmtpSession
    inbound: SmtpSession
    dkim_key: bytes
    """The private key of the tenant's own mail server, pinned as ``mail._domainkey.acme.test``."""


@pytest.fixture(scope="module")
def fuzz_mail(tmp_path_factory: pytest.TempPathFactory, keys_dir: Path) -> Iterator[FuzzMail]:
    """Submission and inbound SMTP of one Sealpost; tenant owning acme.test with a pinned key."""
    settings = fuzz_settings_for(tmp_path_factory.mktemp("fuzz-mail"), keys_dir)
    sp = build(settings)
    tenant = sp.tenants.create(f"tenant-{uuid.uuid4().hex[:8]}")
    credential = sp.senders.issue_smtp_credential(tenant.id)
    sealpost_key, sealpost_record = generate_dkim_key()
    sp.senders.add_domain(
        tenant.id,
        SENDER_DOMAIN,
        selector="sealpost",
        private_key_pem=sealpost_key,
        public_record=sealpost_record,
    )
    own_key, own_record = generate_dkim_key()
    sp.senders.pin_key(SENDER_DOMAIN, "mail", own_record)
    ports = sp.start_smtp()
    assert sp._smtp is not None
    inbound = InboundHandler(
        sp.submissions,
        sp.senders,
        BounceProcessor(sp.communications),
        settings,
        sp.return_paths,
        key_lookup=lambda _selector, _domain: None,  # pinned keys only: no DNS
    )
    inbound_port = sp._smtp.listen(inbound_factory(inbound, settings), "127.0.0.1", 0)
    submission = SmtpSession(ports["submission"], (credential.username, credential.password))
    inbound_session = SmtpSession(inbound_port, None)
    try:
        yield FuzzMail(sp, tenant.id, submission, inbound_session, own_key)
    finally:
        submission.close()
        inbound_session.close()
        sp.stop_background()
        sp.engine.dispose()
