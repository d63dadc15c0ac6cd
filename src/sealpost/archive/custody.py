"""The chain-of-custody report of an export, and the offline check of an export ZIP.

The report is a PDF sealed like an evidence certificate (PAdES B-LTA, the certificates'
toolkit): who exported, which selection, when, how many messages, and the SHA-256 of the
export's ``manifest.json``, which lists every other file of the ZIP with its SHA-256 and size.
The same facts are attached to the PDF as ``custody.json`` (under the seal), which is what
:func:`verify_export` reads.  The manifest cannot list the PDF (the PDF states the manifest's
hash), so the chain is: seal → custody.json → manifest.json → each file → each evidence
bundle's record (whose content digest is the ``.eml``'s).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from sealpost.certificates.render import SealpostPages
from sealpost.certificates.verify import verify_sealed_pdf
from sealpost.errors import SealpostError
from sealpost.ledger.verify import CheckList, HeadVerifications, verify_bundle

MANIFEST = "manifest.json"
REPORT = "chain-of-custody.pdf"
CUSTODY = "custody.json"
FORMAT = "sealpost-archive-export"
_UNREADABLE = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RecursionError)
"""What reading a damaged ZIP member raises (a changed byte breaks the deflate stream or the
CRC-32): the member is then named as altered."""
VERSION = 1


@dataclass(frozen=True)
class CustodyFacts:
    export_id: str
    tenant_name: str
    created_at: datetime
    created_by: str
    selection: dict[str, Any]
    message_count: int
    purged_count: int
    pending_evidence: int
    manifest_sha256: str
    messages: tuple[dict[str, Any], ...] = ()
    """The manifest's message entries, listed on the report's pages (not in ``custody.json``:
    the manifest has them, under the hash stated here)."""

    def to_json(self) -> bytes:
        return (
            json.dumps(
                {
                    "format": FORMAT + "-custody",
                    "version": VERSION,
                    "export_id": self.export_id,
                    "created_at": _iso(self.created_at),
                    "created_by": self.created_by,
                    "selection": self.selection,
                    "message_count": self.message_count,
                    "purged_count": self.purged_count,
                    "pending_evidence": self.pending_evidence,
                    "manifest": MANIFEST,
                    "manifest_sha256": self.manifest_sha256,
                },
                sort_keys=True,
                indent=2,
                ensure_ascii=False,
            )
            + "\n"
        ).encode()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _selection_words(selection: dict[str, Any]) -> str:
    if selection.get("thread_id"):
        return f"every archived message of thread {selection['thread_id']}"
    if selection.get("hold_id"):
        return f"every archived message covered by legal hold {selection['hold_id']}"
    return f"the archived messages matching the query {json.dumps(selection.get('query'))}"


def render_custody_report(facts: CustodyFacts) -> bytes:
    """The unsealed PDF; :func:`sealpost.certificates.seal.seal_pdf` seals it."""
    pdf = SealpostPages(f"Sealpost chain of custody — export {facts.export_id}")
    pdf.set_title("Chain of custody — mail archive export")
    pdf.set_subject(f"Export {facts.export_id}")
    pdf.set_author(facts.tenant_name)
    pdf.set_creator("Sealpost")
    pdf.set_creation_date(facts.created_at)
    pdf.set_lang("en")
    pdf.add_page()
    pdf.set_font(pdf.fontset.text, "B", 17)
    pdf.multi_cell(0, 9, "Chain of custody — mail archive export", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)
    kept = facts.message_count - facts.purged_count
    pdf.paragraph(
        f"On {_when(facts.created_at)}, for {facts.tenant_name}, {facts.created_by} exported "
        f"{_selection_words(facts.selection)} from Sealpost's mail archive: "
        f"{facts.message_count} messages, {kept} of them with their exact bytes.",
        size=10,
    )
    pdf.paragraph(
        "What this report shows, and no more: that Sealpost produced, at the time above, the "
        "export whose manifest.json has the SHA-256 stated below; through that manifest, that "
        "each file listed is byte for byte what was exported; through the evidence files, that "
        "each message's bytes are those Sealpost archived at the time its sealed Archived "
        "record states. It does not show who wrote a message or that anyone read it, and the "
        "time a message was archived is when Sealpost received it, not when it was written."
    )
    pdf.heading("The export")
    pdf.field("Export", facts.export_id, mono=True)
    pdf.field("Exported by", facts.created_by)
    pdf.field("Exported at", _when(facts.created_at))
    pdf.field("Selection", _selection_words(facts.selection))
    pdf.field("Messages", str(facts.message_count))
    pdf.field(
        "Purged",
        f"{facts.purged_count} (their bytes were removed after retention; listed, not attached)",
    )
    pdf.field(
        "Evidence pending",
        f"{facts.pending_evidence} Archived records were not yet sealed in the ledger when the "
        "export was made; their evidence files are missing from it"
        if facts.pending_evidence
        else "none: every attached message has its sealed Archived evidence",
    )
    pdf.field("Manifest SHA-256", facts.manifest_sha256, mono=True)
    _messages(pdf, facts.messages)
    pdf.heading("How to check it")
    pdf.paragraph(
        "Run `sealpost verify export.zip` (add --trust ROOT.pem to pin the root you expect). "
        "It checks this report's seal, that the SHA-256 of manifest.json is the one above, "
        "that every file matches the manifest (naming any altered, missing or extra file), "
        "and each evidence file's seal, timestamp and Merkle inclusion. Without Sealpost: "
        "`sha256sum` each file against manifest.json, and validate this PDF's seal in any PDF "
        "signature validator. The same facts are attached to this PDF as custody.json."
    )
    pdf.embed_file(
        bytes=facts.to_json(),
        basename=CUSTODY,
        mime_type="application/json",
        modification_date=facts.created_at,
        associated_file_relationship="Data",
        desc="Machine-readable facts of this export (its manifest's SHA-256)",
        compress=True,
    )
    return bytes(pdf.output())


LISTED_ON_PAGES = 500
"""Messages listed on the report's pages; all of them are in manifest.json."""


