"""The catalogue of evidence event types, by record-format version.

ETSI EN 319 522-3 (Table 2) names the 22 events of an electronic registered delivery, each as
``http://uri.etsi.org/19522/Event/<Name>``, in groups: A submission, B relay between
registered delivery services, C consent (notification for acceptance, the recipient's
acceptance or rejection, its expiry), D consignment (the content or a notice of it made
available to the recipient), E handover and access tracking, F gateways to systems that are
not registered delivery services (plain email, SMS).  Where ETSI has no event (a delay
warning, the final verdict of a plain-email delivery, the signature ceremony, the archive)
Sealpost uses its own URN, ``urn:sealpost:event:<Name>``.  A *negative* event must carry
``EventReasons`` (ETSI EN 319 522-2 clause 8.2.3).

Two catalogues exist because sealed records never change their bytes:

* **version 1** (records written before issue 13): 17 names under the ETSI URI with
  Sealpost-numbered codes (``"A.1"``...), among them ``AcceptanceByRecipient`` and
  ``RejectionByRecipient``, which are *not* names of the standard.  It is kept only so that
  a verifier can read those records; nothing new is written with it.
* **version 2** (current): exactly the 22 names of Table 2, each with its group letter.  The
  standard's per-event numbering could not be checked against its text here, so version 2
  records carry the group letter and no number (the event URI is what identifies the event).

The record's ``version`` field says which catalogue a record follows
(:mod:`sealpost.ledger.records`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ETSI_EVENT_BASE = "http://uri.etsi.org/19522/Event/"
SEALPOST_EVENT_BASE = "urn:sealpost:event:"

CATALOGUE_VERSION = 2
"""The catalogue new records follow; equal to the record format version they are written in."""

LEGACY_CATALOGUE_VERSION = 1

ETSI_TABLE_2: tuple[tuple[str, str], ...] = (
    ("SubmissionAcceptance", "A"),
    ("SubmissionRejection", "A"),
    ("RelayAcceptance", "B"),
    ("RelayRejection", "B"),
    ("RelayFailure", "B"),
    ("NotificationForAcceptance", "C"),
    ("NotificationForAcceptanceFailure", "C"),
    ("ConsignmentAcceptance", "C"),
    ("ConsignmentRejection", "C"),
    ("AcceptanceRejectionExpiry", "C"),
    ("NotificationDelivered", "C"),
    ("ContentConsignment", "D"),
    ("ContentConsignmentFailure", "D"),
    ("ConsignmentNotification", "D"),
    ("ConsignmentNotificationFailure", "D"),
    ("NotificationAccessTracking", "E"),
    ("ContentAccessTracking", "E"),
    ("ContentHandover", "E"),
    ("ContentHandoverFailure", "E"),
    ("RelayToNonERDS", "F"),
    ("RelayToNonERDSFailure", "F"),
    ("ReceivedFromNonERDS", "F"),
)
"""The 22 events of ETSI EN 319 522-3 Table 2, in the standard's order, with their group."""

ETSI_EVENT_NAMES: frozenset[str] = frozenset(name for name, _ in ETSI_TABLE_2)

CONSIGNMENT_CONSENT = "http://uri.etsi.org/19522/v1#/consignment/consent"
"""Consignment mode: the recipient accepts or rejects before the content is handed over."""
CONSIGNMENT_BASIC = "http://uri.etsi.org/19522/v1#/consignment/basic"
"""Consignment mode: the content is handed over without a prior acceptance."""

_NEGATIVE_ETSI = frozenset(
    {
        "SubmissionRejection",
        "RelayRejection",
        "RelayFailure",
        "NotificationForAcceptanceFailure",
        "ConsignmentRejection",
        "AcceptanceRejectionExpiry",
        "ContentConsignmentFailure",
        "ConsignmentNotificationFailure",
        "ContentHandoverFailure",
        "RelayToNonERDSFailure",
    }
)


class CatalogueError(ValueError):
    """An event type that the catalogue it claims to belong to does not allow."""


