"""The evidence certificate as a PDF a judge can read, with the evidence itself attached.

The pages are the human account; the attachments are the proof: ``original.eml`` (the exact
message bytes), one evidence bundle per sealed event and ``manifest.json`` tying them together.
They sit in the catalog's EmbeddedFiles name tree and ``/AF`` (ISO 32000-2 §14.13), which is
where PDF readers show attachments and where :mod:`sealpost.certificates.verify` reads them.
Rendering is deterministic for given data: sealing (PAdES) is a separate incremental update.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from fpdf import FPDF

from sealpost.certificates.copies import changes_in_words, delivered_copies
from sealpost.certificates.fonts import close_fonts, prepare_output, register_fonts
from sealpost.certificates.manifest import (
    EML_NAME,
    MANIFEST_NAME,
    SMS_NAME,
    attachments,
    evidence_files,
    utc_text,
)
from sealpost.certificates.model import CertificateData, CertificateEvent
from sealpost.certificates.secrets import COMMITMENT_WORDS, WITHHELD_WORDS

TITLE = "Evidence certificate — certified email"
SMS_TITLE = "Evidence certificate — certified SMS"
LABEL_WIDTH = 42.0
_DETAIL_LIMIT = 300
TRACKING_EVENTS = ("OpenTracked", "LinkClicked")
"""Open and click tracking (``urn:sealpost:event:``): shown apart, as non-essential."""
_RELATIONSHIP = {EML_NAME: "Source", SMS_NAME: "Source", MANIFEST_NAME: "Data"}


def _when(moment: datetime) -> str:
    return utc_text(moment).replace("T", " ").replace("Z", " UTC")


def _flatten(details: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Nested channel details as ("smtp.reply", "250 ...") lines, long values shortened."""
    for key in sorted(details):
        value = details[key]
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{name}.")
            continue
        text = ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        if len(text) > _DETAIL_LIMIT:
            text = text[:_DETAIL_LIMIT] + " … (complete in the evidence file)"
        yield name, text


