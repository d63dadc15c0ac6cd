"""A reply arriving on the inbound port: matched to its communication, kept, evidenced.

Which communication: the signed reply address names it (``replies+<id>.<tag>@``, see
:mod:`~sealpost.communications.email.replies`); without a valid tag, the reply's
``In-Reply-To`` and then its ``References`` (newest first) must name the Message-ID of a
communication *whose recipient sent this reply* (From or envelope sender), within a single
tenant.  That second path is weaker (a Message-ID and a From address can be known to others)
and the record says which path matched (``matched_by``).

What is kept: the exact bytes (``envelope.original_content``) under their SHA-256, a row per
matched communication and a ``urn:sealpost:event:ReplyReceived`` record on the *original*
communication: a reply is a new message from the recipient, not a step of the original's
delivery, so no ETSI event name fits it.  A message whose MIME is malformed (any parser defect) is
still kept when the signed address names its communication (the raw bytes are the evidence,
the parser's complaints go in the record); otherwise it is refused with a 550 (its headers
are not trusted to match it), as is a reply that matches nothing, and nothing is stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from sealpost.certificates.secrets import accepted_with_secret
from sealpost.communications.email.mime import MessageFacts, describe_message, header_section
from sealpost.communications.email.replies import ReplyAddresses, automatic_reason
from sealpost.communications.reply_repository import ReplyRepository
from sealpost.communications.repository import Communication, CommunicationRepository
from sealpost.ledger.records import Party, Subject, new_record
from sealpost.logging import get_logger

log = get_logger(__name__)

UNMATCHED = (
    "550 5.1.1 This reply matches no communication: send it to the Reply-To address of the "
    "message you answer, or keep its In-Reply-To header"
)
UNREADABLE = (
    "550 5.6.0 This message is not well-formed MIME and names no communication by its reply "
    "address: nothing was kept"
)


MAX_REFERENCES = 20
"""How many of a reply's References (newest first) are looked up."""


def _headers(raw: bytes) -> list[tuple[str, str]]:
    try:
        parsed = BytesHeaderParser(policy=compat32).parsebytes(header_section(raw))
    except Exception:
        return []
    return [(str(k), str(v)) for k, v in parsed.items()]


class ReplyIntake:
    """Matches, stores and evidences replies (blocking: the SMTP hook runs it in a thread)."""

    def __init__(
        self,
        communications: CommunicationRepository,
        replies: ReplyRepository,
        addresses: ReplyAddresses,
    ) -> None:
        self.communications = communications
        self.replies = replies
        self.addresses = addresses

    def known(self, address: str) -> bool | None:
        """For RCPT: True when the signed address names a communication, False when it names
        one that does not exist (550 5.1.1), None when it is not signed (matched at DATA)."""
        communication_id = self.addresses.communication(address)
        if communication_id is None:
            return None
        return self.communications.get(communication_id) is not None

    def _carried_secret(self, communication: Communication) -> bool:
        """The communication is one of Sealpost's own with a single-use link or code."""
        timeline = self.communications.timeline(communication.tenant_id, communication.id)
        return accepted_with_secret((e.event, e.record) for e in timeline)

    def _by_headers(
        self, facts: MessageFacts, mail_from: str
    ) -> tuple[list[Communication], str | None]:
        senders = {a.lower() for a in (facts.from_address, mail_from) if a}
        wanted = [(facts.in_reply_to, "in_reply_to")] if facts.in_reply_to else []
        # the newest few: a thread's References grow, and each is one lookup
        wanted += [(r, "references") for r in reversed(facts.references[-MAX_REFERENCES:])]
        for message_id, how in wanted:
            found = self.communications.find_by_message_id(message_id or "")
            # only this reply's author's communications: another tenant may well have sent
            # a message with the same Message-ID (the sender's choice) to someone else
            chosen = [c for c in found if c.recipient.lower() in senders]
            if len({c.tenant_id for c in chosen}) > 1:
                log.warning("reply.ambiguous_message_id", message_id=message_id)
                continue
            if chosen:
                return chosen[:1], how
        return [], None

    def receive(
        self,
        raw: bytes,
        rcpt_tos: Sequence[str],
        mail_from: str,
        smtp: Mapping[str, Any],
        now: datetime | None = None,
    ) -> str:
        """Store the reply for the communication(s) it answers; the SMTP reply to give."""
        now = now or datetime.now(UTC)
        facts = describe_message(raw)
        malformed = bool(facts.defects)
        signed = [i for i in (self.addresses.communication(a) for a in rcpt_tos) if i]
        targets = [c for c in (self.communications.get(i) for i in dict.fromkeys(signed)) if c]
        matched_by = "reply_address" if targets else None
        if not targets and not malformed:
            targets, matched_by = self._by_headers(facts, mail_from)
        if not targets:
            log.info("reply.unmatched", rcpt=list(rcpt_tos), malformed=malformed)
            return UNREADABLE if malformed else UNMATCHED
        headers = _headers(raw)
        reason = automatic_reason(headers, facts.subject, mail_from)
        sender_address = (facts.from_address or mail_from or "<>")[:320]
        rows, records = [], []
        for communication in targets:
            reply_id = str(uuid.uuid4())
            reply: dict[str, Any] = {
                "reply_id": reply_id,
                "message_id": facts.message_id,
                "in_reply_to": communication.message_id,
                "matched_by": matched_by,
                "automatic": reason is not None,
                "subject": facts.subject,
                "received_by": list(rcpt_tos),
            }
            if reason is not None:
                reply["automatic_reason"] = reason
            if facts.defects:
                reply["mime_defects"] = list(facts.defects)
            content = facts.content
            if self._carried_secret(communication):
                # a reply may be just the code: no part's digest (a million tries), as for
                # the code email itself; the whole message's digest stays
                content = replace(content, parts=())
            record = new_record(
                tenant_id=communication.tenant_id,
                event="ReplyReceived",
                subject=Subject("communication", communication.id),
                event_time=now,
                submission_time=communication.submitted_at,
                sender=Party(
                    sender_address,
                    facts.from_display,
                    {"method": "none", "envelope_from": mail_from},
                ),
                recipient=Party(communication.sender),
                application_identifier=facts.message_id,
                content=content,
                details={"reply": reply, "smtp": dict(smtp)},
            )
            records.append(record)
            rows.append(
                {
                    "id": reply_id,
                    "tenant_id": communication.tenant_id,
                    "communication_id": communication.id,
                    "received_at": now,
                    "sender": sender_address,
                    "envelope_from": mail_from[:320],
                    "message_id": (facts.message_id or "").replace("\0", "") or None,
                    "subject": (facts.subject or "").replace("\0", "\ufffd") or None,
                    "content_sha256": facts.content.sha256,
                    "content_size": facts.content.size,
                    "automatic": int(reason is not None),
                    "automatic_reason": reason,
                    "matched_by": matched_by,
                    "malformed": int(malformed),
                    "record_id": record.id,
                }
            )
        stored = self.replies.store(raw, rows, records)
        log.info(
            "reply.received",
            communications=[c.id for c in targets],
            stored=stored,
            automatic=reason is not None,
        )
        if not stored:
            return "250 2.0.0 Reply already received"
        return f"250 2.0.0 Reply received: {' '.join(stored)}"