@dataclass(frozen=True)
class EventType:
    """One kind of event.

    ``etsi`` puts it under the ETSI URI; from catalogue 2 on, only the 22 names of Table 2 may
    (checked here, so a stray ETSI-coded event cannot even be constructed).  ``code`` is the
    "A.1"-style label that catalogue 1 wrote into records; catalogue 2 writes none.
    """

    name: str
    group: str
    """ETSI group letter (A-F); Sealpost's own: "S" signature, "R" archive, "Q" sequence,
    "X" other."""
    negative: bool
    """Negative events (rejections, failures, expiry) must carry at least one reason."""
    etsi: bool = False
    code: str | None = None
    catalogue: int = CATALOGUE_VERSION

    def __post_init__(self) -> None:
        if self.catalogue >= 2 and self.etsi and self.name not in ETSI_EVENT_NAMES:
            raise CatalogueError(
                f"{self.name!r} is not an event of ETSI EN 319 522-3 Table 2 and cannot use "
                "the ETSI URI; use Sealpost's own URN (etsi=False)"
            )
        if self.catalogue >= 2 and self.code is not None:
            raise CatalogueError("catalogue 2 event types carry no numbered code")

    @property
    def uri(self) -> str:
        base = ETSI_EVENT_BASE if self.etsi else SEALPOST_EVENT_BASE
        return base + self.name


_OWN: tuple[tuple[str, str, bool], ...] = (
    # delivery clocks and the final verdict of a plain-email delivery
    ("DelayWarning", "X", True),
    ("NonDelivery", "X", True),
    ("Expiry", "X", True),
    # signature processes
    ("ProcessCreated", "S", False),
    ("SignerNotified", "S", False),
    ("SignerIdentified", "S", False),
    ("SignerIdentificationFailed", "S", True),  # OTP attempts exhausted: locked out
    ("DocumentViewed", "S", False),
    ("DocumentSigned", "S", False),
    ("ProcessCompleted", "S", False),
    ("ProcessDeclined", "S", True),
    ("ProcessExpired", "S", True),
    ("ProcessCancelled", "S", True),
    # archive and certificates
    ("Archived", "R", False),
    ("CertificateIssued", "R", False),
)

_V1_ETSI: tuple[tuple[str, str, bool, str], ...] = (
    ("SubmissionAcceptance", "A", False, "A.1"),
    ("SubmissionRejection", "A", True, "A.2"),
    ("RelayAcceptance", "B", False, "B.1"),
    ("RelayRejection", "B", True, "B.2"),
    ("RelayFailure", "B", True, "B.3"),
    ("NotificationForAcceptance", "C", False, "C.1"),
    ("NotificationForAcceptanceFailure", "C", True, "C.2"),
    ("AcceptanceByRecipient", "C", False, "C.3"),
    ("RejectionByRecipient", "C", True, "C.4"),
    ("AcceptanceRejectionExpiry", "C", True, "C.5"),
    ("ContentConsignment", "D", False, "D.1"),
    ("ContentConsignmentFailure", "D", True, "D.2"),
    ("ContentHandover", "E", False, "E.1"),
    ("ContentHandoverFailure", "E", True, "E.2"),
    ("RelayToNonERDS", "F", False, "F.1"),
    ("RelayToNonERDSFailure", "F", True, "F.2"),
    ("ReceivedFromNonERDS", "F", False, "F.3"),
)
"""Catalogue 1's ETSI-URI events, frozen: the bytes of records sealed before issue 13."""


def _catalogue_1() -> dict[str, EventType]:
    types = [EventType(n, g, neg, True, code, 1) for n, g, neg, code in _V1_ETSI]
    types += [EventType(n, g, neg, False, None, 1) for n, g, neg in _OWN]
    return {e.name: e for e in types}


