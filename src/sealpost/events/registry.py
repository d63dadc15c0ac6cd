"""The registry of events out: each domain registers its kinds and how its records imply them.

An *event* tells an integrator that something it cares about changed: a communication was
accepted, delivered, finally failed.  It is derived from the evidence record of that change, in
the same transaction (``events.outbox.append_evidence``), so an event never exists without its
evidence and a change is never committed without its event.  Not every record is an event:
a temporary delivery failure (RelayToNonERDSFailure) is evidence, but integrators asked for
*one* terminal event per outcome, not one per retry.

``events`` never imports a domain: a domain's ``events.py`` calls :meth:`EventRegistry.register`
with its :class:`EventKind` s and :class:`SubjectType` s (the derivation from its records), and
the domain's package imports that module, so using any part of a domain registers its events.
Pure: no I/O.  ``docs/events.md`` shows every type with a sample payload.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from time import time_ns
from typing import Any

from sealpost.ledger.records import EvidenceRecord


@dataclass(frozen=True)
class EventKind:
    """One type of event: its CloudEvents ``type`` and what it means."""

    type: str
    subject_type: str
    summary: str
    terminal: bool = False
    """The last word on an outcome (delivered, failed, expired...); a later one may follow
    only if the outcome itself changes (a bounce after a delivery)."""
    opens_subject: bool = False
    """Always its subject's first event (sequence 1): the outbox keeps no counter for it."""


@dataclass(frozen=True)
class SubjectType:
    """What events are about: a communication, a signature process, a webhook endpoint."""

    name: str
    """As in evidence records' ``subject.type`` and events' ``subject_type``."""
    collection: str
    """CloudEvents ``subject`` is ``<collection>/<id>``, the resource's path under ``/v1``."""
    derive: Callable[[EvidenceRecord], NewEvent | None] | None = None
    """The event a record of this subject implies, if any (pure)."""


PREFIX = "sealpost."

TEST_EVENT_TYPE = "sealpost.webhook.test"
"""Sent by ``POST /v1/webhooks/{id}/test`` only; never stored in the outbox."""


class EventRegistry:
    """Every event kind and subject type a process knows, as registered by the domains."""

    def __init__(self) -> None:
        self._kinds: dict[str, EventKind] = {}
        self._subjects: dict[str, SubjectType] = {}

    def register(self, kinds: Sequence[EventKind], subjects: Sequence[SubjectType] = ()) -> None:
        """Add a domain's kinds and subject types; registering the same ones again is a no-op,
        a different definition under a known name is a programming error."""
        for kind in kinds:
            if not kind.type.startswith(PREFIX):
                raise ValueError(f"event types start with {PREFIX!r}: {kind.type!r}")
            if self._kinds.setdefault(kind.type, kind) != kind:
                raise ValueError(f"event type {kind.type!r} is registered twice, differently")
        for subject in subjects:
            if self._subjects.setdefault(subject.name, subject) != subject:
                raise ValueError(f"subject type {subject.name!r} is registered twice, differently")

    @property
    def kinds(self) -> tuple[EventKind, ...]:
        return tuple(self._kinds.values())

    def kind(self, type_: str) -> EventKind | None:
        return self._kinds.get(type_)

    def opens(self, subject_type: str) -> bool:
        """Whether this subject's first event is always an opening one (``opens_subject``)."""
        return any(k.opens_subject and k.subject_type == subject_type for k in self._kinds.values())

    @property
    def opened_subjects(self) -> frozenset[str]:
        return frozenset(k.subject_type for k in self._kinds.values() if k.opens_subject)

    def collection(self, subject_type: str) -> str:
        """``KeyError`` for a subject type no domain registered: a wrong ``subject`` in an
        event (and in the webhooks' per-subject order) must never be written silently."""
        subject = self._subjects.get(subject_type)
        if subject is None:
            raise KeyError(f"no domain registered the subject type {subject_type!r}")
        return subject.collection

    def events_for_records(self, records: Sequence[EvidenceRecord]) -> list[NewEvent]:
        """The events these records imply, in record order (records without one are skipped)."""
        events = []
        for record in records:
            subject = self._subjects.get(record.subject.type)
            if subject is None:  # its domain is not imported: its events would be lost
                raise KeyError(f"no domain registered the subject type {record.subject.type!r}")
            event = subject.derive(record) if subject.derive else None
            if event is not None:
                events.append(event)
        return events


