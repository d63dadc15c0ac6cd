"""The sealed sequence report: the one PDF a collector brings to court for one enrolment.

It lists each step of the enrolment's sequence, planned and done, with the evidence records
that prove what happened to its message and the reference of that message's own evidence
certificate, then why and when the sequence stopped.  Its words never claim more than the
evidence does: an email is "accepted by the recipient's mail server", an SMS "reported
delivered by the operator", a pickup "accepted by the identified recipient"; nothing is ever
said to be read (an opened link or image is shown as non-essential, since mail clients and
scanners open them on their own).

The report refers to evidence, it does not carry it: each step's message has its own sealed
certificate with the evidence bundles attached (``certificates/render.py``), and each record id
can be checked in the ledger.  ``sequence-report.json``, attached, holds the same data in
machine-readable form.  The PDF is laid out with the certificates' page style and sealed with
the same PAdES B-LTA seal (``certificates/seal.py``): any change after sealing shows in a PDF
reader, in poppler's ``pdfsig`` and in pyHanko.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from cryptography import x509

from sealpost.certificates.fonts import close_fonts
from sealpost.certificates.manifest import utc_text
from sealpost.certificates.render import LABEL_WIDTH, SealpostPages
from sealpost.certificates.seal import seal_pdf
from sealpost.ledger.timestamps import TimeStamper
from sealpost.pki.keys import SigningIdentity

REPORT_NAME = "sequence-report.json"
TITLE = "Sequence report"


class EvidenceRef(NamedTuple):
    """One evidence record of a step's message: its id in the ledger, its event name (an ETSI
    name such as ``RelayToNonERDS`` or a ``urn:sealpost:event:`` one, given by its short
    name) and its event time; ``relayed`` for a ``RelayToNonERDS`` whose server was a relay
    (``details.remote.kind == "smarthost"``), not the recipient's own; ``answer`` for a
    ``ReplyReceived``: ``reply`` (the person answered), ``automatic`` (an out-of-office or
    other automatic answer: kept, stops nothing) or ``opt_out`` (an SMS answer STOP)."""

    record_id: str
    event: str
    time: datetime
    relayed: bool = False
    answer: str | None = None


@dataclass(frozen=True)
class ReportStep:
    """One step of the enrolment, as planned and as done.

    ``status`` is the step's state (``sent``, ``delivered``, ``failed``, ``held``,
    ``planned``, ``cancelled``...); ``certificate`` a reference to the message's evidence
    certificate (``certificate v2 of communication c_…, SHA-256 …``); ``deadline`` the text of
    a legal deadline the step opened (``the 10-business-day term in ES-CT ends on …``).
    ``evidence`` takes :class:`EvidenceRef` or plain ``(record_id, event, time)`` tuples.
    """

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

    def __post_init__(self) -> None:
        refs = tuple(e if isinstance(e, EvidenceRef) else EvidenceRef(*e) for e in self.evidence)
        object.__setattr__(self, "evidence", tuple(sorted(refs, key=lambda e: e.time)))


@dataclass(frozen=True)
class SequenceReport:
    """One enrolment of one sequence version, for the report.  ``person_name`` and
    ``person_contact`` as enrolled (the contact the steps went to: phone, email or both);
    ``stop_cause`` a cause code (``paid``, ``replied``, ``pickup_accepted``,
    ``pickup_rejected``, ``signed``, ``opted_out``, ``cancelled``, ``channel_failed``,
    ``completed``) or words; ``generated_at`` the report's time (now when None)."""

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
    evidence: Sequence[EvidenceRef] = ()
    """The enrolment's own records (``SequenceEnrolled``, ``SequenceStopped``...)."""

    def __post_init__(self) -> None:
        refs = tuple(e if isinstance(e, EvidenceRef) else EvidenceRef(*e) for e in self.evidence)
        object.__setattr__(self, "evidence", tuple(sorted(refs, key=lambda e: e.time)))


