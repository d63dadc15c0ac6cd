"""Evidence records: one event of a communication's life, as canonical JSON.

The JSON shape follows the semantic content of ETSI EN 319 522-2 evidence: an identifier, the
event (ETSI URI and name), the event time and the submission time, the subject (the
communication or signature process), sender and recipient identities, the application-layer
identifier (the email's Message-ID), the digest of the exact content bytes and of each part
(like ETSI's UserContentInfo, so a certificate can prove which attachment was sent without
revealing the others), ``reasons`` on every negative event, and channel details.  The byte
form (RFC 8785) is what the Merkle leaf hashes; ``docs/evidence-format.md`` documents it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sealpost.ledger.canonical import CanonicalizationError, canonical_json
from sealpost.ledger.errors import RecordError, shown
from sealpost.ledger.events import CATALOGUE_VERSION, CATALOGUES, EventType
from sealpost.ledger.merkle import leaf_hash

RECORD_VERSION = CATALOGUE_VERSION
"""The version new records are written in; it names the event catalogue they follow."""
RECORD_VERSIONS = frozenset(CATALOGUES)
"""Every version a sealed record may have (1: catalogue 1, before issue 13; 2: Table 2)."""
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds, the one time format of every record."""
    if moment.tzinfo is None:
        raise RecordError("time must be timezone-aware", field="time")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_optional_time(moment: datetime | None) -> str | None:
    """:func:`format_time`, or None for a time that is not there (yet)."""
    return None if moment is None else format_time(moment)


def parse_time(text: str, *, field: str) -> datetime:
    if not isinstance(text, str) or not text.endswith("Z"):
        raise RecordError("expected an RFC 3339 UTC time ending in Z", field=field)
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise RecordError(f"not a time: {shown(text)}", field=field) from None