REGISTRY = EventRegistry()
"""The process's registry; the domains' ``events`` modules register into it on import."""

REGISTRY.register(
    (
        EventKind(
            "sealpost.webhook_endpoint.disabled",
            "webhook_endpoint",
            "A webhook endpoint failed for the whole retry window and was disabled.",
        ),
    ),
    (SubjectType("webhook_endpoint", "webhooks"),),
)


@dataclass(frozen=True)
class NewEvent:
    """An event about to be written to the outbox (its per-subject sequence comes there)."""

    id: str
    tenant_id: str
    type: str
    subject_type: str
    subject_id: str
    time: datetime
    data: Mapping[str, Any]
    record_id: str | None = None

    @property
    def subject(self) -> str:
        return f"{REGISTRY.collection(self.subject_type)}/{self.subject_id}"


def new_event(
    *,
    tenant_id: str,
    type: str,
    subject_type: str,
    subject_id: str,
    time: datetime,
    data: Mapping[str, Any],
    record_id: str | None = None,
) -> NewEvent:
    if REGISTRY.kind(type) is None:
        raise KeyError(f"unknown event type {type!r}")
    return NewEvent(
        new_event_id(), tenant_id, type, subject_type, subject_id, time, data, record_id
    )


def new_event_id() -> str:
    """A UUIDv7 (RFC 9562 §5.7): 48-bit Unix milliseconds, then 74 random bits.  Time-ordered
    ids keep the outbox's id index append-only; random ones would dirty a page per event."""
    millis = time_ns() // 1_000_000
    random_bits = secrets.randbits(74)
    value = (millis & (2**48 - 1)) << 80 | 0x7 << 76 | (random_bits >> 62) << 64
    value |= 0b10 << 62 | random_bits & (2**62 - 1)
    return str(uuid.UUID(int=value))


def record_reference(record: EvidenceRecord) -> dict[str, Any]:
    """The part of every event's data that points at its evidence record."""
    return {
        "record_id": record.id,
        "evidence_event": record.event.name,
        "evidence": f"/v1/evidence/{record.id}",
    }


def events_for_records(records: Sequence[EvidenceRecord]) -> list[NewEvent]:
    """The events these records imply, in record order (records without one are skipped)."""
    return REGISTRY.events_for_records(records)


def matches(patterns: Sequence[str], event_type: str) -> bool:
    """An endpoint's filter: empty means every type; ``sealpost.communication.*`` a family."""
    if not patterns:
        return True
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def patterns() -> list[str]:
    """Every filter :func:`valid_pattern` accepts: ``*``, each family (``prefix.*`` for each
    dotted prefix of a known type), each known type; what the API's schema lists."""
    families = {
        ".".join(parts[:n]) + ".*"
        for parts in (k.type.split(".") for k in REGISTRY.kinds)
        for n in range(1, len(parts))
    }
    return ["*", *sorted(families), *sorted(k.type for k in REGISTRY.kinds)]


def types() -> list[str]:
    """Every known event type (no family)."""
    return sorted(k.type for k in REGISTRY.kinds)


def valid_pattern(pattern: str) -> bool:
    """A filter names a known type, a family of them (``prefix.*``), or ``*``."""
    if pattern == "*" or REGISTRY.kind(pattern) is not None:
        return True
    return pattern.endswith(".*") and any(k.type.startswith(pattern[:-1]) for k in REGISTRY.kinds)