CHANNELS = {
    "sms": "SMS",
    "email": "email",
    "certified_email": "certified email",
    "certified_email_pickup": "certified email with registered pickup",
    "certified_sms": "certified SMS",
}

EVENT_WORDS = {
    "SubmissionAcceptance": "Sealpost accepted the message for sending",
    "SubmissionRejection": "Sealpost refused the message; it was not sent",
    "RelayToNonERDS": "the recipient's mail server accepted the message (SMTP 250)",
    "ContentConsignment": "the recipient's mail server accepted the message (SMTP 250)",
    "RelayToNonERDSFailure": "a delivery attempt was deferred and retried",
    "NonDelivery": "the message could not be delivered (final failure)",
    "DeliveryReported": "the mobile operator reported the SMS delivered to the handset",
    "DeliveryUnconfirmed": "the mobile operator did not confirm delivery",
    "DelayWarning": "delivery was delayed",
    "ConsignmentNotification": "a notice that a registered message awaits pickup was sent",
    "ConsignmentNotificationFailure": "the notice of a registered message could not be sent",
    "NotificationDelivered": "the notice was reported delivered",
    "NotificationForAcceptance": "the recipient was notified to accept or reject the message",
    "NotificationForAcceptanceFailure": "the notification to accept or reject could not be sent",
    "ContentHandover": "the identified recipient was shown the message",
    "ConsignmentAcceptance": "the identified recipient accepted the message",
    "ConsignmentRejection": "the identified recipient rejected the message",
    "AcceptanceRejectionExpiry": "the pickup period ended with no acceptance or rejection",
    "ContentAccessTracking": "a tracked link or image was fetched (non-essential: mail "
    "clients and scanners fetch them on their own; never proof of reading)",
    "NotificationAccessTracking": "a link of the notice was fetched (non-essential: scanners "
    "fetch links on their own; never proof of reading)",
    "CertificateIssued": "an evidence certificate was issued for the message",
    "ReplyReceived": "an answer to this message reached Sealpost and was kept",
    "SequenceEnrolled": "the sequence recorded the enrolment",
    "SequenceStepSent": "the sequence recorded that it submitted this step's message",
    "SequenceStepFailed": "the sequence recorded that this step's channel failed",
    "SequenceStopped": "the sequence recorded its stop and the cause",
    "SequenceCompleted": "the sequence recorded that every step was done",
}
"""What each event's record proves, in words that claim no more than it."""

ANSWER_WORDS = {
    "reply": (
        "an answer to this message reached Sealpost and was kept (it gives the recipient's "
        "address or number as its sender; an email's sender address is not authenticated)"
    ),
    "automatic": (
        "an automatic answer (out-of-office or similar) to this message was kept; it is no "
        "answer from the person and stops nothing"
    ),
    "opt_out": (
        "an answer from the recipient's number with an opt-out keyword (STOP) reached Sealpost"
    ),
}
"""What a ``ReplyReceived`` record shows, by the kind of answer its details record."""

RELAYED_WORDS = (
    "a relay mail server on the way to the recipient accepted the message (SMTP 250); the "
    "record does not show the recipient's own server receiving it"
)

# Strongest first: the step's summary is the first of these its evidence holds.
_OUTCOMES = (
    ("ConsignmentAcceptance", "accepted by the identified recipient"),
    ("ConsignmentRejection", "rejected by the identified recipient"),
    ("ContentHandover", "shown to the identified recipient"),
    ("AcceptanceRejectionExpiry", "not accepted or rejected within the pickup period"),
    ("NonDelivery", "not delivered (final failure)"),
    ("SubmissionRejection", "refused by Sealpost, not sent"),
    ("DeliveryReported", "reported delivered by the operator"),
    ("DeliveryUnconfirmed", "sent; the operator did not confirm delivery"),
    ("RelayToNonERDS", "accepted by the recipient's mail server"),
    ("ContentConsignment", "accepted by the recipient's mail server"),
    ("ConsignmentNotification", "notice of a registered message sent; awaiting pickup"),
    ("SubmissionAcceptance", "accepted for sending by Sealpost"),
    ("SequenceStepFailed", "failed on its channel"),
    ("SequenceStepSent", "submitted by the sequence"),
)

