"""The catalogue of evidence event types.

ETSI EN 319 522-3 (Table 2) names the events of an electronic registered delivery and groups
them: A submission, B relay between services, C consent (notification, acceptance/rejection),
D consignment, E handover, F gateways to non-ERDS systems.  Their URIs are
``http://uri.etsi.org/19522/Event/<Name>``.  Where ETSI has no event (a delay warning, the
signature ceremony, the archive) Sealpost uses its own URN, ``urn:sealpost:event:<Name>``.
A *negative* event must carry ``EventReasons`` (ETSI EN 319 522-2 clause 8.2.3).
"""

from __future__ import annotations

from dataclasses import dataclass

ETSI_EVENT_BASE = "http://uri.etsi.org/19522/Event/"
SEALPOST_EVENT_BASE = "urn:sealpost:event:"


@dataclass(frozen=True)
class EventType:
    """One kind of event; ``code`` is ETSI's "A.1"-style label, or None outside ETSI's list."""

    name: str
    group: str
    """ETSI group letter (A-F); Sealpost's own: "S" signature, "R" archive, "X" other."""
    negative: bool
    """Negative events (rejections, failures, expiry) must carry at least one reason."""
    code: str | None = None

    @property
    def uri(self) -> str:
        base = ETSI_EVENT_BASE if self.code else SEALPOST_EVENT_BASE
        return base + self.name

    @property
    def etsi(self) -> bool:
        return self.code is not None


_CATALOGUE: tuple[EventType, ...] = (
    # A: submission
    EventType("SubmissionAcceptance", "A", False, "A.1"),
    EventType("SubmissionRejection", "A", True, "A.2"),
    # B: relay between services (or to the recipient's mail server)
    EventType("RelayAcceptance", "B", False, "B.1"),
    EventType("RelayRejection", "B", True, "B.2"),
    EventType("RelayFailure", "B", True, "B.3"),
    # C: consent
    EventType("NotificationForAcceptance", "C", False, "C.1"),
    EventType("NotificationForAcceptanceFailure", "C", True, "C.2"),
    EventType("AcceptanceByRecipient", "C", False, "C.3"),
    EventType("RejectionByRecipient", "C", True, "C.4"),
    EventType("AcceptanceRejectionExpiry", "C", True, "C.5"),
    # D: consignment (the recipient's server has the content)
    EventType("ContentConsignment", "D", False, "D.1"),
    EventType("ContentConsignmentFailure", "D", True, "D.2"),
    # E: handover (the recipient has opened it)
    EventType("ContentHandover", "E", False, "E.1"),
    EventType("ContentHandoverFailure", "E", True, "E.2"),
    # F: gateways to non-ERDS systems (plain email, SMS)
    EventType("RelayToNonERDS", "F", False, "F.1"),
    EventType("RelayToNonERDSFailure", "F", True, "F.2"),
    EventType("ReceivedFromNonERDS", "F", False, "F.3"),
    # Sealpost's own: delivery clocks
    EventType("DelayWarning", "X", True),
    EventType("NonDelivery", "X", True),
    EventType("Expiry", "X", True),
    # Sealpost's own: what a non-ERDS operator (an SMS centre) reported after RelayToNonERDS.
    # Table 2 has no event for it: ContentConsignment would claim that a registered delivery
    # service consigned the content, while here only the operator says it reached the handset.
    EventType("DeliveryReported", "X", False),
    EventType("DeliveryUnconfirmed", "X", True),  # no final receipt in time: never "delivered"
    # Sealpost's own: signature processes
    EventType("ProcessCreated", "S", False),
    EventType("SignerNotified", "S", False),
    EventType("SignerIdentified", "S", False),
    EventType("SignerIdentificationFailed", "S", True),  # OTP attempts exhausted: locked out
    EventType("DocumentViewed", "S", False),
    EventType("DocumentSigned", "S", False),
    EventType("ProcessCompleted", "S", False),
    EventType("ProcessDeclined", "S", True),
    EventType("ProcessExpired", "S", True),
    EventType("ProcessCancelled", "S", True),
    # Sealpost's own: archive and certificates
    EventType("Archived", "R", False),
    EventType("CertificateIssued", "R", False),
)

EVENT_TYPES: dict[str, EventType] = {e.name: e for e in _CATALOGUE}


def event_type(name: str) -> EventType:
    """Look an event type up by name; unknown names are a programming error, not user input."""
    try:
        return EVENT_TYPES[name]
    except KeyError:
        raise KeyError(f"unknown evidence event type {name!r}") from None