def _messages(pdf: SealpostPages, messages: tuple[dict[str, Any], ...]) -> None:
    if not messages:
        return
    pdf.heading(f"The messages ({len(messages)}, in archiving order)")
    for entry in messages[:LISTED_ON_PAGES]:
        pdf.set_font(pdf.fontset.text, "B", 9)
        title = f"{entry['n']}. {entry.get('subject') or '(no subject)'}"
        pdf.multi_cell(0, 4.8, pdf.fontset.clean(title[:300]), new_x="LMARGIN", new_y="NEXT")
        pdf.field("From", entry.get("from") or "—", indent=4)
        pdf.field("Archived at", str(entry.get("archived_at")), indent=4)
        pdf.field("SHA-256", str(entry.get("sha256")), mono=True, indent=4)
        if entry.get("file"):
            pdf.field("File", str(entry["file"]), mono=True, indent=4)
        else:
            pdf.field("File", f"none: purged after retention at {entry.get('purged_at')}", indent=4)
    if len(messages) > LISTED_ON_PAGES:
        pdf.paragraph(f"… and {len(messages) - LISTED_ON_PAGES} more, listed in manifest.json.")


# -- verification -------------------------------------------------------------------------------


@dataclass
class ExportReport(CheckList):
    """Every check made on an export ZIP."""

    export_id: str | None = None
    message_count: int | None = None
    problems: list[str] = field(default_factory=list)
    root_pinned: bool = False
    """A trusted root was given (``--trust``); else seals are checked against the root the
    file itself carries, which anyone can make."""

    def statement(self) -> str:
        if not self.ok:
            return "This export proves nothing as it is: " + "; ".join(
                f"{c.field}: {c.detail}" for c in self.failures
            )
        return (
            f"Export {self.export_id}: its chain-of-custody report is sealed and intact, it "
            f"states this manifest's SHA-256, and every one of the files listed ("
            f"{self.message_count} messages) is exactly as exported; each attached evidence "
            "file verifies on its own and describes the bytes of its message."
            + (
                ""
                if self.root_pinned
                else " The seals were checked against the root certificate inside the file "
                "only: pass --trust with the service's root to know who sealed it."
            )
        )


