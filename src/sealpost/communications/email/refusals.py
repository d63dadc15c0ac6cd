"""Submissions refused for good: why, the SMTP reply and the API problem of each refusal.

A refusal is permanent: SMTP answers ``5xx`` with an RFC 3463 enhanced status code, so the
client gives up instead of retrying a message that will never be taken, and the API answers
``422``.  When the sender was identified, it leaves SubmissionRejection evidence (ETSI EN
319 522-3, A.2) whose EventReasons carry the reply.  Only a fault of Sealpost's own (the
database is down) is temporary: ``451`` / ``503``, and the client keeps the message.

What content is refused, and why (:func:`check_content`):

* a NUL in the header section.  RFC 5322 allows none in a header field (§2.2, §3.2.5; only
  the obsolete syntax of §4.1 tolerates it, and it "MUST NOT" be generated); a NUL ends the
  text in many programs, so a recipient's program may show less than what the evidence and
  the certificate state, and PostgreSQL refuses it in text columns anyway;
* a Subject or From display name that *decodes* to a NUL (an RFC 2047 encoded word ``=00``),
  for the same reason;
* a Message-ID longer than 998 octets: a msg-id holds no folding white space (RFC 5322
  §3.6.4), so it cannot be longer than a line (§2.1.1), and it is the identifier by which
  evidence and bounces are looked up (indexed).

Everything else is taken as it is: the raw bytes are stored as bytes whatever they contain (a
NUL in the body included), line separators such as U+2028 in a Subject are Unicode text like
any other (RFC 6532), and an encoded word that cannot be decoded is shown as written.
"""

from __future__ import annotations

from typing import ClassVar

from sealpost.communications.email.mime import MessageFacts, header_section
from sealpost.errors import InvalidInput

MAX_MESSAGE_ID_OCTETS = 998


class SubmissionRefused(InvalidInput):
    """A submission refused for good (SMTP 5xx, HTTP 422), with SubmissionRejection evidence
    when the sender was identified."""

    reason_code: ClassVar[str] = "refused"
    """The EventReasons code of the SubmissionRejection record."""
    smtp_status: ClassVar[str] = "554 5.7.0"
    """Reply code and RFC 3463 enhanced status code of the SMTP refusal."""

    def smtp_reply(self) -> str:
        """The one-line SMTP reply (RFC 5321 §4.2): code, enhanced code, the reason."""
        text = " ".join(self.message.split())  # one line, whatever the message holds
        return f"{self.smtp_status} {text}"


class ContentRefused(SubmissionRefused):
    """The message itself cannot be accepted (SMTP 554 5.6.0, HTTP 422)."""

    code = "content_refused"
    title = "The message content cannot be accepted"
    reason_code = "content"
    smtp_status = "554 5.6.0"  # RFC 3463 X.6.0: other or undefined media (content) error


def check_content(raw: bytes, facts: MessageFacts) -> None:
    """Raise :class:`ContentRefused` if ``raw`` cannot be certified as written (see above)."""
    if b"\0" in header_section(raw):
        raise ContentRefused(
            "a header field holds a NUL character, which RFC 5322 never allows in a header "
            "(§2.2); remove it and send the message again"
        )
    for name, value in (("Subject", facts.subject), ("From display name", facts.from_display)):
        if value is not None and "\0" in value:
            raise ContentRefused(
                f"the {name} decodes to a NUL character (an RFC 2047 encoded word): "
                "remove it and send the message again"
            )
    if facts.message_id is not None:
        size = len(facts.message_id.encode("utf-8", "surrogateescape"))
        if size > MAX_MESSAGE_ID_OCTETS:
            raise ContentRefused(
                f"the Message-ID is {size} octets long; a message identifier fits on one "
                f"line of at most {MAX_MESSAGE_ID_OCTETS} (RFC 5322 §2.1.1, §3.6.4)"
            )
