"""The communications' background loops: delivery, and the issuing of evidence certificates."""

from __future__ import annotations

import threading

from sealpost.communications.certificates import CertificateService
from sealpost.communications.email.delivery import DeliveryWorker
from sealpost.config import Settings
from sealpost.loops import Loop, in_event_loop, while_due


def loops(
    delivery: DeliveryWorker, certificates: CertificateService, settings: Settings
) -> list[Loop]:
    """The delivery worker and the certificate issuer, as settings enable them."""
    found = []
    if settings.delivery_enabled:
        found.append(in_event_loop("delivery", delivery.run))
    if settings.certificates_enabled:
        found.append(Loop("certificates", lambda stop: _issue_while_due(certificates, stop)))
    return found


def _issue_while_due(certificates: CertificateService, stop: threading.Event) -> None:
    """Rounds of 20 back to back while a round was full, else one a second: a burst's
    certificates are not spaced out by a pause after each 20."""
    while_due("certificates", 1.0, lambda: certificates.issue_round(ROUND, stop=stop)[1]).run(stop)


ROUND = 20
"""Certificates gathered and handed to the workers at once."""
