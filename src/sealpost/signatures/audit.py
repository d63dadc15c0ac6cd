"""The audit trail of a signature process: the PDF a judge reads to know who signed what, how.

It is the account of one process: who was asked to sign, how each signer was identified, what
they consented to, every step with its time, network origin and evidence record, and the SHA-256
of each document before and after each signature.  Each signature is an incremental update of
the PDF (ISO 32000-1 §7.5.6), so those digests let anyone match a copy of the document, or any
signed revision of it, with the moment of the process it comes from.

The pages follow the evidence certificate (:mod:`sealpost.certificates.render`): its fonts, its
page layout and its building blocks.  The result is unsealed and deterministic for given data;
the caller seals it with :func:`sealpost.certificates.seal.seal_pdf` (PAdES), as for the
certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fpdf.fonts import FontFace

from sealpost.certificates.fonts import close_fonts
from sealpost.certificates.render import LABEL_WIDTH, SealpostPages

TITLE = "Audit trail — signature process"
VERIFY_COMMAND = "sealpost verify evidence.json --trust root-ca.pem"
_LINE = 4.8  # the certificate's line height for labelled fields (render.SealpostPages.field)
_NOT_RECORDED = "— (not recorded)"
_UNCHECKED = "not checked (the process predates Sealpost's check for active content)"


@dataclass(frozen=True)
class AuditSigner:
    """One person asked to sign, as the process last saw them."""

    name: str
    email: str | None
    phone: str | None
    role: str
    """What they sign as (e.g. "signer", "approver"), as the sender named it."""
    order: int
    """Their place in the signing order."""
    identification: str
    """How they were identified before signing (e.g. "email OTP")."""
    status: str
    signed_at: datetime | None


@dataclass(frozen=True)
class AuditRevision:
    """One signature applied to one document: the file's digest before and after it."""

    signer: str
    time: datetime
    sha256_before: str
    sha256_after: str


@dataclass(frozen=True)
class AuditDocument:
    """A document of the process and the chain of digests from the original to the final."""

    name: str
    pages: int
    sha256_original: str
    sha256_final: str | None
    """None while signatures are missing."""
    revisions: tuple[AuditRevision, ...]
    active_content: str | None = None
    """What intake's active-content check found, in words ("no active content found", or
    the findings a tenant allowed); None for a process created before the check existed."""


@dataclass(frozen=True)
class AuditEntry:
    """One step of the process, as recorded in the evidence ledger."""

    time: datetime
    event: str
    actor: str
    ip: str | None
    user_agent: str | None
    identification: str | None
    """How the actor was identified for this step, when it matters."""
    details: str
    record_id: str | None
    """The evidence record (GET /v1/evidence/{record_id}), or None if there is none."""


@dataclass(frozen=True)
class AuditTrail:
    """Everything the audit trail shows; every time must be timezone-aware."""

    process_id: str
    tenant: str
    title: str
    status: str
    created_at: datetime
    completed_at: datetime | None
    consent_text: str
    consent_sha256: str
    ledger_origin: str
    """The origin of the evidence log the records are in (as its checkpoints and bundles name
    it)."""
    signers: tuple[AuditSigner, ...]
    documents: tuple[AuditDocument, ...]
    entries: tuple[AuditEntry, ...]