STOP_WORDS = {
    "paid": "the debt was marked paid through the API",
    "replied": (
        "an answer to a step's message reached Sealpost (an inbound message matched to it; an "
        "email's sender address is not authenticated)"
    ),
    "pickup_accepted": "the identified recipient accepted a registered message at pickup",
    "pickup_rejected": "the identified recipient rejected a registered message at pickup",
    "signed": "the signature process named in the enrolment was completed",
    "opted_out": (
        "the person opted out (the opt-out link, or an opt-out keyword such as STOP answered "
        "to a step's SMS)"
    ),
    "opt_out": "the person used the opt-out link",
    "cancelled": "the enrolment was cancelled manually",
    "manual": "the enrolment was cancelled manually",
    "channel_failed": "a step's channel failed and the sequence says to stop",
    "failed": "a step's channel failed and the sequence says to stop",
    "completed": "every step was done",
}


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return utc_text(moment).replace("T", " ").replace(".000000Z", " UTC").replace("Z", " UTC")


def _event_words(ref: EvidenceRef) -> str:
    short = _short(ref.event)
    if short == "RelayToNonERDS" and ref.relayed:
        return RELAYED_WORDS
    if short == "ReplyReceived" and ref.answer in ANSWER_WORDS:
        return ANSWER_WORDS[ref.answer]
    return EVENT_WORDS.get(short, f"recorded as {short}")


def _short(event: str) -> str:
    name = event.removeprefix("urn:sealpost:event:")
    return name.rsplit("#", 1)[-1].rsplit("/", 1)[-1] if "://" in name else name


def step_outcome(step: ReportStep) -> str:
    """The step's outcome in one phrase, from its strongest evidence; its status when no
    record proves more."""
    names = {_short(e.event): e for e in step.evidence}
    for event, words in _OUTCOMES:
        ref = names.get(event)
        if ref is None:
            continue
        if event == "RelayToNonERDS" and ref.relayed:
            return "accepted by a relay mail server (the recipient's server not shown)"
        return f"{words} ({_when(ref.time)})"
    if step.sent_at is None:
        return f"not sent ({step.status})"
    return f"{step.status}; no evidence record listed"


def stop_words(cause: str | None) -> str:
    if cause is None:
        return "the sequence has not stopped"
    return STOP_WORDS.get(cause, cause)


def report_json(report: SequenceReport) -> dict[str, Any]:
    """The report's data, as attached to the PDF (``sequence-report.json``)."""

    def t(moment: datetime | None) -> str | None:
        return utc_text(moment) if moment is not None else None

    return {
        "type": "sealpost.sequence_report",
        "version": 1,
        "tenant": report.tenant_name,
        "sequence": {
            "id": report.sequence_id,
            "name": report.sequence_name,
            "version": report.sequence_version,
        },
        "enrolment": {
            "id": report.enrolment_id,
            "person": {"name": report.person_name, "contact": report.person_contact},
            "variant": report.variant,
            "enrolled_at": t(report.enrolled_at),
            "stopped_at": t(report.stopped_at),
            "stop_cause": report.stop_cause,
        },
        "steps": [
            {
                "number": s.number,
                "channel": s.channel,
                "variant": s.variant,
                "planned_at": t(s.planned_at),
                "sent_at": t(s.sent_at),
                "status": s.status,
                "message_id": s.message_id,
                "recipient": s.recipient,
                "outcome": step_outcome(s),
                "evidence": [
                    {"record_id": e.record_id, "event": e.event, "time": t(e.time)}
                    | ({"relayed": True} if e.relayed else {})
                    | ({"answer": e.answer} if e.answer else {})
                    for e in s.evidence
                ],
                "certificate": s.certificate,
                "deadline": s.deadline,
            }
            for s in report.steps
        ],
        "evidence": [
            {"record_id": e.record_id, "event": e.event, "time": t(e.time)} for e in report.evidence
        ],
        "generated_at": t(report.generated_at),
    }


