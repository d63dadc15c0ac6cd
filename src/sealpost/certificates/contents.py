"""Checks on what a certificate carries: the manifest, the message and each evidence bundle.

The seal proves the PDF is the one Sealpost issued; these checks prove its contents are
consistent with the ledger, independently of the seal: every bundle verifies on its own
(:func:`sealpost.ledger.verify.verify_bundle`), belongs to this communication, and states the
digest of the very message attached.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from cryptography import x509

from sealpost.certificates.manifest import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION
from sealpost.certificates.report import CertificateReport
from sealpost.certificates.secrets import ACCESS_SECRET, carries_access_secret
from sealpost.errors import InvalidInput
from sealpost.ledger.etsi_view import view_of_bundle
from sealpost.ledger.verify import HeadVerifications, VerificationReport, verify_bundle


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_Types = tuple[type, ...]
_TEXT: _Types = (str,)
_MAYBE_TEXT: _Types = (str, type(None))
_NUMBER: _Types = (int,)
_TOP_FIELDS = {
    "communication_id": _TEXT,
    "certificate_version": _NUMBER,
    "supersedes_sha256": _MAYBE_TEXT,
    "ledger_origin": _TEXT,
}
_MESSAGE_FIELDS = {
    "sender": _TEXT,
    "recipient": _TEXT,
    "submitted_at": _TEXT,
    "sha256": _TEXT,
    "size": _NUMBER,
    "file": _MAYBE_TEXT,  # absent: original.eml
}
_EVENT_FIELDS = {
    "n": _NUMBER,
    "record_id": _TEXT,
    "event": _TEXT,
    "event_time": _TEXT,
    "summary": _TEXT,
    "file": _MAYBE_TEXT,
}


def _typed(obj: Any, fields: dict[str, _Types]) -> bool:
    """``obj`` is an object whose ``fields`` have these JSON types (a bool is not a number)."""
    return isinstance(obj, dict) and all(
        isinstance(obj.get(name), kinds) and not isinstance(obj.get(name), bool)
        for name, kinds in fields.items()
    )


def _well_formed(manifest: Any) -> bool:
    """Every field the checks read or the statement shows has its type: a hostile manifest
    (the seal may be anyone's own, without ``--trust``) holds lists where names belong."""
    return (
        _typed(manifest, _TOP_FIELDS)
        and manifest.get("format") == MANIFEST_FORMAT
        and manifest.get("version") == MANIFEST_VERSION
        and not isinstance(manifest.get("version"), bool)
        and _typed(manifest.get("message"), _MESSAGE_FIELDS)
        and isinstance(manifest.get("events"), list)
        and all(_typed(e, _EVENT_FIELDS) for e in manifest["events"])
        and isinstance(manifest.get("files"), dict)
    )


def read_manifest(report: CertificateReport) -> dict[str, Any] | None:
    """Parse and shape-check ``manifest.json``; None (with a failed check) when unusable."""
    raw = report.attachments.get(MANIFEST_NAME)
    if raw is None:
        report.add("manifest", MANIFEST_NAME, False, "the certificate has no manifest.json")
        return None
    try:
        manifest = json.loads(raw)
        ok = _well_formed(manifest)
    except (ValueError, RecursionError):  # not JSON or UTF-8, 4,300+ digits, nested too deep
        ok = False
    if not ok:
        report.add(
            "manifest",
            MANIFEST_NAME,
            False,
            f"not a {MANIFEST_FORMAT} version {MANIFEST_VERSION} manifest",
        )
        return None
    report.add("manifest", MANIFEST_NAME, True, f"{len(manifest['events'])} events listed")
    report.manifest = manifest
    report.version = manifest.get("certificate_version")
    report.supersedes_sha256 = manifest.get("supersedes_sha256")
    report.communication_id = manifest.get("communication_id")
    return dict(manifest)


def check_files(report: CertificateReport, manifest: dict[str, Any]) -> None:
    """Every attachment is listed in the manifest with its digest, and none is missing."""
    listed: dict[str, Any] = manifest["files"]
    for name, content in sorted(report.attachments.items()):
        if name == MANIFEST_NAME:
            continue
        entry = listed.get(name)
        if not isinstance(entry, dict):
            report.add("attachment", name, False, "attached but not listed in the manifest")
        elif entry.get("sha256") != _sha256(content):
            report.add(
                "attachment", name, False, "altered: its SHA-256 differs from the manifest's"
            )
        else:
            report.add("attachment", name, True, "matches the manifest")
    for name in sorted(set(listed) - set(report.attachments)):
        report.add("attachment", name, False, "listed in the manifest but missing from the PDF")


def check_message(report: CertificateReport, manifest: dict[str, Any]) -> str | None:
    """The attached message's SHA-256 against the manifest's; returns the digest found."""
    message = manifest["message"]
    if message.get("withheld") == ACCESS_SECRET and message.get("file") is None:
        # No original to hash: the records are checked against the stated digest, and
        # check_withheld requires a sealed SubmissionAcceptance that says why it is absent.
        return str(message["sha256"])
    name = message.get("file") or "original.eml"
    eml = report.attachments.get(name)
    if eml is None:
        report.add("message digest", name, False, "the original message is not attached")
        return None
    digest = _sha256(eml)
    ok = digest == message["sha256"]
    report.add(
        "message digest",
        name,
        ok,
        f"SHA-256 {digest} matches the certificate"
        if ok
        else f"the message was altered: its SHA-256 is {digest}, the certificate states "
        f"{message['sha256']}",
    )
    return digest


def check_withheld(report: CertificateReport, manifest: dict[str, Any]) -> None:
    """An original left out for carrying an access secret is left out by the evidence's word.

    The manifest alone cannot excuse a missing original (anyone may strip one): a verified
    SubmissionAcceptance bundle of this certificate must state ``access_secret: true``.
    """
    message = manifest["message"]
    if message.get("withheld") != ACCESS_SECRET or message.get("file") is not None:
        return
    said = [
        bundle.record
        for bundle in report.evidence.values()
        if bundle.ok and bundle.record is not None
        if bundle.record.event.name == "SubmissionAcceptance"
    ]
    ok = any(carries_access_secret(record.details) for record in said)
    report.add(
        "message digest",
        "original",
        ok,
        f"not attached: the sealed SubmissionAcceptance says the message carried an access "
        f"secret; SHA-256 {message['sha256']} is the one every record states"
        if ok
        else "the original message is not attached, and no verified SubmissionAcceptance says "
        "it carried an access secret",
    )


def _bundle_problems(
    bundle: VerificationReport,
    event: dict[str, Any],
    communication_id: Any,
    eml_digest: str | None,
    subject_type: Any = "communication",
) -> list[str]:
    record = bundle.record
    if record is None:
        return ["its record cannot be read"]
    problems = []
    if record.id != event.get("record_id"):
        problems.append(f"it is record {record.id}, the manifest lists {event.get('record_id')}")
    if record.event.name != event.get("event"):
        problems.append(f"it records {record.event.name}, the manifest says {event.get('event')}")
    if (record.subject.type, record.subject.id) != (subject_type, communication_id):
        problems.append(
            f"it is about {record.subject.type} {record.subject.id}, not this communication"
        )
    if record.content is not None and eml_digest not in (None, record.content.sha256):
        problems.append(
            f"its content SHA-256 {record.content.sha256} is not the attached message's"
        )
    return problems


def check_evidence(
    report: CertificateReport,
    manifest: dict[str, Any],
    eml_digest: str | None,
    trust_roots: Sequence[x509.Certificate],
) -> None:
    """Verify each listed bundle offline and tie it to this communication and message."""
    heads = HeadVerifications()  # the events share a few heads: each is checked once
    for event in manifest["events"]:
        n, name = event.get("n"), event.get("file")
        label = f"event {n} ({event.get('event')})"
        if name is None:
            report.add(
                "evidence",
                label,
                True,
                "no evidence file: the record was not sealed when this version was issued, so "
                "this event is stated by the certificate only",
            )
            continue
        raw = report.attachments.get(name)
        if raw is None:
            report.add("evidence", name, False, "the evidence file is missing")
            continue
        try:
            bundle = verify_bundle(raw, trust_roots=trust_roots, heads=heads)
        except InvalidInput as exc:
            report.add("evidence", name, False, f"not an evidence bundle: {exc.message}")
            continue
        report.evidence[name] = bundle
        if not bundle.ok:
            details = "; ".join(f"{c.field}: {c.detail}" for c in bundle.failures)
            report.add("evidence", name, False, f"the bundle does not verify: {details}")
            continue
        problems = _bundle_problems(
            bundle,
            event,
            manifest.get("communication_id"),
            eml_digest,
            manifest.get("subject_type", "communication"),
        )
        if problems:
            report.add("evidence", name, False, "; ".join(problems))
        else:
            when = bundle.timestamp.gen_time.isoformat() if bundle.timestamp else "?"
            report.add(
                "evidence",
                name,
                True,
                f"{event.get('event')} record verifies, sealed in the ledger by {when}",
            )
            _check_etsi_view(report, event.get("etsi_file"), raw)


def _check_etsi_view(report: CertificateReport, name: Any, bundle_raw: bytes) -> None:
    """The ETSI view beside a verified bundle is the one its record and seal give (certificates
    issued before the view existed have none: nothing to check)."""
    if name is None:
        return
    raw = report.attachments.get(name) if isinstance(name, str) else None
    if raw is None:
        report.add("etsi view", str(name), False, "the ETSI view file is missing")
        return
    try:
        same = json.loads(raw) == view_of_bundle(json.loads(bundle_raw))
    except (ValueError, KeyError, TypeError):
        same = False
    report.add(
        "etsi view",
        name,
        same,
        "derived from its verified evidence bundle"
        if same
        else "altered: it is not the view of its evidence bundle's record",
    )


def check_delivered(report: CertificateReport, manifest: dict[str, Any]) -> None:
    """Each delivered copy the certificate states is the one its sealed record states.

    The pages and ``message.delivered[]`` name the digest of each copy transmitted; the record
    of that delivery (verified by :func:`check_evidence`) must name the same digest, and the
    same received message when it names one.
    """
    delivered = manifest["message"].get("delivered", [])
    if not isinstance(delivered, list):
        report.add("delivered digest", "manifest", False, "message.delivered is not a list")
        return
    files = {e.get("record_id"): e.get("file") for e in manifest["events"]}
    for entry in delivered:
        if not isinstance(entry, dict):
            report.add("delivered digest", "manifest", False, "an entry is not an object")
            continue
        label = f"event {entry.get('n')} ({entry.get('event')})"
        name = files.get(entry.get("record_id"))
        bundle = report.evidence.get(name) if isinstance(name, str) else None
        record = bundle.record if bundle is not None and bundle.ok else None
        if record is None:
            report.add(
                "delivered digest",
                label,
                name is None and entry.get("record_id") in files,
                "no verified evidence file: this copy is stated by the certificate only",
            )
            continue
        problems = []
        if record.details.get("delivered_sha256") != entry.get("sha256"):
            problems.append(
                f"the certificate states SHA-256 {entry.get('sha256')}, the record "
                f"{record.details.get('delivered_sha256')}"
            )
        received = record.details.get("received_sha256")
        if received is not None and received != manifest["message"]["sha256"]:
            problems.append(f"the record is of another received message (SHA-256 {received})")
        report.add(
            "delivered digest",
            label,
            not problems,
            "; ".join(problems)
            if problems
            else f"SHA-256 {entry.get('sha256')} of the copy delivered is the record's",
        )
