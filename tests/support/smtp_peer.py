"""A real SMTP recipient server on 127.0.0.1 (aiosmtpd) with scripted replies, for tests.

It plays the recipient's mail server: answers each DATA with the next scripted reply
(``451 ...`` twice then ``250 ...``, say) and keeps what it accepted, byte for byte.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message_id(self) -> str | None:
        return message_from_bytes(self.data).get("Message-ID")


@dataclass
class RecipientHandler:
    replies: list[str] = field(default_factory=list)
    """Replies to DATA, consumed in order; then ``default``."""
    default: str = "250 2.0.0 Ok: queued as QID{n}"
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.attempts += 1
            reply = self.replies.pop(0) if self.replies else self.default
            reply = reply.replace("{n}", str(self.attempts))
            if reply.startswith("250"):
                self.received.append(
                    Received(
                        envelope.mail_from or "",
                        list(envelope.rcpt_tos),
                        envelope.original_content or b"",
                    )
                )
        return reply


class RecipientServer:
    """``with RecipientServer(replies=[...]) as peer: ... peer.port, peer.handler.received``."""

    def __init__(
        self,
        replies: Iterable[str] = (),
        *,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        **kwargs: Any,
    ) -> None:
        self.handler = RecipientHandler(list(replies))
        self.port = free_port()
        tls_context = None
        if tls_cert is not None and tls_key is not None:
            import ssl

            tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_context.load_cert_chain(tls_cert, tls_key)
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="mx.recipient.test",
            tls_context=tls_context,
            decode_data=False,
            enable_SMTPUTF8=True,
            **kwargs,
        )

    def __enter__(self) -> RecipientServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        return self.handler.received