class _Pages(SealpostPages):
    """The certificates' pages, with values aligned left (references and hashes are long
    words that justified text would spread across the line)."""

    def field(self, label: str, value: str, *, mono: bool = False, indent: float = 0) -> None:
        self.set_x(self.l_margin + indent)
        self.set_font(self.fontset.text, "B", 9)
        self.cell(LABEL_WIDTH - indent, 4.8, self.fontset.clean(label))
        if mono:
            self.set_font(self.fontset.mono, size=8.5)
        else:
            self.set_font(self.fontset.text, size=9)
        text = self.fontset.clean(value) or "—"
        self.multi_cell(0, 4.8, text, align="L", new_x="LMARGIN", new_y="NEXT")


def _records(pdf: SealpostPages, evidence: Sequence[EvidenceRef]) -> None:
    if not evidence:
        pdf.field("Evidence records", "none")
        return
    pdf.set_font(pdf.fontset.text, "B", 9)
    pdf.multi_cell(0, 4.8, "Evidence records", new_x="LMARGIN", new_y="NEXT")
    for n, ref in enumerate(evidence, start=1):
        pdf.set_x(pdf.l_margin + 4)
        pdf.set_font(pdf.fontset.text, "B", 9)
        title = f"{n}. {_short(ref.event)} — {_when(ref.time)}"
        pdf.multi_cell(0, 4.8, pdf.fontset.clean(title), new_x="LMARGIN", new_y="NEXT")
        pdf.field("What it shows", _event_words(ref), indent=8)
        pdf.field("Record id", ref.record_id, mono=True, indent=8)


def _step(pdf: SealpostPages, step: ReportStep) -> None:
    channel = CHANNELS.get(step.channel, step.channel)
    pdf.set_font(pdf.fontset.text, "B", 11)
    pdf.multi_cell(
        0, 6, pdf.fontset.clean(f"Step {step.number} — {channel}"), new_x="LMARGIN", new_y="NEXT"
    )
    pdf.field("Outcome", step_outcome(step))
    pdf.field("Status", step.status)
    pdf.field("Planned for", _when(step.planned_at))
    pdf.field("Sent at", _when(step.sent_at) if step.sent_at else "not sent")
    if step.variant is not None:
        pdf.field("Variant", step.variant)
    pdf.field("To", step.recipient or "—")
    pdf.field("Message", step.message_id or "—", mono=True)
    pdf.field("Certificate", step.certificate or "none issued for this step")
    if step.deadline:
        pdf.field("Deadline", step.deadline)
    _records(pdf, step.evidence)
    pdf.ln(1)
    pdf.rule()


