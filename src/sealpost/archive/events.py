"""The events of the mail archive (``sealpost.archive.*``).

``message_archived`` is derived from each ``Archived`` record (subject type
``archive_message``, collection ``archive/messages``); the thread's events (assignment, a
customer writing again in an owned thread) are about ``archive_thread`` and are written
explicitly with their records.  Registered when the package is imported.
"""

from __future__ import annotations

from typing import Any

from sealpost.events.registry import (
    REGISTRY,
    EventKind,
    NewEvent,
    SubjectType,
    new_event,
    record_reference,
)
from sealpost.ledger.records import EvidenceRecord

MESSAGE_ARCHIVED = "sealpost.archive.message_archived"
THREAD_ASSIGNED = "sealpost.archive.thread_assigned"
CUSTOMER_WROTE = "sealpost.archive.customer_wrote"
MAILBOX_FAILING = "sealpost.archive.mailbox_failing"
MAILBOX_RECOVERED = "sealpost.archive.mailbox_recovered"
SLA_WARNING = "sealpost.archive.sla_warning"
SLA_BREACHED = "sealpost.archive.sla_breached"
SLA_ESCALATED = "sealpost.archive.sla_escalated"
SCHEDULED_SEND_SENT = "sealpost.archive.scheduled_send_sent"
SCHEDULED_SEND_FAILED = "sealpost.archive.scheduled_send_failed"

KINDS: tuple[EventKind, ...] = (
    EventKind(
        MESSAGE_ARCHIVED,
        "archive_message",
        "A message was archived (Archived): its first sighting from any source (journal, "
        "IMAP, sent through Sealpost); later sightings of the same bytes add no event.",
        opens_subject=True,
    ),
    EventKind(
        THREAD_ASSIGNED,
        "archive_thread",
        "A thread was assigned to an agent or a team, or reassigned (ThreadAssigned).",
    ),
    EventKind(
        CUSTOMER_WROTE,
        "archive_thread",
        "The customer wrote again in a thread an agent owns, possibly to another address of "
        "the company: the message is routed to the owner, who is notified.",
    ),
    EventKind(
        MAILBOX_FAILING,
        "archive_mailbox",
        "An IMAP mailbox pulled into the archive stopped working (wrong password, server "
        "unreachable, folder missing): its mail waits at the source until it recovers "
        "(MailboxFailing; raised once per failing period, retries back off).",
    ),
    EventKind(
        MAILBOX_RECOVERED,
        "archive_mailbox",
        "A failing IMAP mailbox was read again (MailboxRecovered).",
    ),
    EventKind(
        SLA_WARNING,
        "archive_thread",
        "A customer's mail is near its reply deadline (ReplyDeadlineApproaching); raised "
        "only in service hours, once per customer message.  A reassignment for want of a "
        "reply is a thread_assigned with reason sla_reassigned.",
    ),
    EventKind(
        SLA_BREACHED,
        "archive_thread",
        "A customer's mail was not answered by its deadline (ReplyDeadlineMissed).",
    ),
    EventKind(
        SLA_ESCALATED,
        "archive_thread",
        "An overdue thread was escalated to the supervisors (ReplyEscalated).",
    ),
    EventKind(
        SCHEDULED_SEND_SENT,
        "archive_scheduled_send",
        "A scheduled send went out: its communication id (whose own events follow).",
    ),
    EventKind(
        SCHEDULED_SEND_FAILED,
        "archive_scheduled_send",
        "A scheduled send could not be sent (the message was refused): its error.",
    ),
)

_COPIED = (
    "thread_id",
    "direction",
    "message_id",
    "source",
    "owner_agent_id",
    "team_id",
    "previous_owner_agent_id",
    "reason",
)


def _from_message(record: EvidenceRecord) -> NewEvent | None:
    if record.event.name == "Purged":
        return _derived(record, MESSAGE_PURGED, "archive_message", ("retention_days",))
    if record.event.name != "Archived":
        return None
    data: dict[str, Any] = {"archive_message_id": record.subject.id, **record_reference(record)}
    for key in _COPIED:
        if key in record.details:
            data[key] = record.details[key]
    return new_event(
        tenant_id=record.tenant_id,
        type=MESSAGE_ARCHIVED,
        subject_type="archive_message",
        subject_id=record.subject.id,
        time=record.event_time,
        data=data,
        record_id=record.id,
    )


def _from_thread(record: EvidenceRecord) -> NewEvent | None:
    if record.event.name != "ThreadAssigned":
        return None
    data: dict[str, Any] = {"thread_id": record.subject.id, **record_reference(record)}
    for key in _COPIED:
        if key in record.details:
            data[key] = record.details[key]
    return new_event(
        tenant_id=record.tenant_id,
        type=THREAD_ASSIGNED,
        subject_type="archive_thread",
        subject_id=record.subject.id,
        time=record.event_time,
        data=data,
        record_id=record.id,
    )


