"""Messages sent through Sealpost, archived automatically as the tenant's outbound mail.

A follower of the outbox (named cursor ``archive-outgoing``, :meth:`OutboxRepository.follow`)
takes each ``sealpost.communication.accepted`` event (one per recipient: the
SubmissionAcceptance was committed, the bytes are durable) and archives the stored message
through the :class:`SentMail` port, with ``Source("sealpost", <communication id>)`` and
direction ``outbound``.  The sending path does nothing more than before (no extra write in the
submission's group commit), and nothing is lost: the cursor moves past an event only after its
ingest committed; a crash in between archives it again, which adds nothing (the same bytes and
the same source and reference are one message and one sighting).

What is archived is the port's business (see ``sealpost.app.ArchiveSentMail``): the message
as accepted (the bytes whose SHA-256 the SubmissionAcceptance seals), never a message carrying
an access secret (a pickup notice's link, a one-time code: the tenant must never read those,
:mod:`sealpost.certificates.secrets`), and no SMS (this is a mail archive; certified SMS keep
their own records).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Protocol

from sealpost.archive.model import Source
from sealpost.archive.service import ArchiveService
from sealpost.errors import SealpostError
from sealpost.events.outbox import OutboxRepository, StoredEvent
from sealpost.logging import get_logger
from sealpost.loops import Loop

log = get_logger(__name__)

CURSOR = "archive-outgoing"
ACCEPTED = "sealpost.communication.accepted"


@dataclass(frozen=True)
class SentMessage:
    """One communication's message as Sealpost accepted it."""

    tenant_id: str
    communication_id: str
    data: bytes | BinaryIO


class SentMail(Protocol):
    """The communications Sealpost accepted, adapted by the composition root."""

    def sent(self, communication_id: str) -> SentMessage | None:
        """The message to archive; None when it is not to be archived (unknown, not an
        email, or carrying an access secret)."""
        ...


class OutgoingArchiver:
    """Follows the outbox and archives each accepted communication (see the module)."""

    def __init__(
        self,
        service: ArchiveService,
        outbox: OutboxRepository,
        sent: SentMail,
        *,
        batch: int = 200,
    ) -> None:
        self.service = service
        self.outbox = outbox
        self.sent = sent
        self.batch = batch

    def run_once(self) -> int:
        """Follow until the outbox is read to its end; returns how many events were read."""
        total = 0
        while True:
            read = self.outbox.follow(CURSOR, self.batch, self.handle)
            total += read
            if read < self.batch:
                return total

    def handle(self, event: StoredEvent) -> None:
        """Archive one accepted communication.  A fault (the database is away) propagates:
        the cursor stays and the round is retried; a refusal of this one message (it names
        no communication any more, its bytes are unreadable) is logged and skipped, never
        blocking the messages after it."""
        if event.type != ACCEPTED:
            return
        communication_id = event.subject.rsplit("/", 1)[-1]
        try:
            message = self.sent.sent(communication_id)
            if message is None or message.tenant_id != event.tenant_id:
                return
            self.service.ingest(
                message.tenant_id,
                message.data,
                Source("sealpost", message.communication_id),
                direction="outbound",
            )
        except SealpostError as exc:
            log.warning(
                "archive.outgoing_skipped", communication=communication_id, error=exc.message
            )


def loops(archiver: OutgoingArchiver, *, follow_seconds: float = 1.0) -> list[Loop]:
    from sealpost.loops import periodic

    return [periodic("archive-outgoing", follow_seconds, archiver.run_once)]