def render_pdf(report: SequenceReport) -> bytes:
    """The unsealed report PDF (deterministic for given data); :func:`render_report` seals it."""
    generated = report.generated_at or datetime.now(UTC)
    pdf = _Pages(f"Sealpost sequence report — enrolment {report.enrolment_id} — {_when(generated)}")
    pdf.set_title(f"{TITLE} — {report.sequence_name}")
    pdf.set_subject(f"Steps and evidence of enrolment {report.enrolment_id}")
    pdf.set_author(report.tenant_name)
    pdf.set_creator("Sealpost")
    pdf.set_creation_date(generated)
    pdf.set_lang("en")
    pdf.add_page()

    pdf.set_font(pdf.fontset.text, "B", 17)
    pdf.multi_cell(
        0, 9, pdf.fontset.clean(f"{TITLE} — {report.sequence_name}"), new_x="LMARGIN", new_y="NEXT"
    )
    pdf.ln(1)
    sent = [s for s in report.steps if s.sent_at is not None]
    pdf.paragraph(
        f"Issued on {_when(generated)} by Sealpost for {report.tenant_name.rstrip('.')}. "
        "It lists the "
        f"{len(report.steps)} steps of enrolment {report.enrolment_id} in sequence "
        f"“{report.sequence_name}” (version {report.sequence_version}), {len(sent)} of them "
        "sent, with the evidence records of each message and the reference of its own "
        "evidence certificate. Times are in UTC.",
        size=10,
    )
    pdf.paragraph(
        "What the evidence shows, and no more: an email accepted by the recipient's mail server "
        "was delivered to that server, not necessarily read; an SMS reported delivered by the "
        "operator reached the handset as the operator reports it, not necessarily read. An "
        "opened link or image is non-essential information, never proof of reading."
    )

    pdf.heading("The enrolment")
    pdf.field(
        "Sequence",
        f"{report.sequence_name} ({report.sequence_id}), version {report.sequence_version}",
    )
    pdf.field("Enrolment", report.enrolment_id, mono=True)
    pdf.field("Person", report.person_name)
    pdf.field("Contact", report.person_contact)
    if report.variant is not None:
        pdf.field("Variant", report.variant)
    pdf.field("Enrolled at", _when(report.enrolled_at))
    pdf.field("Stopped at", _when(report.stopped_at) if report.stopped_at else "not stopped")
    pdf.field("Stop cause", stop_words(report.stop_cause))
    if report.evidence:
        _records(pdf, report.evidence)

    pdf.heading(f"Steps ({len(report.steps)})")
    if not report.steps:
        pdf.paragraph("The sequence has no step.")
    for step in report.steps:
        _step(pdf, step)

    pdf.heading("The stop")
    if report.stopped_at is None:
        pdf.paragraph("The sequence has not stopped: later steps may still be sent.")
    else:
        after = [s for s in sent if s.sent_at is not None and s.sent_at > report.stopped_at]
        unsent = [s.number for s in report.steps if s.sent_at is None]
        words = (
            f"The sequence stopped on {_when(report.stopped_at)}: {stop_words(report.stop_cause)}."
        )
        if after:
            words += (
                " Steps " + ", ".join(str(s.number) for s in after) + " show a send time after it."
            )
        else:
            words += " No step listed here was sent after that time."
        if unsent:
            words += " Steps never sent: " + ", ".join(map(str, unsent)) + "."
        pdf.paragraph(words)

    attached = json.dumps(report_json(report) | {"generated_at": utc_text(generated)}, indent=2)
    content = attached.encode("utf-8")
    pdf.heading("How to verify")
    pdf.paragraph(
        "This PDF is sealed with a PAdES electronic seal and a timestamp: any change to it after "
        "sealing shows as an invalid or partial signature in a PDF reader, in poppler's pdfsig "
        "or in pyHanko. The evidence itself is in each step's evidence certificate, a sealed PDF "
        "with every evidence record attached; each record id above names an entry of the "
        "tamper-evident ledger that Sealpost can produce as an evidence bundle verifiable "
        f"offline. {REPORT_NAME}, attached, holds this report's data in machine-readable form."
    )
    pdf.embed_file(
        bytes=content,
        basename=REPORT_NAME,
        mime_type="application/json",
        modification_date=generated,
        associated_file_relationship="Data",
        desc="Machine-readable data of this sequence report",
        compress=True,
    )
    rendered = bytes(pdf.output())
    close_fonts(pdf)
    return rendered


def render_report(
    report: SequenceReport,
    *,
    seal: SigningIdentity,
    timestamper: TimeStamper,
    trust_roots: Sequence[x509.Certificate],
    location: str | None = None,
) -> bytes:
    """The report PDF sealed to PAdES B-LTA, as the evidence certificates are
    (:func:`~sealpost.certificates.seal.seal_pdf`: :class:`~sealpost.certificates.SealError`
    or its 503 ``SealUnavailable`` when the TSA is down)."""
    return seal_pdf(
        render_pdf(report),
        seal=seal,
        timestamper=timestamper,
        trust_roots=trust_roots,
        reason=f"Sealpost sequence report for enrolment {report.enrolment_id}",
        location=location,
    )
