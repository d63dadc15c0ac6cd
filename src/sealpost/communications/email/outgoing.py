"""Sealpost's own certified emails: what another domain sends through communications.

Invitations to sign, reminders and one-time codes are certified emails like any a tenant
sends: built here (``mime.build_message``) and accepted by the same submission service, so
each gets its SubmissionAcceptance and delivery evidence (ETSI EN 319 522-3) in the tenant's
name.  Other domains do not import this module: they declare a port (e.g. signatures'
``Mailer``) and the composition root adapts it to :class:`CertifiedMailer`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from email.utils import formataddr
from typing import Any

from sqlalchemy import Connection

from sealpost.communications.email.mime import build_message, new_message_id, prepend_headers
from sealpost.communications.email.submission import SubmissionRequest, SubmissionService
from sealpost.communications.ports import DIRECT, PICKUP, PickupRequest

NONCE_HEADER = "Sealpost-Nonce"
"""The header that salts an access-secret email's digest (an extension field, RFC 5322 §3.6.8)."""


def with_nonce(raw: bytes) -> bytes:
    """``raw`` with a ``Sealpost-Nonce: <32 hex>`` header field first (a fresh 128-bit nonce).

    Header order is free (RFC 5322 §3.6), and DKIM signs the message as delivered later, so
    the field rides along to the recipient, who holds the code anyway."""
    return prepend_headers(raw, [(NONCE_HEADER, secrets.token_hex(16))])


class CertifiedMailer:
    """Builds a plain-text email and accepts it as an API submission of ``tenant_id``."""

    def __init__(self, submissions: SubmissionService, *, hostname: str) -> None:
        self.submissions = submissions
        self.hostname = hostname
        """The right-hand side of the Message-IDs it makes (RFC 5322 §3.6.4)."""

    def send(
        self,
        *,
        tenant_id: str,
        sender: str,
        to: str,
        subject: str,
        text: str,
        attachments: Sequence[tuple[str, str, bytes]] = (),
        identification: Mapping[str, str],
        details: Mapping[str, Any],
        access_secret: bool = False,
        reply_capture: bool = False,
        html: str | None = None,
        sender_name: str | None = None,
        pickup: bool = False,
        certificate: bool = True,
        guard_in: Callable[[Connection, str], None] | None = None,
        sender_domains: frozenset[str] = frozenset(),
    ) -> str:
        """Accept the email durably (with its evidence); returns its communication id.

        ``access_secret``: the email carries a single-use link or a one-time code.  Its
        SubmissionAcceptance then states ``details.access_secret: true`` and omits the digests
        of its parts (a six-digit code's text part is found from its SHA-256 in a million
        tries); the communications domain never serves such bytes to the tenant
        (:mod:`sealpost.communications.secrets`).  The message also carries a
        ``Sealpost-Nonce`` header of 128 random bits (:func:`with_nonce`): the whole message's
        SHA-256 is sealed and shown to the tenant, and without the nonce nobody can rebuild the
        message around each of a million codes (Message-ID, Date, From, To and Subject are all
        known to the tenant); the operator keeps the exact bytes to open it.

        ``reply_capture``: the email gets its own reply address in ``Reply-To`` (beside the
        sender) and replies are recorded on it (``ReplyReceived``; events
        ``sealpost.communication.replied`` / ``auto_replied``): what a sequence that stops on
        an answer sends.  Off by default (Sealpost's own notices and codes); ignored with
        ``access_secret`` (a reply may quote the code).

        ``html``: an HTML alternative to ``text``; ``sender_name``: the From display name;
        ``pickup``: delivered by registered pickup with the tenant's defaults (a reminder
        sequence's ``certified_email_pickup`` step), never for a message with an access
        secret; ``certificate``: :attr:`SubmissionRequest.certificate`; ``guard_in``:
        :attr:`SubmissionRequest.guard_in`; ``sender_domains``:
        :attr:`SubmissionRequest.sender_domains` (a From the tenant chose is held to its
        registered domains, as ``POST /v1/communications`` holds it; Sealpost's own notices
        from the operator's address pass none)."""
        raw = build_message(
            sender=formataddr((sender_name, sender)) if sender_name else sender,
            to=[to],
            subject=subject,
            text=text,
            html=html,
            attachments=attachments,
            message_id=new_message_id(self.hostname),
        )
        if access_secret:
            raw = with_nonce(raw)
        accepted = self.submissions.accept(
            SubmissionRequest(
                tenant_id=tenant_id,
                via="api",
                mail_from=sender,
                recipients=(to,),
                raw=raw,
                identification=dict(identification),
                details={**dict(details), **({"access_secret": True} if access_secret else {})},
                # a notice, a code, an invitation: never a pickup itself
                delivery=PICKUP if pickup and not access_secret else DIRECT,
                pickup=PickupRequest() if pickup and not access_secret else None,
                tracking=False,  # nor tracked: Sealpost's own messages are never rewritten
                reply_capture=reply_capture,
                guard_in=guard_in,
                certificate=certificate,
                sender_domains=sender_domains,
            )
        )
        return accepted.communication_ids[0]
