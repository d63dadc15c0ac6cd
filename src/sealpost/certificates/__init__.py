"""Evidence certificates: a readable PDF of a communication's evidence, sealed with PAdES.

``render_certificate`` lays out :class:`CertificateData` and attaches the message and the
evidence bundles; ``seal_pdf`` seals it (PAdES B-LTA); ``verify_certificate_pdf`` checks the
seal and every attachment offline.
"""

from sealpost.certificates.errors import NotACertificate, SealError, SealUnavailable
from sealpost.certificates.model import CertificateData, CertificateEvent
from sealpost.certificates.render import render_certificate
from sealpost.certificates.report import CertificateReport
from sealpost.certificates.seal import seal_pdf
from sealpost.certificates.verify import verify_certificate_pdf

__all__ = [
    "CertificateData",
    "CertificateEvent",
    "CertificateReport",
    "NotACertificate",
    "SealError",
    "SealUnavailable",
    "render_certificate",
    "seal_pdf",
    "verify_certificate_pdf",
]