_OWN_SINCE_2: tuple[tuple[str, str, bool], ...] = (
    # What a non-ERDS operator (an SMS centre) reported after RelayToNonERDS.  Table 2 has no
    # event for it: ContentConsignment would claim that a registered delivery service consigned
    # the content, while here only the operator says it reached the handset (docs/sms.md).
    ("DeliveryReported", "X", False),
    ("DeliveryUnconfirmed", "X", True),  # no final receipt in time: never "delivered"
    # Optional open and click tracking of direct emails (docs/tracking.md): non-essential, never
    # proof of reading (mail clients preload images, security scanners follow links), so never
    # an ETSI access-tracking event, which is about a registered delivery service's own portal.
    ("OpenTracked", "X", False),
    ("LinkClicked", "X", False),
    # A recipient's answer (an email reply, a mobile-originated SMS): a new message from the
    # recipient, recorded on the original; not a step of the original's delivery, so no ETSI
    # name fits it (docs/replies.md).
    ("ReplyReceived", "X", False),
    # Legal deadlines (sealpost.deadlines): a term computed from a trigger record, and its
    # clock.  Computations and the passing of time, not acts of anyone: never ETSI events.
    ("DeadlineSet", "X", False),
    ("DeadlineApproaching", "X", False),
    ("DeadlinePassed", "X", False),
    # reminder sequences (issue 14): the enrolment's own steps; each message sent is a
    # communication or SMS with its own records
    ("SequenceEnrolled", "Q", False),
    ("SequenceStepSent", "Q", False),
    ("SequenceStepFailed", "Q", True),
    ("SequenceStopped", "Q", False),
    ("SequenceCompleted", "Q", False),
    # the mail archive (issue 15): a thread given to an agent or team (Archived, above, is
    # each message's own record)
    ("ThreadAssigned", "R", False),
    # the archive's IMAP pull (issue 15): a mailbox configured (never its secret), failing
    # (mail may wait at the source: a gap the archive must be able to show), recovered
    ("MailboxConfigured", "R", False),
    ("MailboxFailing", "R", True),
    ("MailboxRecovered", "R", False),
    # unanswered-mail alerts (docs/archive-sla.md): the passing of business time on a
    # customer's unanswered mail, and the escalation it caused; computations, not acts
    ("ReplyDeadlineApproaching", "R", False),
    ("ReplyDeadlineMissed", "R", False),
    ("ReplyEscalated", "R", False),
    # an SLA policy created, replaced or deleted (who, the terms before and after): it
    # decides which breaches get recorded
    ("SlaPolicyChanged", "R", False),
    # scheduled sends: a message to send later, withdrawn before it went (the message sent
    # has its own SubmissionAcceptance)
    ("SendScheduled", "R", False),
    ("ScheduledSendCancelled", "R", False),
    # legal hold, retention and export (issue 15): acts of a named person (a hold placed or
    # released, an export made, a retention period changed) and the purge after retention
    # who may see what in the archive (issue 15): an agent created, its role changed, disabled,
    # enabled or re-keyed; a team created or its members changed
    ("AgentChanged", "R", False),
    ("TeamChanged", "R", False),
    ("LegalHoldPlaced", "R", False),
    ("LegalHoldReleased", "R", False),
    ("RetentionChanged", "R", False),
    ("Purged", "R", False),
    ("ExportCreated", "R", False),
    # the journal address's token replaced (docs/archive-journal.md): the old address is
    # refused from then on
    ("JournalAddressRotated", "R", False),
)


def _catalogue_2() -> dict[str, EventType]:
    types = [EventType(n, g, n in _NEGATIVE_ETSI, True) for n, g in ETSI_TABLE_2]
    types += [EventType(n, g, neg) for n, g, neg in _OWN + _OWN_SINCE_2]
    return {e.name: e for e in types}


CATALOGUES: Mapping[int, Mapping[str, EventType]] = {
    LEGACY_CATALOGUE_VERSION: _catalogue_1(),
    CATALOGUE_VERSION: _catalogue_2(),
}
"""Every catalogue a sealed record may follow, by record version."""

EVENT_TYPES: Mapping[str, EventType] = CATALOGUES[CATALOGUE_VERSION]
"""The current catalogue: the only one new records are written with."""


def event_type(name: str) -> EventType:
    """Look an event type up by name in the current catalogue.

    Unknown names are a programming error, not user input; a name only catalogue 1 had (such
    as ``AcceptanceByRecipient``) says so.
    """
    try:
        return EVENT_TYPES[name]
    except KeyError:
        if name in CATALOGUES[LEGACY_CATALOGUE_VERSION]:
            raise KeyError(
                f"{name!r} is a catalogue-1 event name, readable in old records but no longer "
                "written (ETSI EN 319 522-3 Table 2 does not have it)"
            ) from None
        raise KeyError(f"unknown evidence event type {name!r}") from None
