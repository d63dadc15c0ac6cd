"""The machine-readable side of a certificate: attachment names and ``manifest.json``.

Pure functions shared by the renderer (which embeds what they name) and the verifier (which
checks the PDF holds exactly that), so the two can never disagree on a file name.

``manifest.json``, format ``sealpost-evidence-certificate`` version 1::

    {"format": "sealpost-evidence-certificate", "version": 1,
     "communication_id": "...", "certificate_version": 2, "issued_at": "...Z",
     "status": "delivered", "supersedes_sha256": "hex" | null, "ledger_origin": "...",
     "message": {"sender": ..., "recipient": ..., "subject": ..., "message_id": ...,
                 "submitted_at": "...Z", "sha256": "hex", "size": n, "file": "original.eml",
                 ("file": null, "withheld": "access_secret" when the message carried a
                 single-use link or code: not embedded, see certificates.secrets),
                 "parts": [{"content_type", "filename", "sha256", "size"}, ...],
                 "delivered": [{"n", "record_id", "event", "remote_host", "sha256",
                                "size"}, ...]},
     "events": [{"n": 1, "record_id": ..., "event": ..., "event_uri": ..., "event_time": ...,
                 "summary": ..., "file": "evidence-01-....json" | null,
                 "etsi_file": "etsi-01-....json" | null}, ...],
     "files": {"<name>": {"sha256": "hex", "size": n, "mime_type": ...}, ...}}
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sealpost.certificates.copies import delivered_copies, manifest_entry
from sealpost.certificates.model import CertificateData, CertificateEvent
from sealpost.certificates.secrets import ACCESS_SECRET
from sealpost.ledger.etsi_view import view_of_bundle

MANIFEST_FORMAT = "sealpost-evidence-certificate"
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
EML_NAME = "original.eml"
EML_MIME = "message/rfc822"
SMS_NAME = "original.txt"
SMS_MIME = "text/plain; charset=utf-8"


def original_file(data: CertificateData) -> tuple[str, str]:
    """(name, MIME type) of the embedded original: the .eml, or an SMS's text."""
    return (SMS_NAME, SMS_MIME) if data.channel == "sms" else (EML_NAME, EML_MIME)


JSON_MIME = "application/json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def utc_text(moment: datetime) -> str:
    """RFC 3339 UTC, the one time format of records and manifests."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def bundle_json(bundle: Mapping[str, Any]) -> bytes:
    """The embedded form of a bundle: stable (sorted keys) and readable (indent 2)."""
    return (json.dumps(bundle, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def evidence_file_name(n: int, event: CertificateEvent, width: int = 2) -> str:
    """``evidence-<n>-<EventName>-<record_id>.json``, n zero-padded so names sort in order."""
    safe_id = _UNSAFE.sub("_", event.record_id)
    return f"evidence-{n:0{width}d}-{_UNSAFE.sub('_', event.event)}-{safe_id}.json"


def etsi_file_name(evidence_name: str) -> str:
    """The ETSI view's name beside its bundle: ``etsi-<n>-<EventName>-<record_id>.json``."""
    return "etsi-" + evidence_name.removeprefix("evidence-")


def evidence_files(data: CertificateData) -> list[tuple[CertificateEvent, int, str | None]]:
    """(event, 1-based number, attachment name or None when not sealed yet), in order."""
    width = max(2, len(str(len(data.events))))
    return [
        (event, n, evidence_file_name(n, event, width) if event.bundle is not None else None)
        for n, event in enumerate(data.events, start=1)
    ]


def attachments(data: CertificateData) -> dict[str, tuple[bytes, str]]:
    """Every file the certificate embeds: name -> (bytes, MIME type), manifest included."""
    original, mime = original_file(data)
    files: dict[str, tuple[bytes, str]] = {}
    if not data.access_secret:
        files[original] = (data.eml, mime)
    for event, _, name in evidence_files(data):
        if name is not None and event.bundle is not None:
            files[name] = (bundle_json(event.bundle), JSON_MIME)
            files[etsi_file_name(name)] = (bundle_json(view_of_bundle(event.bundle)), JSON_MIME)
    manifest = build_manifest(data, files)
    files[MANIFEST_NAME] = (
        (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode(),
        JSON_MIME,
    )
    return files


def build_manifest(data: CertificateData, files: Mapping[str, tuple[bytes, str]]) -> dict[str, Any]:
    """The machine summary; ``files`` are the other attachments, described by digest."""
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "communication_id": data.communication_id,
        "certificate_version": data.version,
        "issued_at": utc_text(data.issued_at),
        "status": data.status,
        "supersedes_sha256": data.supersedes_sha256,
        "ledger_origin": data.ledger_origin,
        **({"subject_type": "sms"} if data.channel == "sms" else {}),
        "message": {
            "sender": data.sender,
            "sender_identification": data.sender_identification,
            "recipient": data.recipient,
            "subject": data.subject,
            "message_id": data.message_id,
            "submitted_at": utc_text(data.submitted_at),
            "sha256": data.content_sha256,
            "size": data.content_size,
            "file": None if data.access_secret else original_file(data)[0],
            **({"withheld": ACCESS_SECRET} if data.access_secret else {}),
            "parts": [
                {"content_type": ct, "filename": fn, "sha256": digest, "size": size}
                for ct, fn, digest, size in data.parts
            ],
            "delivered": [manifest_entry(copy) for copy in delivered_copies(data.events)],
        },
        "events": [
            {
                "n": n,
                "record_id": event.record_id,
                "event": event.event,
                "event_uri": event.event_uri,
                "event_time": utc_text(event.event_time),
                "summary": event.summary,
                "file": name,
                "etsi_file": etsi_file_name(name) if name is not None else None,
            }
            for event, n, name in evidence_files(data)
        ],
        "files": {
            name: {
                "sha256": hashlib.sha256(content).hexdigest(),
                "size": len(content),
                "mime_type": mime,
            }
            for name, (content, mime) in sorted(files.items())
        },
    }