_MAILBOX_EVENTS = {"MailboxFailing": MAILBOX_FAILING, "MailboxRecovered": MAILBOX_RECOVERED}


def _from_mailbox(record: EvidenceRecord) -> NewEvent | None:
    type_ = _MAILBOX_EVENTS.get(record.event.name)
    if type_ is None:
        return None
    data: dict[str, Any] = {"mailbox_id": record.subject.id, **record_reference(record)}
    for key in ("name", "host", "port", "username", "error", "failing_since", "failures"):
        if key in record.details:
            data[key] = record.details[key]
    return new_event(
        tenant_id=record.tenant_id,
        type=type_,
        subject_type="archive_mailbox",
        subject_id=record.subject.id,
        time=record.event_time,
        data=data,
        record_id=record.id,
    )


REGISTRY.register(
    KINDS,
    (
        SubjectType("archive_message", "archive/messages", _from_message),
        SubjectType("archive_thread", "archive/threads", _from_thread),
        SubjectType("archive_mailbox", "archive/mailboxes", _from_mailbox),
        SubjectType("archive_scheduled_send", "archive/scheduled-sends"),
        SubjectType("archive_agent", "archive/agents"),
        SubjectType("archive_team", "archive/teams"),
        SubjectType("archive_sla_policy", "archive/sla-policies"),
    ),
)


# -- legal holds, retention, exports (docs/archive-holds.md) ----------------------------------

HOLD_PLACED = "sealpost.archive.hold_placed"
HOLD_RELEASED = "sealpost.archive.hold_released"
MESSAGE_PURGED = "sealpost.archive.message_purged"
EXPORT_CREATED = "sealpost.archive.export_created"
RETENTION_CHANGED = "sealpost.archive.retention_changed"
JOURNAL_ADDRESS_ROTATED = "sealpost.archive.journal_address_rotated"

HOLD_KINDS: tuple[EventKind, ...] = (
    EventKind(
        HOLD_PLACED,
        "archive_hold",
        "A legal hold was placed on a thread, a customer's address or a search query "
        "(LegalHoldPlaced): nothing it covers is purged while it is active.",
        opens_subject=True,
    ),
    EventKind(HOLD_RELEASED, "archive_hold", "A legal hold was released (LegalHoldReleased)."),
    EventKind(
        MESSAGE_PURGED,
        "archive_message",
        "An archived message's bytes were purged after the tenant's retention (Purged); its "
        "metadata and records stay.",
    ),
    EventKind(
        EXPORT_CREATED,
        "archive_export",
        "A case was exported as a ZIP with a sealed chain-of-custody report (ExportCreated).",
        opens_subject=True,
    ),
    EventKind(
        RETENTION_CHANGED,
        "archive_settings",
        "The tenant's archive retention period changed (RetentionChanged).",
    ),
    EventKind(
        JOURNAL_ADDRESS_ROTATED,
        "archive_settings",
        "The tenant's journal address got a new token; the old address is refused from now on "
        "(JournalAddressRotated; the event carries no address).",
    ),
)

_HOLD_COPIED = (
    "kind",
    "thread_id",
    "address",
    "query",
    "matched",
    "reason",
    "placed_by",
    "released_by",
    "message_count",
    "created_by",
    "retention_days",
    "previous_retention_days",
    "changed_by",
)


def _derived(
    record: EvidenceRecord, type_: str, subject_type: str, copied: tuple[str, ...] = _HOLD_COPIED
) -> NewEvent:
    data: dict[str, Any] = {f"{subject_type}_id": record.subject.id, **record_reference(record)}
    for key in copied:
        if key in record.details:
            data[key] = record.details[key]
    return new_event(
        tenant_id=record.tenant_id,
        type=type_,
        subject_type=subject_type,
        subject_id=record.subject.id,
        time=record.event_time,
        data=data,
        record_id=record.id,
    )


_BY_EVENT = {
    "LegalHoldPlaced": HOLD_PLACED,
    "LegalHoldReleased": HOLD_RELEASED,
    "ExportCreated": EXPORT_CREATED,
    "RetentionChanged": RETENTION_CHANGED,
    "JournalAddressRotated": JOURNAL_ADDRESS_ROTATED,
}


def _from_hold_record(record: EvidenceRecord) -> NewEvent | None:
    type_ = _BY_EVENT.get(record.event.name)
    return None if type_ is None else _derived(record, type_, record.subject.type)


REGISTRY.register(
    HOLD_KINDS,
    (
        SubjectType("archive_hold", "archive/holds", _from_hold_record),
        SubjectType("archive_export", "archive/exports", _from_hold_record),
        SubjectType("archive_settings", "archive/settings", _from_hold_record),
    ),
)