class SealpostPages(FPDF):
    """A4 pages in the certificates' style, whose footer names the document and the page (the
    evidence certificate, the signature audit trail)."""

    def __init__(self, footer_line: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.footer_line = footer_line
        self.fontset = register_fonts(self)
        self.set_margins(18, 18, 18)
        self.set_auto_page_break(auto=True, margin=18)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.fontset.text, size=7)
        self.set_text_color(110)
        line = f"{self.footer_line} — page {self.page_no()}/{{nb}}"
        self.cell(0, 5, self.fontset.clean(line), align="C")
        self.set_text_color(0)

    # --- building blocks -------------------------------------------------------------------

    def heading(self, text: str) -> None:
        self.ln(3)
        self.start_section(text)
        self.set_font(self.fontset.text, "B", 12)
        self.multi_cell(0, 7, self.fontset.clean(text), new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def paragraph(self, text: str, size: float = 9.5) -> None:
        self.set_font(self.fontset.text, size=size)
        self.text_box(4.8, self.fontset.clean(text), wrap=True, align="L")
        self.ln(1.5)

    def text_box(self, h: float, text: str, *, wrap: bool, align: str = "J") -> None:
        """``multi_cell(0, h, text, align=align, new_x="LMARGIN", new_y="NEXT")``, faster.

        fpdf2's line breaker re-measures the line so far for every character it adds (quadratic
        in the line's length: a third of a certificate's CPU).  Plain text, words split by
        single spaces, is wrapped here as that breaker does (greedy, at spaces, a line's width
        within the cell less its two paddings), one ``cell`` per line, each measured once: left
        aligned, so only ``align="L"`` wraps here (the last line of justified text is left
        aligned too: other text takes this path when it fits on one line).  Anything else (a
        word wider than the cell, a newline, runs of spaces) goes to ``multi_cell`` itself.
        """
        x = self.get_x()
        room = self.w - self.r_margin - x - 2 * self.c_margin
        lines: list[str] | None = None
        if not text or "\n" in text:
            lines = None
        elif wrap and align == "L":
            lines = self._wrapped(text, room)
        elif self.get_string_width(text) <= room:
            lines = [text]
        if lines is None:
            self.multi_cell(0, h, text, align=align, new_x="LMARGIN", new_y="NEXT")
            return
        for line in lines:
            self.set_x(x)
            self.cell(0, h, line, new_x="LMARGIN", new_y="NEXT")

    def _wrapped(self, text: str, room: float) -> list[str] | None:
        words = text.split(" ")
        if "" in words:  # leading, trailing or doubled spaces: multi_cell's own rules
            return None
        space = self.get_string_width(" ")
        lines: list[str] = []
        current: list[str] = []
        width = 0.0
        for word in words:
            w = self.get_string_width(word)
            if w > room:
                return None
            if current and width + space + w > room + 1e-6:
                lines.append(" ".join(current))
                current, width = [word], w
            else:
                width += (space if current else 0) + w
                current.append(word)
        lines.append(" ".join(current))
        return lines

    def field(self, label: str, value: str, *, mono: bool = False, indent: float = 0) -> None:
        """A label in bold and its value wrapped beside it; hashes in the mono font."""
        self.set_x(self.l_margin + indent)
        self.set_font(self.fontset.text, "B", 9)
        self.cell(LABEL_WIDTH - indent, 4.8, self.fontset.clean(label))
        if mono:
            self.set_font(self.fontset.mono, size=8.5)
        else:
            self.set_font(self.fontset.text, size=9)
        self.text_box(4.8, self.fontset.clean(value) or "—", wrap=False)

    def rule(self) -> None:
        self.set_draw_color(190)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.set_draw_color(0)
        self.ln(1.5)


_STATUS_WORDS = {
    "pickup": " (registered pickup: the content waits for the recipient to identify)",
    "accepted": " (registered pickup: the identified recipient accepted the message)",
    "rejected": " (registered pickup: the identified recipient rejected the message)",
    "handed_over": " (registered pickup: the message was shown to the identified recipient)",
    "unclaimed": " (registered pickup: neither accepted nor rejected within the window)",
}
"""Registered pickup's statuses in plain words (the events below say how and when)."""


def _status_words(data: CertificateData) -> str:
    return "" if data.channel == "sms" else _STATUS_WORDS.get(data.status, "")


def _sms(pdf: SealpostPages, d: CertificateData) -> None:
    pdf.heading("The SMS")
    pdf.field("From (sender id)", d.sender)
    pdf.field("Sender identified by", d.sender_identification)
    pdf.field("To", d.recipient)
    pdf.field("Submitted at", _when(d.submitted_at))
    if d.content_digest:
        pdf.field("Text commitment", d.content_sha256, mono=True)
        pdf.paragraph(COMMITMENT_WORDS.format(construction=d.content_digest))
    else:
        pdf.field("Text SHA-256", d.content_sha256, mono=True)
    if d.access_secret:
        pdf.field("Size", f"{d.content_size} bytes (UTF-8), not embedded")
        pdf.field("Text", "withheld (a single-use access secret)")
        pdf.paragraph(WITHHELD_WORDS)
    else:
        pdf.field("Size", f"{d.content_size} bytes (UTF-8), embedded as {SMS_NAME}")
        pdf.field("Text", d.eml.decode("utf-8", "replace"))
    if d.parts:
        pdf.heading("Segments")
        pdf.paragraph(
            "The operator bills and delivers an SMS in segments; each has its own digest (of its "
            "text in UTF-8) and its own delivery receipt."
        )
        for i, (_, _, sha256, size) in enumerate(d.parts, start=1):
            pdf.field(f"Segment {i}", f"{size} bytes")
            pdf.field("SHA-256", sha256, mono=True, indent=6)


def _message(pdf: SealpostPages, d: CertificateData) -> None:
    if d.channel == "sms":
        _sms(pdf, d)
        return
    pdf.heading("The message")
    pdf.field("From", d.sender)
    pdf.field("Sender identified by", d.sender_identification)
    pdf.field("To", d.recipient)
    pdf.field("Subject", d.subject if d.subject is not None else "(no subject)")
    pdf.field("Message-ID", d.message_id, mono=True)
    pdf.field("Submitted at", _when(d.submitted_at))
    pdf.field("Content SHA-256", d.content_sha256, mono=True)
    if d.access_secret:
        pdf.field("Size", f"{d.content_size} bytes, not embedded")
        pdf.paragraph(WITHHELD_WORDS)
    else:
        pdf.field("Size", f"{d.content_size} bytes, embedded as {EML_NAME}")
    shown = (d.sender, d.recipient, d.subject or "", d.message_id)
    if any(pdf.fontset.clean(text) != text for text in shown):
        pdf.paragraph(
            "Characters this document's font cannot draw are written as <U+XXXX> (their Unicode "
            f"code point); the exact text is in {EML_NAME} and in the evidence files.",
            size=8.5,
        )
    _copies(pdf, d)
    if d.parts:
        pdf.heading("Message parts")
        pdf.paragraph(
            "Each MIME part of the message received has its own digest (of its decoded "
            "content), so one attachment can be proven without revealing the others."
        )
        for i, (content_type, filename, sha256, size) in enumerate(d.parts, start=1):
            name = f" “{filename}”" if filename else ""
            pdf.field(f"Part {i}", f"{content_type}{name}, {size} bytes")
            pdf.field("SHA-256", sha256, mono=True, indent=6)


def _copies(pdf: SealpostPages, d: CertificateData) -> None:
    """Both digests in plain words, when a delivery record names the copy it transmitted."""
    copies = delivered_copies(d.events)
    if not copies:
        return
    pdf.heading("What was received and what was delivered")
    differ = any(c.sha256 != d.content_sha256 for c in copies)
    where = "withheld (see above)" if d.access_secret else f"{EML_NAME}, attached"
    if differ:
        pdf.paragraph(
            "The copy transmitted to the recipient's server is not byte for byte the message "
            "Sealpost received, so each has its own SHA-256 digest: the received one is of "
            f"{where}; compare the copy a recipient holds with the delivered one."
        )
    pdf.field("Received SHA-256", d.content_sha256, mono=True)
    pdf.paragraph(
        f"Received: the message as submitted to Sealpost, {d.content_size} bytes"
        + (", not embedded." if d.access_secret else f", embedded as {EML_NAME}."),
        size=8.5,
    )
    captured = _reply_capture(d)
    if captured is not None:
        pdf.paragraph(
            "Reply capture was on: before sealing it, Sealpost added the Reply-To field (the "
            "sender's reply address and this communication's own reply address, so that "
            "answers are recorded), so the received digest above is of the message with that "
            "field. The bytes as the sender submitted them, without it, have SHA-256 "
            f"{captured}.",
            size=8.5,
        )
    for copy in copies:
        pdf.field("Delivered SHA-256", copy.sha256, mono=True)
        host = copy.remote_host or "the next hop"
        size = f", {copy.size} bytes" if copy.size is not None else ""
        pdf.paragraph(
            f"Delivered: the copy as transmitted to {host}{size}, which {host} accepted on "
            f"{_when(copy.event.event_time)} (event {copy.n}, {copy.event.event}).",
            size=8.5,
        )
        if copy.event.bundle is None:
            pdf.paragraph(
                f"The record of event {copy.n} was not sealed in the ledger when this version "
                "was issued: this copy's digest and its delivery are stated, not yet proven; "
                "a later version of the certificate will carry its evidence.",
                size=8.5,
            )
        if copy.sha256 == d.content_sha256:
            pdf.paragraph("This copy is byte for byte the message received.", size=8.5)
            continue
        if copy.received_sha256 not in (None, d.content_sha256):
            pdf.paragraph(
                f"The record of event {copy.n} names another received message "
                f"(SHA-256 {copy.received_sha256}).",
                size=8.5,
            )
        clauses = changes_in_words(copy.changes) if copy.changes is not None else []
        if clauses:
            pdf.paragraph(
                f"How this copy differs from the message received, as the record of event "
                f"{copy.n} states it: " + "; ".join(clauses) + ". A recipient's own server "
                "usually adds header fields above these (Received, Return-Path...): remove "
                "them before comparing.",
                size=8.5,
            )
        else:
            pdf.paragraph(
                f"The record of event {copy.n} does not state how this copy differs from the "
                "message received.",
                size=8.5,
            )


def _event(pdf: SealpostPages, event: CertificateEvent, n: int, name: str | None) -> None:
    pdf.set_font(pdf.fontset.text, "B", 10)
    title = f"{n}. {event.event} — {_when(event.event_time)}"
    pdf.multi_cell(0, 5.5, pdf.fontset.clean(title), new_x="LMARGIN", new_y="NEXT")
    pdf.field("What happened", event.summary, indent=4)
    for code, text in event.reasons:
        pdf.field("Reason", f"{code}: {text}", indent=4)
    for key, value in _flatten(event.details):
        pdf.field(key, value, indent=4)
    pdf.field("Event type", event.event_uri, indent=4)
    pdf.field("Record id", event.record_id, mono=True, indent=4)
    if name is not None:
        pdf.field("Evidence file", name, indent=4)
    else:
        pdf.field(
            "Evidence file",
            "none yet: this record was not sealed in the ledger when this version was issued; "
            "a later version of the certificate will carry its evidence",
            indent=4,
        )
    pdf.ln(1)
    pdf.rule()


def _reply_capture(d: CertificateData) -> str | None:
    """The SHA-256 of the sender's own bytes when Sealpost added a Reply-To before sealing."""
    for e in d.events:
        message = e.details.get("message") if e.event == "SubmissionAcceptance" else None
        if isinstance(message, Mapping) and message.get("reply_capture") is True:
            submitted = message.get("submitted_sha256")
            return submitted if isinstance(submitted, str) else "not recorded"
    return None


def _tracked_copy(tracking: Mapping[str, Any] | None) -> str:
    """What the tracked copy changed, as its acceptance record states (nothing more)."""
    if tracking is None:
        return "the copy delivered was a tracked copy."
    changed = []
    if tracking.get("pixel") is True:
        changed.append("had a 1x1 image in its HTML part")
    links = tracking.get("links")
    if isinstance(links, int) and links > 0:
        noun = "web link" if links == 1 else "web links"
        changed.append(f"sent {links} {noun} of its HTML part through Sealpost's redirect")
    if not changed:
        return "the copy delivered was a tracked copy."
    return f"the copy delivered {' and '.join(changed)}."


def _tracking(
    pdf: SealpostPages,
    d: CertificateData,
    events: list[tuple[CertificateEvent, int, str | None]],
) -> None:
    """Open and click tracking apart from the timeline: it proves no reading."""
    tracked = next(
        (
            e.details["tracking"]
            for e in d.events
            if e.event == "SubmissionAcceptance" and isinstance(e.details.get("tracking"), Mapping)
        ),
        None,
    )
    if tracked is None and not events:
        return
    pdf.heading("Non-essential tracking")
    pdf.paragraph(
        f"The sender had open and click tracking on for this message: {_tracked_copy(tracked)} "
        "The events below record that the image was fetched or a link was followed. They are "
        "non-essential and are never proof that the recipient read the message: mail clients "
        "and their image proxies preload images, and security scanners follow every link, "
        "often within seconds of delivery (those are marked likely automated). Fetches of the "
        "same image or link within a minute are counted in the next record, not recorded one "
        "by one. Each event is sealed evidence like the others, its evidence file attached."
    )
    if not events:
        pdf.paragraph("No open or click had been recorded when this version was issued.")
    for event, n, name in events:
        _event(pdf, event, n, name)


def _versions(pdf: SealpostPages, d: CertificateData) -> None:
    pdf.heading("Version")
    if d.supersedes_sha256:
        pdf.paragraph(
            f"This is version {d.version} of the certificate. It supersedes the previous "
            "version, the PDF file whose SHA-256 is:"
        )
        pdf.field("Supersedes", d.supersedes_sha256, mono=True)
    else:
        pdf.paragraph(f"This is version {d.version} of the certificate; it supersedes none.")


def _how_to_verify(pdf: SealpostPages, d: CertificateData, files: Mapping[str, bytes]) -> None:
    pdf.heading("How to verify")
    pdf.paragraph(
        "This PDF is sealed with a PAdES electronic seal and a timestamp: any change to it after "
        "sealing shows as an invalid or partial signature in a PDF reader (Adobe Reader's "
        "signature panel), in poppler's pdfsig or in pyHanko (pyhanko sign validate). The "
        "last signature is a document timestamp that keeps the seal verifiable after its "
        "certificate expires (PAdES B-LTA); pdfsig lists it as not verified because it does not "
        "implement document timestamps."
    )
    original = SMS_NAME if d.channel == "sms" else EML_NAME
    message = (
        "The message itself is not attached (it carried a single-use access secret): the "
        "digest above is the one every evidence file states. "
        if d.access_secret
        else f"{original} is the exact message: its SHA-256 must equal the digest above and "
        "the one in every evidence file. "
    )
    pdf.paragraph(
        f"The attached files are the evidence itself. {message}Each "
        "evidence-*.json is an evidence bundle: the record of one event, its inclusion proof "
        f"in the Merkle log “{d.ledger_origin}” (RFC 9162), the log's signed tree head, the "
        "seal signature over it and an RFC 3161 timestamp token. Each bundle verifies on its "
        "own, offline, with standard tools (openssl), as docs/evidence-format.md explains. "
        "Beside each, etsi-*.json renders the same record as the ETSI EN 319 522-3 "
        "EvidenceType in JSON; it is derived from the bundle's record and seal certificate, so "
        "the bundle is what proves it. "
        f"{MANIFEST_NAME} lists every event and file in machine-readable form."
    )
    pdf.paragraph("Sealpost checks all of it in one command:")
    pdf.set_font(pdf.fontset.mono, size=8.5)
    pdf.multi_cell(0, 4.8, pdf.fontset.clean(d.verify_hint), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.heading("Embedded files")
    for name, content in files.items():
        pdf.set_font(pdf.fontset.text, "B", 9)
        pdf.multi_cell(0, 4.8, pdf.fontset.clean(name), new_x="LMARGIN", new_y="NEXT")
        pdf.field("Size", f"{len(content)} bytes", indent=6)
        pdf.field("SHA-256", hashlib.sha256(content).hexdigest(), mono=True, indent=6)


def render_certificate(data: CertificateData) -> bytes:
    """The unsigned certificate PDF; :func:`sealpost.certificates.seal.seal_pdf` seals it."""
    pdf = SealpostPages(
        f"Sealpost evidence certificate — communication {data.communication_id} — "
        f"version {data.version}"
    )
    title = SMS_TITLE if data.channel == "sms" else TITLE
    pdf.set_title(title)
    pdf.set_subject(f"Evidence for communication {data.communication_id}")
    pdf.set_author(data.tenant_name)
    pdf.set_creator("Sealpost")
    pdf.set_creation_date(data.issued_at)
    pdf.set_lang("en")
    pdf.add_page()

    pdf.set_font(pdf.fontset.text, "B", 17)
    pdf.multi_cell(0, 9, pdf.fontset.clean(title), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)
    pdf.paragraph(
        f"Issued on {_when(data.issued_at)} by Sealpost for {data.tenant_name}. "
        f"Communication {data.communication_id}, certificate version {data.version}. "
        f"Status: {data.status}{_status_words(data)}.",
        size=10,
    )
    pdf.paragraph(
        "This document is an account of every event recorded for one certified "
        f"{'SMS' if data.channel == 'sms' else 'email'}. Each "
        "event is an entry of a tamper-evident Merkle log, sealed with the service's seal and an "
        "RFC 3161 timestamp; the attached evidence files let anyone check each entry offline."
    )
    _message(pdf, data)

    numbered = evidence_files(data)
    tracking = [e for e in numbered if e[0].event in TRACKING_EVENTS]
    numbered = [e for e in numbered if e[0].event not in TRACKING_EVENTS]
    pdf.heading(f"Timeline of evidence ({len(numbered)} events, times in UTC)")
    if not numbered:
        pdf.paragraph("No event has been recorded yet.")
    for event, n, name in numbered:
        _event(pdf, event, n, name)
    _tracking(pdf, data, tracking)

    _versions(pdf, data)
    files = attachments(data)
    _how_to_verify(pdf, data, {name: content for name, (content, _) in files.items()})

    for name in sorted(files):  # a name tree's keys must be sorted (ISO 32000-1 §7.9.6)
        content, mime = files[name]
        pdf.embed_file(
            bytes=content,
            basename=name,
            mime_type=mime,
            modification_date=data.issued_at,
            associated_file_relationship=_RELATIONSHIP.get(name, "Supplement"),
            desc=_description(name),
            compress=True,
        )
    prepare_output(pdf)
    rendered = bytes(pdf.output())
    close_fonts(pdf)
    return rendered


def _description(name: str) -> str:
    if name == EML_NAME:
        return "The exact original message (RFC 5322)"
    if name == SMS_NAME:
        return "The exact text of the SMS (UTF-8)"
    if name == MANIFEST_NAME:
        return "Machine-readable summary of this certificate"
    if name.startswith("etsi-"):
        return "The record as an ETSI EN 319 522-3 EvidenceType (JSON), derived from its bundle"
    return "Evidence bundle: record, inclusion proof, sealed tree head, timestamp"
