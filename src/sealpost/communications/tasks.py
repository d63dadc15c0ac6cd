"""The communications' background loops: delivery, and the issuing of evidence certificates."""

from __future__ import annotations

import threading

from sealpost.communications.certificates import CertificateService
from sealpost.communications.email.delivery import DeliveryWorker
from sealpost.config import Settings
from sealpost.loops import Loop, in_event_loop, periodic


def loops(
    delivery: DeliveryWorker, certificates: CertificateService, settings: Settings
) -> list[Loop]:
    """The delivery worker and the certificate issuer, as settings enable them."""
    found = []
    if settings.delivery_enabled:
        found.append(in_event_loop("delivery", delivery.run))
    if settings.certificates_enabled:
        found.append(Loop("certificates", lambda stop: _issue_every_second(certificates, stop)))
    return found


def _issue_every_second(certificates: CertificateService, stop: threading.Event) -> None:
    periodic("certificates", 1.0, lambda: certificates.issue_due(stop=stop)).run(stop)
