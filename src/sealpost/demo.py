"""``sealpost demo``: one certified email, end to end, on this machine only.

It runs a throwaway recipient mail server on 127.0.0.1, a Sealpost with its SMTP listeners on
free ports (its own data directory, so a running ``make run`` is not disturbed), submits a
message the way a company's mail server would (STARTTLS + AUTH), waits for the delivery and the
sealed certificate, and verifies the certificate as a stranger would.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from sealpost.app import Sealpost, build
from sealpost.certificates.verify import verify_certificate_pdf
from sealpost.communications.repository import Communication
from sealpost.config import Settings
from sealpost.errors import NotFound

DEMO_DOMAIN = "customer.example"


@dataclass
class _Inbox:
    """The recipient's mail server: keeps what it accepts."""

    messages: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope.original_content or b"")
        return f"250 2.0.0 Ok: queued as DEMO{len(self.messages)}"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _message() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Acme Customer Care <care@acme.example>"
    msg["To"] = f"Jane Doe <jane@{DEMO_DOMAIN}>"
    msg["Subject"] = "Your warranty claim 2026-0042 was approved"
    msg.set_content(
        "Dear Jane,\n\nyour claim 2026-0042 was approved; the repair is free of charge.\n"
        "You can object within 14 days.\n\nAcme Customer Care\n"
    )
    msg.add_attachment(
        b"%PDF-1.4\n% claim decision\n",
        maintype="application",
        subtype="pdf",
        filename="decision-2026-0042.pdf",
    )
    return msg.as_bytes(policy=SMTP_POLICY)


def _wait(
    sp: Sealpost, communication_id: str, done: Callable[[Communication], bool], timeout: float
) -> Communication:
    deadline = time.monotonic() + timeout
    while True:
        found = sp.communications.get(communication_id)
        if found is not None and done(found):
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"communication {communication_id} is still {found}")
        time.sleep(0.1)


@dataclass(frozen=True)
class DemoResult:
    communication_id: str
    status: str
    certificate: Path
    trust_root: Path
    valid: bool
    statement: str
    delivered_bytes: int


def run_demo(data_dir: Path, say: Callable[[str], None] = print) -> DemoResult:
    inbox = _Inbox()
    peer_port = _free_port()
    peer = Controller(inbox, hostname="127.0.0.1", port=peer_port, decode_data=False)
    peer.start()
    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        hostname="sealpost.localhost",
        smtp_submission_port=0,
        smtp_tls_port=None,
        smtp_inbound_port=None,
        delivery_routes={DEMO_DOMAIN: f"127.0.0.1:{peer_port}"},
        batch_window_ms=50,
    )
    sp = build(settings)
    try:
        try:
            tenant = sp.tenants.get("Demo")
        except NotFound:
            tenant = sp.tenants.create("Demo")
        credential = sp.senders.issue_smtp_credential(tenant.id)
        sp.start_background()
        sp.start_email()
        port = sp.smtp_ports["submission"]
        root = sp.settings.resolved_keys_dir / "root-ca.pem"
        say(f"1. Recipient mail server for {DEMO_DOMAIN} listening on 127.0.0.1:{peer_port}")
        say(f"2. Sealpost SMTP submission on 127.0.0.1:{port} (STARTTLS, AUTH)")
        context = ssl.create_default_context(
            cafile=str(sp.settings.resolved_keys_dir / "root-ca.pem")
        )
        context.check_hostname = False
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.starttls(context=context)
            client.login(credential.username, credential.password)
            client.mail("care@acme.example")
            client.rcpt(f"jane@{DEMO_DOMAIN}")
            code, reply = client.data(_message())
        communication_id = reply.decode().rsplit(" ", 1)[-1]
        say(f"3. Submitted: {code} {reply.decode()}")
        done = _wait(sp, communication_id, lambda c: c.status != "queued", 60)
        say(f"4. {done.status}: {done.last_reply}")
        done = _wait(sp, communication_id, lambda c: c.certificate_version >= 1, 60)
        pdf = sp.certificates.latest(done)
        target = data_dir / f"certificate-{communication_id}.pdf"
        target.write_bytes(pdf)
        say(f"5. Sealed evidence certificate: {target}")
        report = verify_certificate_pdf(pdf, trust_roots=sp.trust_roots)
        return DemoResult(
            communication_id=communication_id,
            status=done.status,
            certificate=target,
            trust_root=root,
            valid=report.ok,
            statement=report.statement(),
            delivered_bytes=len(inbox.messages[0]) if inbox.messages else 0,
        )
    finally:
        sp.stop_background()
        sp.engine.dispose()
        peer.stop()
