"""Who a link, a page session or a one-time code is for, and what the kit tells its callers.

Every page a person opens from a certified message (the signing page today; registered pickup,
the console later) needs the same pieces: a single-use link that a mail scanner cannot burn, a
page session that needs no cookie, a one-time code sent by a channel (email now, SMS later),
counted attempts and a lockout.  They are keyed by a :class:`Holder` — (tenant, subject type,
subject id, party id), e.g. ("t1", "signature_process", <process id>, <signer id>) — never by
one domain's ids, so each domain keeps its own rows and states and this kit keeps the access.
No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import phonenumbers

LINK, SESSION = "link", "session"
"""The two kinds of token: a link (in a message; single use) and a page session (in the page)."""

EMAIL, SMS = "email", "sms"
"""Channels a one-time code goes by (the evidence names it: ``otp_channel``)."""

DIGITS = 6
VALID_SECONDS = 600
MAX_ATTEMPTS = 5
"""Code checks per holder: the 5th wrong one locks, until whoever issues links vouches again."""
MAX_SENDS = 5
"""Codes sent to one holder per link: more is someone hammering the button (or a bot); each
code is a message with a cost."""


@dataclass(frozen=True)
class Holder:
    """Whom access is granted to: one party of one subject of one tenant."""

    tenant_id: str
    subject_type: str
    """The domain's subject, as in evidence records: "signature_process", ..."""
    subject_id: str
    party_id: str
    """The person within the subject (a signer, a recipient); a UUID."""


@dataclass(frozen=True)
class Grant:
    """What a link or session token opens, and whether it is still good."""

    holder: Holder
    kind: str
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True)
class Challenge:
    """A holder's one-time code state: the code (as an HMAC), where it went, the counters."""

    holder: Holder
    channel: str | None
    code_hash: str | None
    expires_at: datetime | None
    attempts: int
    sends: int
    sent_to: str | None
    """The address or number the last code went to."""
    communication_id: str | None
    """The certified message that carried it: evidence of where the code went."""
    code_session: str | None = None
    """A digest of the page session the pending code was asked from (None: unknown)."""

    @property
    def locked(self) -> bool:
        return self.attempts >= MAX_ATTEMPTS

    @property
    def attempts_left(self) -> int:
        return max(MAX_ATTEMPTS - self.attempts, 0)


@dataclass(frozen=True)
class CodeCheck:
    """The outcome of one counted code check."""

    matched: bool
    attempts: int
    """Checks made so far, this one included."""
    locked: bool
    """This wrong check was the last one allowed: the holder is locked out now."""
    challenge: Challenge
    """The state the check was made against (where the code went: for the evidence)."""

    @property
    def attempts_left(self) -> int:
        return max(MAX_ATTEMPTS - self.attempts, 0)


class CodeDelivery(Protocol):
    """Sends ``code`` to the holder by the challenge's channel; the caller words the message
    (a signing code, a pickup code) and picks the transport (a certified email, an SMS)."""

    def __call__(self, code: str) -> str:
        """Deliver ``code``; returns the id of the communication that carries it."""
        ...


def mask(sent_to: str, channel: str | None) -> str:
    """``j***@example.com`` or ``+34 6•• ••• •12``: enough for the person to recognise, not
    to harvest (an E.164 number keeps its country code, the first digit of the national number
    and the last two)."""
    if channel == SMS:
        return mask_number(sent_to)
    local, _, domain = sent_to.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_number(number: str) -> str:
    """``+34612345612`` -> ``+34 6•• ••• •12``: the national number in groups of three, all
    hidden but its first digit and its last two (ITU-T E.164 §6: country code, then the
    national significant number; a last group of one joins the one before)."""
    try:
        parsed = phonenumbers.parse(number, None)
        country, national = (
            str(parsed.country_code),
            phonenumbers.national_significant_number(parsed),
        )
    except phonenumbers.NumberParseException:
        return f"•••• {number[-2:]}"
    if len(national) < 4:
        return f"+{country} ••••"
    hidden = national[0] + "•" * (len(national) - 3) + national[-2:]
    groups = [hidden[i : i + 3] for i in range(0, len(hidden), 3)]
    if len(groups) > 1 and len(groups[-1]) == 1:  # +1 415 555 2671, not +1 415 555 267 1
        groups[-2:] = [groups[-2] + groups[-1]]
    return f"+{country} {' '.join(groups)}"