@dataclass(frozen=True)
class Party:
    """A sender or recipient: address plus how Sealpost identified them."""

    address: str
    display_name: str | None = None
    identification: Mapping[str, Any] | None = None
    """E.g. {"method": "smtp-auth", "username": ...} or {"method": "dkim", "domain": ...}."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"address": self.address}
        if self.display_name is not None:
            out["display_name"] = self.display_name
        if self.identification is not None:
            out["identification"] = dict(self.identification)
        return out


@dataclass(frozen=True)
class ContentPart:
    """One MIME part (ETSI UserContentInfo): type, filename, digest of its decoded bytes."""

    content_type: str
    sha256: str
    size: int
    filename: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "content_type": self.content_type,
            "sha256": self.sha256,
            "size": self.size,
        }
        if self.filename is not None:
            out["filename"] = self.filename
        return out


@dataclass(frozen=True)
class ContentInfo:
    """Digest of the exact raw bytes (e.g. the .eml) and of each part."""

    sha256: str
    size: int
    parts: tuple[ContentPart, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "size": self.size,
            "parts": [p.to_json() for p in self.parts],
        }


@dataclass(frozen=True)
class Reason:
    """ETSI EventReasons entry: a stable machine code and a human text (e.g. the SMTP reply)."""

    code: str
    text: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "text": self.text}


@dataclass(frozen=True)
class Subject:
    """What the event is about: ("communication", id), ("signature_process", id), ..."""

    type: str
    id: str


@dataclass(frozen=True)
class EvidenceRecord:
    """One evidence record; build with :func:`new_record`, read with :func:`record_from_json`."""

    id: str
    tenant_id: str
    event: EventType
    event_time: datetime
    subject: Subject
    submission_time: datetime | None = None
    sender: Party | None = None
    recipient: Party | None = None
    application_identifier: str | None = None
    content: ContentInfo | None = None
    reasons: tuple[Reason, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    version: int = RECORD_VERSION
    """Record format version = the event catalogue the record follows."""

    def __post_init__(self) -> None:
        catalogue = CATALOGUES.get(self.version)
        if catalogue is None:
            raise RecordError(f"unsupported record version {shown(self.version)}", field="version")
        if catalogue.get(self.event.name) != self.event:
            raise RecordError(
                f"{self.event.name} is not an event of catalogue {self.version}",
                field="event.name",
            )
        if self.event.negative and not self.reasons:
            raise RecordError(
                f"{self.event.name} is a negative event and needs at least one reason",
                field="reasons",
            )
        if self.content is not None:
            for name, digest in [("content.sha256", self.content.sha256)] + [
                (f"content.parts[{i}].sha256", p.sha256) for i, p in enumerate(self.content.parts)
            ]:
                if not _SHA256_HEX.match(digest):
                    raise RecordError("expected 64 lowercase hex digits", field=name)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "id": self.id,
            "tenant": self.tenant_id,
            "event": {
                "name": self.event.name,
                "uri": self.event.uri,
                "group": self.event.group,
                **({"code": self.event.code} if self.event.code else {}),
            },
            "event_time": format_time(self.event_time),
            "subject": {"type": self.subject.type, "id": self.subject.id},
        }
        if self.submission_time is not None:
            out["submission_time"] = format_time(self.submission_time)
        if self.sender is not None:
            out["sender"] = self.sender.to_json()
        if self.recipient is not None:
            out["recipient"] = self.recipient.to_json()
        if self.application_identifier is not None:
            out["application_identifier"] = self.application_identifier
        if self.content is not None:
            out["content"] = self.content.to_json()
        if self.reasons:
            out["reasons"] = [r.to_json() for r in self.reasons]
        if self.details:
            out["details"] = dict(self.details)
        return out

    def canonical(self) -> bytes:
        try:
            return canonical_json(self.to_json())
        except CanonicalizationError as exc:
            raise RecordError(str(exc), field="details") from None

    def leaf_hash(self) -> bytes:
        return leaf_hash(self.canonical())


def new_record(
    *,
    tenant_id: str,
    event: str,
    subject: Subject,
    event_time: datetime | None = None,
    submission_time: datetime | None = None,
    sender: Party | None = None,
    recipient: Party | None = None,
    application_identifier: str | None = None,
    content: ContentInfo | None = None,
    reasons: Sequence[Reason] = (),
    details: Mapping[str, Any] | None = None,
) -> EvidenceRecord:
    """A new record with a fresh id; the event time defaults to now (UTC).

    New records follow the current catalogue only: a name that only catalogue 1 had (such as
    ``AcceptanceByRecipient``, not a name of ETSI EN 319 522-3) is refused here.
    """
    etype = CATALOGUES[RECORD_VERSION].get(event)
    if etype is None:
        legacy = any(event in c for c in CATALOGUES.values())
        raise RecordError(
            f"{shown(event)} is no longer written (not an event of ETSI EN 319 522-3 Table 2)"
            if legacy
            else f"unknown evidence event type {shown(event)}",
            field="event.name",
        )
    return EvidenceRecord(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        event=etype,
        event_time=event_time or datetime.now(UTC),
        subject=subject,
        submission_time=submission_time,
        sender=sender,
        recipient=recipient,
        application_identifier=application_identifier,
        content=content,
        reasons=tuple(reasons),
        details=dict(details or {}),
    )


def _party(obj: Any, field: str) -> Party | None:
    if obj is None:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("address"), str):
        raise RecordError("expected an object with an address", field=field)
    return Party(obj["address"], obj.get("display_name"), obj.get("identification"))


def record_from_json(obj: Any) -> EvidenceRecord:
    """Read a record back from its JSON form (a bundle's ``record``), checking its shape.

    The round trip is exact: ``record_from_json(r.to_json()).canonical() == r.canonical()``, so
    a verifier rebuilds the very bytes that were hashed.
    """
    if not isinstance(obj, dict):
        raise RecordError("expected a JSON object", field="record")
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version not in RECORD_VERSIONS:
        raise RecordError(f"unsupported record version {shown(version)}", field="version")
    try:
        ev = obj["event"]
        etype = CATALOGUES[version].get(ev["name"])
        if etype is None:
            raise RecordError(
                f"unknown event {shown(ev['name'])} in a version {version} record",
                field="event.name",
            )
        if ev.get("uri") != etype.uri:
            raise RecordError("event URI does not match the event name", field="event.uri")
        content = obj.get("content")
        return EvidenceRecord(
            id=obj["id"],
            tenant_id=obj["tenant"],
            event=etype,
            event_time=parse_time(obj["event_time"], field="event_time"),
            subject=Subject(obj["subject"]["type"], obj["subject"]["id"]),
            submission_time=(
                parse_time(obj["submission_time"], field="submission_time")
                if "submission_time" in obj
                else None
            ),
            sender=_party(obj.get("sender"), "sender"),
            recipient=_party(obj.get("recipient"), "recipient"),
            application_identifier=obj.get("application_identifier"),
            content=(
                ContentInfo(
                    content["sha256"],
                    content["size"],
                    tuple(
                        ContentPart(p["content_type"], p["sha256"], p["size"], p.get("filename"))
                        for p in content["parts"]
                    ),
                )
                if content is not None
                else None
            ),
            reasons=tuple(Reason(r["code"], r["text"]) for r in obj.get("reasons", [])),
            details=obj.get("details", {}),
            version=version,
        )
    except (KeyError, TypeError) as exc:
        raise RecordError(f"missing or malformed field {exc}", field="record") from None
