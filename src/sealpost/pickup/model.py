"""What a pickup is, where it stands, and how long its window lasts.  No I/O here.

States (one row per communication, ``pickups.state``)::

    new --notice sent--> notified --+--accept--> accepted      (consent mode)
                                    +--reject--> rejected      (consent mode)
                                    +--handover-> handed_over  (basic mode)
                                    +--window over--> expired  (AcceptanceRejectionExpiry)

``accepted``, ``rejected``, ``handed_over`` and ``expired`` are final and mutually exclusive:
each is set by one compare-and-set from an open state, in the same transaction as its evidence
record (ETSI EN 319 522-3 group C: an acceptance, a rejection or an expiry, never two).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

NEW, NOTIFIED = "new", "notified"
ACCEPTED, REJECTED, HANDED_OVER, EXPIRED = "accepted", "rejected", "handed_over", "expired"
OPEN_STATES = (NEW, NOTIFIED)
FINAL_STATES = (ACCEPTED, REJECTED, HANDED_OVER, EXPIRED)

EMAIL_OTP, SMS_OTP, CHALLENGE = "email_otp", "sms_otp", "challenge"
IDENTIFICATIONS = (EMAIL_OTP, SMS_OTP, CHALLENGE)
NOTICE_CHANNELS = ("email", "sms")
"""How the notice reaches the recipient (issue 13: "email and/or SMS"); each channel gets its
own single-use link, so opening one does not spend the other."""
"""Identification levels the sender may choose (an eID hook comes later)."""

CONSENT, BASIC = "consent", "basic"
CONSIGNMENT_MODES = (CONSENT, BASIC)
CONSIGNMENT_URIS = {
    CONSENT: "http://uri.etsi.org/19522/v1#/consignment/consent",
    BASIC: "http://uri.etsi.org/19522/v1#/consignment/basic",
}
"""ETSI EN 319 522-3 consignment modes: consent = accept or reject before handover."""

POLICIES = ("default", "es", "fr")
MAX_ATTEMPTS = 5
"""Challenge answers per recipient before the lockout (codes: the access kit counts them)."""
MAX_RESENDS = 3
"""The sender's resends per pickup: each is a message to the recipient (review2 M3)."""

_PARIS = ZoneInfo("Europe/Paris")
_MADRID = ZoneInfo("Europe/Madrid")


@dataclass(frozen=True)
class Policy:
    """A jurisdiction's pickup window."""

    name: str
    hide_sender: bool
    """The notice (and the page, until acceptance) does not name the sender."""
    legal_basis: str
    """Said in the evidence and on the certificate."""

    def expires_at(self, available_at: datetime, default_days: float) -> datetime:
        """The first instant the window is closed (an acceptance at that second is refused),
        counted from the notice (the content's availability), as a UTC instant rounded up to
        the whole second so that the notice and the certificate can state it exactly.

        Sealpost has no tenant time zone: ``es`` and ``fr`` count days on the legal clock of
        their jurisdiction (a day across a DST change is 23 or 25 hours), ``default`` counts
        24-hour days in UTC."""
        if self.name == "es":
            # Ley 39/2015 art. 43.2: rejected after ten natural days from availability, date
            # to date on Spain's official (peninsular) time, the sede's clock (art. 31.2)
            local = available_at.astimezone(_MADRID)
            closes = local + timedelta(days=10)  # wall-clock arithmetic: same local time
        elif self.name == "fr":
            # CPCE art. L.100 / R.53-3 (LRE): fifteen days from the day after the notice
            day = available_at.astimezone(_PARIS).date()
            closes = datetime.combine(day + timedelta(days=16), time(0), _PARIS)
        else:
            closes = available_at + timedelta(days=default_days)
        return _whole_second(closes.astimezone(UTC))

    @property
    def zone(self) -> ZoneInfo | None:
        """The legal clock the window is counted on (None: UTC)."""
        return {"es": _MADRID, "fr": _PARIS}.get(self.name)

    def until_text(self, closes: datetime) -> str:
        """The exact closing instant, in UTC and, for es/fr, on the legal clock too."""
        utc = f"{closes.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        if self.zone is None:
            return utc
        return f"{utc} ({closes.astimezone(self.zone):%Y-%m-%d %H:%M:%S %Z} {self.zone.key})"


def _whole_second(moment: datetime) -> datetime:
    """Rounded up: the recipient never gets less than the law's window."""
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def policy(name: str, *, default_hide_sender: bool = False) -> Policy:
    if name == "es":
        return Policy("es", False, "Ley 39/2015, art. 43.2 (10 natural days)")
    if name == "fr":
        return Policy("fr", True, "CPCE art. L.100 and R.53-3 (LRE, 15 days)")
    return Policy("default", default_hide_sender, "Sealpost default window")


@dataclass(frozen=True)
class PickupOptions:
    """What the sender chose for one communication (API body, SMTP headers, defaults)."""

    identification: str | None = None
    """None: the tenant's default, else ``email_otp``."""
    consent: str | None = None
    policy: str | None = None
    phone: str | None = None
    """E.164 number for ``sms_otp`` and for a notice by SMS."""
    notice: tuple[str, ...] | None = None
    """The notice's channels: ``("email",)`` (default), ``("sms",)`` or both."""
    challenge_question: str | None = None
    challenge_answer: str | None = None
    """Only in transit: stored as a salted scrypt hash."""


@dataclass(frozen=True)
class Pickup:
    """One communication waiting in Sealpost for its recipient."""

    communication_id: str
    tenant_id: str
    party_id: str
    state: str
    recipient: str
    sender: str
    sender_name: str | None
    subject: str | None
    content_sha256: str
    identification: str
    consent: str
    policy: str
    hide_sender: bool
    phone: str | None
    challenge_question: str | None
    challenge_hash: str | None
    attempts: int
    notice_communication_id: str | None
    notice_status: str | None
    notices_sent: int
    resends: int
    """How many times the sender resent the notice (capped at ``MAX_RESENDS``)."""
    notice_channels: str
    """``email``, ``sms`` or ``email,sms``."""
    notice_sms_id: str | None
    """The certified SMS that carried the last notice (or reminder)."""
    notice_sms_status: str | None
    """``sent`` until that SMS's own delivery is known: ``delivered``, ``failed``,
    ``unconfirmed``."""
    notice_due_at: datetime | None
    created_at: datetime
    notified_at: datetime | None
    expires_at: datetime | None
    next_reminder_at: datetime | None
    opened_at: datetime | None
    identified_at: datetime | None
    identified_session: str | None
    """SHA-256 of the page session in which the recipient identified: identification holds
    for that page only (a later link, a reminder's, asks again)."""
    offered_at: datetime | None
    decided_at: datetime | None
    handed_over_at: datetime | None
    reason: str | None

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.notice_channels.split(","))

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def sender_visible(self) -> bool:
        """The sender is named once the recipient accepted, or when the policy allows."""
        return not self.hide_sender or self.state in (ACCEPTED, HANDED_OVER)


@dataclass(frozen=True)
class Visitor:
    """Who opened the page: for the evidence."""

    ip: str | None
    user_agent: str | None
