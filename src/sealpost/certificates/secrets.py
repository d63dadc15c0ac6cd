"""Messages that carry an access secret: sealed as evidence, never handed to the tenant.

Sealpost's own notices, reminders, invitations and one-time codes hold a single-use link or a
code that lets whoever reads it act as the recipient or signer.  They are the tenant's
communications (the tenant is the sender of record), but the tenant is also the party the
recipient must be protected from: a sender who reads the code could accept its own registered
message "as the recipient".  So such a message is marked when it is accepted (its
SubmissionAcceptance states ``details.access_secret: true``), its bytes are stored and their
SHA-256 sealed like any other (what was sent stays provable), and no tenant-facing route
serves them: the original answers 403 ``access_secret_withheld`` and the certificate states
the digest and size instead of embedding the original.  The operator keeps the bytes, for a
court or an auditor who asks through them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sealpost.errors import SealpostError

ACCESS_SECRET = "access_secret"  # noqa: S105 (a field name, not a secret)
"""The SubmissionAcceptance detail (``true``) that marks such a message."""


class AccessSecretWithheld(SealpostError):
    """The bytes of a message that carried a single-use link or code (HTTP 403)."""

    status = 403
    code = "access_secret_withheld"
    title = "The message carried an access secret"


def carries_access_secret(details: Mapping[str, Any]) -> bool:
    """The record's details say the message carried an access secret."""
    return details.get(ACCESS_SECRET) is True


def accepted_with_secret(records: Iterable[tuple[str, Mapping[str, Any]]]) -> bool:
    """Among (event name, record) pairs of one message, its SubmissionAcceptance says so."""
    return any(
        event == "SubmissionAcceptance" and carries_access_secret(record.get("details", {}))
        for event, record in records
    )


WITHHELD_WORDS = (
    "This message carried a single-use access secret (a link or a one-time code that lets "
    "whoever reads it act as the recipient), so it is not embedded here nor served to the "
    "sender: its SHA-256 and size above are the ones every evidence record states, and the "
    "operator of this Sealpost keeps the exact bytes."
)

COMMITMENT_WORDS = (
    "This digest is not of the text alone: it is the SHA-256 of a random 16-byte nonce, one "
    "zero byte and the text in UTF-8 ({construction}), so nobody can find a short code from "
    "it by trying every possibility. The operator of this Sealpost keeps the nonce with the "
    "text and reveals both to whoever must check them against this digest."
)
"""Plain words for a salted commitment (an access-secret SMS, ``details.digest``)."""
