"""Helpers for delivery tests under load: a recipient server that answers slowly, messages.

The slow recipient keeps deliveries *in flight* (DATA sent, reply not yet back) long enough
for a crash or a second worker to land in the middle of them, as on a real, busy MX.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.smtp_peer import Received, RecipientHandler, RecipientServer


@dataclass
class SlowRecipientHandler(RecipientHandler):
    delay: float = 0.0
    """Seconds the server "thinks" after the final dot, before it accepts (and replies)."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


class SlowRecipientServer(RecipientServer):
    """A :class:`RecipientServer` whose every DATA takes ``delay`` seconds to be accepted."""

    def __init__(self, delay: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.handler = SlowRecipientHandler(delay=delay)
        self.controller.handler = self.handler


def received_header(received: Received, name: str) -> str | None:
    value = message_from_bytes(received.data).get(name)
    return None if value is None else str(value).strip()


def copies_by(received: list[Received], header: str) -> Counter[str]:
    """How many copies the recipient got, per value of ``header`` (Message-ID, ...)."""
    return Counter(received_header(r, header) or "" for r in list(received))


def numbered_message(n: int, *, to: str, domain: str = "acme.test") -> tuple[str, bytes]:
    """A small distinct message with its own Message-ID; returns (Message-ID, CRLF bytes)."""
    message_id = f"<load-{n:05d}@{domain}>"
    msg = EmailMessage()
    msg["From"] = f"Acme Service <service@{domain}>"
    msg["To"] = to
    msg["Subject"] = f"Reminder {n}"
    msg["Message-ID"] = message_id
    msg.set_content(f"Your invoice {n} is due on 2027-01-31.\n")
    return message_id, msg.as_bytes(policy=SMTP_POLICY)
