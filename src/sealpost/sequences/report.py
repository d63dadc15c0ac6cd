"""The sealed sequence report PDF."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

from sealpost.certificates.render import SealpostPages
from sealpost.certificates.seal import seal_pdf
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import SigningIdentity


@dataclass(frozen=True)
class EvidenceRef:
    record_id: str
    event: str
    time: datetime


@dataclass(frozen=True)
class ReportStep:
    number: int
    channel: str
    variant: str | None
    planned_at: datetime | None
    sent_at: datetime | None
    status: str
    message_id: str | None
    recipient: str | None
    evidence: Sequence[EvidenceRef] = ()
    certificate: str | None = None
    deadline: str | None = None


@dataclass(frozen=True)
class SequenceReport:
    tenant_name: str
    sequence_id: str
    sequence_name: str
    sequence_version: int
    enrolment_id: str
    person_name: str
    person_contact: str
    variant: str | None
    enrolled_at: datetime
    stopped_at: datetime | None
    stop_cause: str | None
    steps: Sequence[ReportStep] = field(default_factory=tuple)
    generated_at: datetime | None = None


def render_pdf(report: SequenceReport) -> bytes:
    pdf = SealpostPages(f"Sequence report — enrolment {report.enrolment_id}")
    pdf.alias_nb_pages()
    pdf.add_page()
    pdf.heading(f"Sequence report: {report.sequence_name}")
    for step in report.steps:
        pdf.heading(f"Step {step.number}: {step.channel}")
        pdf.field("Status", step.status)
    if report.stop_cause:
        pdf.field("Stopped", report.stop_cause)
    return bytes(pdf.output())


def render_report(
    report: SequenceReport,
    *,
    seal: SigningIdentity,
    timestamper: TimeStamper,
    trust_roots: Sequence[x509.Certificate],
) -> bytes:
    return seal_pdf(
        render_pdf(report),
        seal=seal,
        timestamper=timestamper,
        trust_roots=trust_roots,
        reason="Sealpost sequence report",
    )