def _utc(moment: datetime) -> str:
    """UTC to the second, as ``2026-03-01T10:00:00Z``: what a reader compares across documents."""
    if moment.tzinfo is None:
        raise ValueError(f"audit trail times must be timezone-aware, not {moment.isoformat()}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _or_none(value: str | None) -> str:
    return _NOT_RECORDED if value is None or not value.strip() else value


class _AuditPdf(SealpostPages):
    """The evidence certificate's pages (fonts, margins, headings, labelled fields), with a
    footer naming the process."""

    def __init__(self, trail: AuditTrail) -> None:
        super().__init__(f"Sealpost audit trail — signature process {trail.process_id}")
        self.trail = trail

    def lines_height(
        self, text: str, *, width: float, line: float, font: str, style: str = "", size: float
    ) -> float:
        """The height ``multi_cell`` would take for ``text``, without drawing it."""
        self.set_font(font, style, size)
        lines = self.multi_cell(
            width, line, self.fontset.clean(text) or "—", dry_run=True, output="LINES"
        )
        assert isinstance(lines, list)  # what output="LINES" returns
        return len(lines) * line

    def section(self, title: str, *, then: float = 4 * _LINE) -> None:
        """A heading, on a new page unless ``then`` millimetres of its content fit under it."""
        self.keep_together(12 + then)
        self.heading(title)

    def keep_together(self, height: float) -> None:
        """Start a new page unless ``height`` fits on this one (or would not fit on any)."""
        if self.get_y() + height > self.page_break_trigger and height < self.eph:
            self.add_page()


def _summary(pdf: _AuditPdf, t: AuditTrail) -> None:
    pdf.section("The process", then=10 * _LINE)
    pdf.field("Process id", t.process_id, mono=True)
    pdf.field("Title", t.title)
    pdf.field("Sender", t.tenant)
    pdf.field("Status", t.status)
    pdf.field("Created at", _utc(t.created_at))
    pdf.field("Completed at", _utc(t.completed_at) if t.completed_at else "not completed")
    pdf.field("Documents", str(len(t.documents)))
    pdf.field("Signers", str(len(t.signers)))
    pdf.field("Entries", str(len(t.entries)))
    pdf.field("Evidence log", t.ledger_origin, mono=True)


def _signers(pdf: _AuditPdf, t: AuditTrail) -> None:
    pdf.section(f"Signers ({len(t.signers)})", then=20)
    if not t.signers:
        pdf.paragraph("No signer was named.")
        return
    clean = pdf.fontset.clean
    pdf.set_font(pdf.fontset.text, size=8)
    pdf.set_draw_color(190)
    with pdf.table(
        col_widths=(13, 50, 22, 28, 22, 39),
        width=pdf.epw,
        text_align="LEFT",
        v_align="TOP",
        line_height=4,
        padding=1,
        borders_layout="HORIZONTAL_LINES",
        headings_style=FontFace(emphasis="BOLD"),
        repeat_headings=1,
    ) as table:
        heading = table.row()
        for text in ("Order", "Signer", "Role", "Identified by", "Status", "Signed at (UTC)"):
            heading.cell(text)
        for signer in sorted(t.signers, key=lambda s: s.order):
            who = "\n".join(v for v in (signer.name, signer.email, signer.phone) if v)
            row = table.row()
            row.cell(str(signer.order))
            row.cell(clean(who))
            row.cell(clean(signer.role))
            row.cell(clean(signer.identification))
            row.cell(clean(signer.status))
            row.cell(_utc(signer.signed_at) if signer.signed_at else "not signed")
    pdf.set_draw_color(0)
    pdf.ln(2)


def _documents(pdf: _AuditPdf, t: AuditTrail) -> None:
    pdf.section("Documents and their digests", then=8 * _LINE)
    pdf.paragraph(
        "Each signature is appended to the PDF as an incremental update, so the file after a "
        "signature begins with the exact bytes of the file before it, and a PDF reader can show "
        "each signed revision. The SHA-256 digests below identify the original file, the file as "
        "it was once each signature had been applied, and the final signed file."
    )
    pdf.paragraph(
        "Each document was checked on arrival for active content (scripts, actions that open "
        "programs, files or web addresses on their own, interactive media, executable "
        "attachments), which could make a PDF reader show something else than what was signed; "
        "what was found is listed with it."
    )
    if not t.documents:
        pdf.paragraph("The process has no document.")
    for n, document in enumerate(t.documents, start=1):
        pdf.keep_together(5.5 + 5 * _LINE)  # name, original, active content, first signature
        pdf.set_font(pdf.fontset.text, "B", 10)
        pages = f"{document.pages} page{'s' if document.pages != 1 else ''}"
        title = f"{n}. {document.name} ({pages})"
        pdf.multi_cell(0, 5.5, pdf.fontset.clean(title), new_x="LMARGIN", new_y="NEXT")
        pdf.field("Original SHA-256", document.sha256_original, mono=True, indent=4)
        pdf.field("Active content", document.active_content or _UNCHECKED, indent=4)
        for k, revision in enumerate(document.revisions, start=1):
            pdf.keep_together(3 * _LINE)
            pdf.field(f"Signature {k}", f"by {revision.signer}, {_utc(revision.time)}", indent=4)
            pdf.field("Before", revision.sha256_before, mono=True, indent=8)
            pdf.field("After", revision.sha256_after, mono=True, indent=8)
        if document.sha256_final:
            pdf.field("Final SHA-256", document.sha256_final, mono=True, indent=4)
        else:
            pdf.field("Final SHA-256", "none yet: not every signature has been applied", indent=4)
        pdf.ln(1)
        pdf.rule()


def _entry_rows(entry: AuditEntry) -> list[tuple[str, str, bool]]:
    return [
        ("Actor", entry.actor, False),
        ("IP address", _or_none(entry.ip), False),
        ("User agent", _or_none(entry.user_agent), False),
        ("Identified by", entry.identification or "—", False),
        ("Details", entry.details, False),
        ("Evidence record", entry.record_id or "none", entry.record_id is not None),
    ]


def _entries(pdf: _AuditPdf, t: AuditTrail) -> None:
    pdf.section(f"Events ({len(t.entries)} entries, times in UTC)", then=8 * _LINE)
    if not t.entries:
        pdf.paragraph("No event has been recorded yet.")
    value_width = pdf.epw - LABEL_WIDTH
    for n, entry in enumerate(t.entries, start=1):
        title = f"{n}. {_utc(entry.time)} — {entry.event}"
        rows = _entry_rows(entry)
        text = pdf.fontset.text
        height = pdf.lines_height(title, width=pdf.epw, line=5.5, font=text, style="B", size=10)
        for _, value, mono in rows:
            font, size = (pdf.fontset.mono, 8.5) if mono else (pdf.fontset.text, 9)
            height += pdf.lines_height(value, width=value_width, size=size, line=_LINE, font=font)
        pdf.keep_together(height + 2.5)
        pdf.set_font(pdf.fontset.text, "B", 10)
        pdf.multi_cell(0, 5.5, pdf.fontset.clean(title), new_x="LMARGIN", new_y="NEXT")
        for label, value, mono in rows:
            pdf.field(label, value, mono=mono, indent=4)
        pdf.ln(1)
        pdf.rule()


def _consent(pdf: _AuditPdf, t: AuditTrail) -> None:
    pdf.section("Consent", then=5 * _LINE)
    pdf.paragraph("The text a signer is shown, and must accept, before signing:")
    pdf.set_x(pdf.l_margin + 4)
    pdf.set_font(pdf.fontset.text, size=9.5)
    pdf.multi_cell(
        pdf.epw - 8, _LINE, pdf.fontset.clean(t.consent_text) or "—", new_x="LMARGIN", new_y="NEXT"
    )
    pdf.ln(1.5)
    pdf.field("Consent SHA-256", t.consent_sha256, mono=True)


def _how_to_verify(pdf: _AuditPdf, t: AuditTrail) -> None:
    pdf.section("How to verify", then=4 * _LINE)
    pdf.paragraph(
        "This PDF is sealed with a PAdES electronic seal and a timestamp: any change to it after "
        "sealing shows as an invalid or partial signature in a PDF reader's signature panel, in "
        "poppler's pdfsig or in pyHanko (pyhanko sign validate)."
    )
    pdf.paragraph(
        "Each entry's evidence record is an entry of the tamper-evident Merkle log "
        f"“{t.ledger_origin}” (RFC 9162), sealed with the service's seal and an RFC 3161 "
        "timestamp. Its evidence bundle (the record, its inclusion proof, the log's signed tree "
        "head and the timestamp) can be fetched from the Sealpost API with "
        "GET /v1/evidence/{record_id} and verified offline, without trusting Sealpost, with:"
    )
    pdf.set_font(pdf.fontset.mono, size=8.5)
    pdf.multi_cell(0, _LINE, VERIFY_COMMAND, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1.5)
    pdf.paragraph(
        "A copy of a signed document is the one this audit trail describes when its SHA-256 "
        "equals the final digest above; the file a PDF reader shows as the version signed by "
        "a given signature has the digest listed after that signature."
    )


def render_audit_trail(trail: AuditTrail) -> bytes:
    """The unsealed audit-trail PDF (A4); :func:`sealpost.certificates.seal.seal_pdf` seals it.

    Raises ValueError for a naive datetime: a time whose zone is unknown has no place in
    evidence.
    """
    times = [
        trail.created_at,
        *([trail.completed_at] if trail.completed_at else []),
        *(e.time for e in trail.entries),
        *(s.signed_at for s in trail.signers if s.signed_at),
        *(r.time for d in trail.documents for r in d.revisions),
    ]
    for moment in times:
        _utc(moment)  # refuses a naive time before anything is drawn
    pdf = _AuditPdf(trail)
    title = f"{TITLE} {trail.process_id}"
    pdf.set_title(title)
    pdf.set_subject(f"Audit trail of the signature process “{trail.title}”")
    pdf.set_author(trail.tenant)
    pdf.set_creator("Sealpost")
    pdf.set_creation_date(max(times))  # the last thing recorded: rendering stays deterministic
    pdf.set_lang("en")
    pdf.add_page()

    pdf.set_font(pdf.fontset.text, "B", 17)
    pdf.multi_cell(0, 9, pdf.fontset.clean(title), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)
    pdf.paragraph(
        f"“{trail.title}”, sent by {trail.tenant} through Sealpost. Status: {trail.status}.",
        size=10,
    )
    pdf.paragraph(
        "This document is an account of every step of one electronic signature process: who "
        "was asked to sign, how each signer was identified, what they consented to, and the "
        "digest of each document before and after each signature. Each step with an evidence "
        "record is an entry of a tamper-evident log, sealed and timestamped, which anyone can "
        "check offline (see “How to verify”)."
    )
    _summary(pdf, trail)
    _signers(pdf, trail)
    _documents(pdf, trail)
    _entries(pdf, trail)
    _consent(pdf, trail)
    _how_to_verify(pdf, trail)
    data = bytes(pdf.output())
    close_fonts(pdf)
    return data