MAX_READ = 256 << 20
"""Members read whole (manifest, report, bundles) larger than this are refused, not loaded:
a hostile ZIP must not exhaust memory.  Messages are hashed as streams, at any size."""


def _read(archive: zipfile.ZipFile, name: str) -> bytes:
    size = archive.getinfo(name).file_size
    if size > MAX_READ:
        raise ValueError(f"{size} bytes, larger than {MAX_READ} for this kind of file")
    return archive.read(name)


def _hash_member(archive: zipfile.ZipFile, name: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with archive.open(name) as member:
        while chunk := member.read(1 << 16):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def verify_export(path: Path, *, trust_roots: Sequence[x509.Certificate] = ()) -> ExportReport:
    """Check an export ZIP offline (see the module docstring); never raises for bad input."""
    report = ExportReport(root_pinned=bool(trust_roots))
    try:
        archive = zipfile.ZipFile(path)
    except _UNREADABLE as exc:
        report.add("zip", str(path.name), False, f"not a readable ZIP file: {exc}")
        return report
    with archive:
        listed = archive.namelist()
        names = set(listed)
        # zipfile reads the last of two members with one name, unzip may show the first: a
        # second copy of any file (or one differing only in case or Unicode form) is a forgery
        seen: dict[str, str] = {}
        for name in listed:
            key = unicodedata.normalize("NFC", name).casefold()
            if key in seen:
                report.add("file", name, False, f"duplicate: the ZIP holds {seen[key]!r} twice")
            seen[key] = name
        for info in archive.infolist():
            if info.filename.endswith("/") and info.file_size > 0:
                report.add("file", info.filename, False, "extra: a directory entry with content")
        manifest = _manifest(archive, names, report)
        if manifest is None:
            return report
        _files(archive, names, manifest, report)
        _custody(archive, names, manifest, report, trust_roots)
        _evidence(archive, names, manifest, report, trust_roots)
    return report


def _manifest(
    archive: zipfile.ZipFile, names: set[str], report: ExportReport
) -> dict[str, Any] | None:
    if MANIFEST not in names:
        report.add("manifest", MANIFEST, False, "missing: the export has no manifest.json")
        return None
    try:
        raw = _read(archive, MANIFEST)
        manifest = json.loads(raw)
        ok = (
            isinstance(manifest, dict)
            and manifest.get("format") == FORMAT
            and isinstance(manifest.get("files"), dict)
            and isinstance(manifest.get("messages"), list)
        )
    except _UNREADABLE as exc:
        report.add("manifest", MANIFEST, False, f"altered: it cannot be read ({exc})")
        return None
    if not ok:
        report.add("manifest", MANIFEST, False, f"not a {FORMAT} manifest")
        return None
    manifest["_sha256"] = hashlib.sha256(raw).hexdigest()
    report.export_id = str(manifest.get("export_id"))
    report.message_count = len(manifest["messages"])
    report.add("manifest", MANIFEST, True, f"{len(manifest['files'])} files listed")
    return dict(manifest)


def _files(
    archive: zipfile.ZipFile, names: set[str], manifest: dict[str, Any], report: ExportReport
) -> None:
    listed: dict[str, Any] = manifest["files"]
    for name in sorted(listed):
        entry = listed[name]
        if name not in names:
            report.add("file", name, False, "missing: listed in the manifest, absent from the ZIP")
            continue
        try:
            digest, size = _hash_member(archive, name)
        except _UNREADABLE as exc:
            report.add("file", name, False, f"altered: its bytes cannot be read ({exc})")
            continue
        if not isinstance(entry, dict) or digest != entry.get("sha256"):
            report.add(
                "file",
                name,
                False,
                f"altered: SHA-256 {digest}, the manifest says {entry.get('sha256')}"
                if isinstance(entry, dict)
                else "the manifest's entry is unreadable",
            )
        elif size != entry.get("size"):
            report.add(
                "file", name, False, f"altered: {size} bytes, the manifest says {entry.get('size')}"
            )
        else:
            report.add("file", name, True, f"SHA-256 and size as in the manifest ({size} bytes)")
    for name in sorted(names - set(listed) - {MANIFEST, REPORT}):
        if not name.endswith("/"):
            report.add("file", name, False, "extra: in the ZIP but not in the manifest")


def _custody(
    archive: zipfile.ZipFile,
    names: set[str],
    manifest: dict[str, Any],
    report: ExportReport,
    trust_roots: Sequence[x509.Certificate],
) -> None:
    if REPORT not in names:
        report.add("report", REPORT, False, "missing: the chain-of-custody report is absent")
        return
    try:
        pdf = _read(archive, REPORT)
        sealed = verify_sealed_pdf(pdf, trust_roots=trust_roots)
    except (*_UNREADABLE, SealpostError) as exc:
        report.add("report", REPORT, False, f"altered: it cannot be read ({exc})")
        return
    for check in sealed.checks:
        report.add(check.name, f"{REPORT}: {check.field}", check.ok, check.detail)
    raw = sealed.attachments.get(CUSTODY)
    try:
        facts = json.loads(raw) if raw is not None else None
    except ValueError:
        facts = None
    if not isinstance(facts, dict):
        report.add("custody", REPORT, False, f"the report carries no readable {CUSTODY}")
        return
    stated = facts.get("manifest_sha256")
    report.add(
        "manifest hash",
        REPORT,
        stated == manifest["_sha256"],
        "the sealed report states this manifest's SHA-256"
        if stated == manifest["_sha256"]
        else f"the sealed report states {stated}, manifest.json's is {manifest['_sha256']}: "
        "manifest.json was replaced",
    )
    same = facts.get("export_id") == manifest.get("export_id") and facts.get(
        "message_count"
    ) == len(manifest["messages"])
    report.add(
        "custody",
        REPORT,
        same,
        "export id and message count agree with the manifest"
        if same
        else "the report's export id or message count differs from the manifest's",
    )


def _evidence(
    archive: zipfile.ZipFile,
    names: set[str],
    manifest: dict[str, Any],
    report: ExportReport,
    trust_roots: Sequence[x509.Certificate],
) -> None:
    """Each bundle verifies and is the Archived record of its message's exact bytes."""
    heads = HeadVerifications()  # an export's bundles share a few heads: each checked once
    for entry in manifest["messages"]:
        if not isinstance(entry, dict):
            report.add("evidence", MANIFEST, False, "a message entry is unreadable")
            continue
        eml, name = entry.get("file"), entry.get("evidence")
        if not isinstance(eml, str | None) or not isinstance(name, str | None):
            report.add("evidence", MANIFEST, False, "a message entry is unreadable")
            continue
        listed_eml = manifest["files"].get(eml) if eml is not None else None
        if eml is not None and (
            not isinstance(listed_eml, dict) or listed_eml.get("sha256") != entry.get("sha256")
        ):
            report.add("message", eml, False, "its SHA-256 is not the archived message's")
        if not name or name not in names:
            continue  # pending evidence is stated; a listed file that is missing was named
        try:
            bundle = verify_bundle(_read(archive, name), trust_roots=trust_roots, heads=heads)
        except (*_UNREADABLE, SealpostError) as exc:
            report.add("evidence", name, False, f"not a readable evidence bundle ({exc})")
            continue
        if not bundle.ok or bundle.record is None:
            detail = "; ".join(f"{c.field}: {c.detail}" for c in bundle.failures)
            report.add("evidence", name, False, f"does not verify: {detail}")
            continue
        record = bundle.record
        digest = record.content.sha256 if record.content else None
        matches = (
            record.event.name == "Archived"
            and record.subject.id == entry.get("id")
            and digest == entry.get("sha256")
        )
        report.add(
            "evidence",
            name,
            matches,
            f"sealed Archived record of message {entry.get('id')} with its SHA-256"
            if matches
            else f"the record is not the Archived record of message {entry.get('id')} with "
            f"SHA-256 {entry.get('sha256')}",
        )
