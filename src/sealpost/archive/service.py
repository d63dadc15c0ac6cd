"""The archive's core: ingest a message once per tenant, thread it, give it to its agent.

Ingest streams the bytes to the archive's blob namespace first (durable, named by SHA-256),
walks their MIME structure in bounded memory, then commits in one transaction the message row,
the sighting, the thread's update and the ``Archived`` evidence record with its event.  The
same bytes again (from the journal and from IMAP, or a re-fetch after a crash) add a sighting
and nothing else: deduplication is by content per tenant, never by Message-ID (absent, or
reused by a broken mailer, it would lose mail).

Threads are kept with their agent: a customer's later mail in an owned thread, even to another
address of the company, stays in that thread and notifies its owner; an agent answering an
unassigned thread from its own address takes it.  Nothing here deletes or alters an archived
message (write-once: the database refuses it too, see migration 0019).
"""

from __future__ import annotations

import io
import json
import secrets
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from sealpost.archive import threads
from sealpost.archive.events import CUSTOMER_WROTE
from sealpost.archive.mime_scan import Scan, scan
from sealpost.archive.model import (
    DIRECTIONS,
    ROLES,
    SOURCE_KINDS,
    Agent,
    ArchivedMessage,
    Ingested,
    Source,
    Team,
    Thread,
    Viewer,
)
from sealpost.archive.repository import ArchiveRepository, message_from_row
from sealpost.db.blobs import BlobStorage
from sealpost.db.engine import write_transaction
from sealpost.errors import (
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
)
from sealpost.events.outbox import append_evidence
from sealpost.events.registry import new_event
from sealpost.ledger.records import (
    ContentInfo,
    ContentPart,
    EvidenceRecord,
    Party,
    Subject,
    new_record,
)
from sealpost.logging import get_logger
from sealpost.tenants.repository import IssuedApiKey, TenantRepository

log = get_logger(__name__)

RETENTION_FLOOR_DAYS = 30
"""The shortest retention a tenant may set: a slip (``1`` for ``365``) would otherwise purge
almost the whole archive at the next round, beyond recovery (docs/archive-holds.md)."""

MAX_PARTS_RECORDED = 200
"""Parts listed in the Archived record (each with its digest); the rest are counted."""


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _sent_at(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None  # RFC 5322 "-0000": no zone known
    if not 1970 <= moment.year <= 9999:
        return None
    return moment.astimezone(UTC)


_PURGED_MEANWHILE = ServiceUnavailable(
    "the archive's file of these bytes was purged (another copy's retention) while they were "
    "being archived: send them again"
)


def _clip(text: str | None, limit: int) -> str:
    return (text or "")[:limit]


class ArchiveService:
    """Ingest, threads, agents and teams of the archive."""

    def __init__(
        self,
        repo: ArchiveRepository,
        blobs: BlobStorage,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repo = repo
        self.blobs = blobs
        self.clock = clock

    @property
    def engine(self) -> Engine:
        return self.repo.engine

    # -- ingest --------------------------------------------------------------------------------

    def ingest(
        self,
        tenant_id: str,
        data: bytes | BinaryIO,
        source: Source,
        *,
        direction: str | None = None,
    ) -> Ingested:
        """Archive ``data`` (the raw message, byte-exact) for the tenant, once; see the module
        docstring.  ``direction`` when the caller knows it (Sealpost's own outgoing mail)."""
        if source.kind not in SOURCE_KINDS:
            raise InvalidInput(f"source: one of {', '.join(SOURCE_KINDS)}")
        if direction is not None and direction not in DIRECTIONS:
            raise InvalidInput(f"direction: one of {', '.join(DIRECTIONS)}")
        stream = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
        sha256, _ = self.blobs.put_stream(stream)
        try:
            with self.blobs.open(sha256) as stored:
                structure = scan(stored)
        except NotFound:
            raise _PURGED_MEANWHILE from None
        if structure.sha256 != sha256:  # the file changed under us: never archive a guess
            raise InvalidInput(f"archive blob {sha256} does not hold the bytes just stored")
        for attempt in range(3):
            try:
                with write_transaction(self.engine) as conn:
                    # the retention purge deletes a blob under the same lock, once no unpurged
                    # row has it: either it finished first (the file is gone: retry) or it
                    # will see this row (docs/archive-holds.md)
                    self.repo.lock_blob_in(conn, sha256)
                    if not self.blobs.exists(sha256):
                        raise _PURGED_MEANWHILE
                    return self._ingest_in(conn, tenant_id, structure, source, direction)
            except IntegrityError:  # a concurrent ingest of the same bytes committed first
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _ingest_in(
        self,
        conn: Connection,
        tenant_id: str,
        structure: Scan,
        source: Source,
        direction: str | None,
    ) -> Ingested:
        now = self.clock()
        ref = source.ref or ""
        existing = self.repo.by_content_in(conn, tenant_id, structure.sha256)
        if existing is not None:
            self.repo.add_sighting_in(
                conn,
                message_id=existing.id,
                tenant_id=tenant_id,
                source_kind=source.kind,
                source_ref=ref,
                now=now,
            )
            return Ingested(message_from_row(existing), duplicate=True)

        own = self.repo.own_domains_in(conn, tenant_id, now)
        sender = (structure.addresses("from") or [""])[0]
        to = structure.addresses("to")
        cc = structure.addresses("cc")
        if direction is None:
            direction = self._direction(sender, [*to, *cc], own)
        subject = _clip(structure.header("subject"), 2000)
        raw_msg_id = structure.header("message-id")
        own_key = threads.message_ids(raw_msg_id)[:1]
        related = threads.related_keys(
            structure.header("in-reply-to"), structure.header("references")
        )
        customer = self._customer(direction, sender, [*to, *cc], own)
        message_id = str(uuid.uuid4())

        thread_id = self.repo.thread_for_keys_in(conn, tenant_id, [*own_key, *related])
        if thread_id is None and threads.has_reply_prefix(subject) and customer:
            thread_id = self.repo.thread_for_subject_in(
                conn,
                tenant_id,
                threads.subject_key(subject),
                customer,
                now - threads.SUBJECT_WINDOW,
            )
        created = thread_id is None
        if thread_id is None:
            thread_id = str(uuid.uuid4())
            self.repo.create_thread_in(
                conn,
                {
                    "id": thread_id,
                    "tenant_id": tenant_id,
                    "subject": subject[:500],
                    "subject_key": threads.subject_key(subject),
                    "customer_address": customer,
                    "waiting_on": "us" if direction == "inbound" else "customer",
                    "message_count": 0,
                    "created_at": now,
                    "last_message_at": now,
                },
            )
        self.repo.add_thread_keys_in(conn, tenant_id, thread_id, [*own_key, *related])
        thread = self.repo.lock_thread_in(conn, thread_id)
        assert thread is not None

        attachments = [p.filename or "" for p in structure.parts if p.is_attachment]
        parts = [
            {
                "content_type": p.content_type,
                "charset": p.charset,
                "filename": p.filename,
                "disposition": p.disposition,
                "transfer_encoding": p.transfer_encoding,
                "body_start": p.body_start,
                "body_end": p.body_end,
                "size": p.size,
                "sha256": p.sha256,
            }
            for p in structure.parts
        ]
        malformed = "; ".join(structure.defects)[:4000] or None
        details: dict[str, Any] = {
            "source": source.kind,
            "direction": direction,
            "thread_id": thread_id,
            "recipients": [*to, *cc][:100],
        }
        if raw_msg_id:
            details["message_id"] = _clip(raw_msg_id, 998)
        if subject:
            details["subject"] = subject[:500]
        sent_at = _sent_at(structure.header("date"))
        if sent_at is not None:
            details["date"] = sent_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        if malformed:
            details["malformed"] = malformed[:1000]
        if thread.owner_agent_id:
            details["owner_agent_id"] = thread.owner_agent_id
        if len(structure.parts) > MAX_PARTS_RECORDED:
            details["parts_not_listed"] = len(structure.parts) - MAX_PARTS_RECORDED
        record = new_record(
            tenant_id=tenant_id,
            event="Archived",
            subject=Subject("archive_message", message_id),
            event_time=now,
            sender=Party(sender) if sender else None,
            recipient=Party(to[0]) if to else None,
            application_identifier=_clip(raw_msg_id, 998) or None,
            content=ContentInfo(
                sha256=structure.sha256,
                size=structure.size,
                parts=tuple(
                    ContentPart(p.content_type, p.sha256, p.size, p.filename)
                    for p in structure.parts[:MAX_PARTS_RECORDED]
                ),
            ),
            details=details,
        )
        self.repo.insert_message_in(
            conn,
            {
                "id": message_id,
                "tenant_id": tenant_id,
                "sha256": structure.sha256,
                "size": structure.size,
                "message_id": _clip(raw_msg_id, 998) or None,
                "subject": subject,
                "from_address": sender[:320],
                "to_addresses": json.dumps(to[:500]),
                "cc_addresses": json.dumps(cc[:500]),
                "sent_at": sent_at,
                "archived_at": now,
                "direction": direction,
                "thread_id": thread_id,
                "has_attachments": bool(attachments),
                "attachment_names": json.dumps(attachments[:500]),
                "parts": json.dumps(parts),
                "malformed": malformed,
                "record_id": record.id,
                "source_kind": source.kind,
                "index_state": "pending",
            },
        )
        self.repo.add_sighting_in(
            conn,
            message_id=message_id,
            tenant_id=tenant_id,
            source_kind=source.kind,
            source_ref=ref,
            now=now,
        )
        events = []
        changes: dict[str, Any] = {
            "message_count": thread.message_count + 1,
            "last_message_at": now,
        }
        if direction == "inbound":
            changes.update(last_inbound_at=now, waiting_on="us")
            if thread.owner_agent_id and not created:
                self.repo.notify_in(
                    conn,
                    tenant_id=tenant_id,
                    agent_id=thread.owner_agent_id,
                    kind="customer_wrote",
                    text=f"{sender or 'The customer'} wrote again: {subject[:200]}",
                    now=now,
                    thread_id=thread_id,
                    message_id=message_id,
                )
                events.append(
                    new_event(
                        tenant_id=tenant_id,
                        type=CUSTOMER_WROTE,
                        subject_type="archive_thread",
                        subject_id=thread_id,
                        time=now,
                        data={
                            "thread_id": thread_id,
                            "archive_message_id": message_id,
                            "owner_agent_id": thread.owner_agent_id,
                            "to": [*to, *cc][:20],
                        },
                    )
                )
        elif direction == "outbound":
            changes.update(last_outbound_at=now, waiting_on="customer")
        self.repo.update_thread_in(conn, thread_id, **changes)
        records = [record]
        if direction == "outbound" and thread.owner_agent_id is None and sender:
            agent = self.repo.agent_by_email_in(conn, tenant_id, sender)
            if agent is not None:  # an agent answering an unassigned thread takes it
                team = thread.team_id if thread.team_id in agent.team_ids else None
                records.append(
                    self._assign_in(conn, thread, agent.id, team, "first_reply", now, None)
                )
        append_evidence(conn, records, events)
        row = self.repo.by_content_in(conn, tenant_id, structure.sha256)
        return Ingested(message_from_row(row), duplicate=False)

    @staticmethod
    def _direction(sender: str, recipients: Sequence[str], own: set[str]) -> str:
        """From one of the company's domains: outbound (internal when every recipient is the
        company's too); from anyone else: inbound.  No own domains known: inbound."""
        if sender and _domain(sender) in own:
            if recipients and all(_domain(r) in own for r in recipients):
                return "internal"
            return "outbound"
        return "inbound"

    @staticmethod
    def _customer(direction: str, sender: str, recipients: Sequence[str], own: set[str]) -> str:
        if direction == "inbound":
            return sender
        outside = [r for r in recipients if _domain(r) not in own]
        return (outside or [""])[0]

    # -- assignment ----------------------------------------------------------------------------

    def assign(
        self,
        viewer: Viewer,
        thread_id: str,
        *,
        agent_id: str | None,
        team_id: str | None,
        reason: str | None,
    ) -> Thread:
        """Give a thread to an agent or a team (a ThreadAssigned record).  Administrators and
        supervisors assign any thread; an agent may only take an unassigned thread for itself."""
        if viewer.role == "auditor":
            raise Forbidden("an auditor's key is read-only for threads")
        if agent_id is None and team_id is None:
            raise InvalidInput("agent_id or team_id: assign the thread to someone")
        now = self.clock()
        with write_transaction(self.engine) as conn:
            thread = self.repo.lock_thread_in(conn, thread_id)
            if thread is None or thread.tenant_id != viewer.tenant_id:
                raise NotFound(f"no thread {thread_id}")
            if viewer.role == "agent":
                assert viewer.agent is not None
                if agent_id != viewer.agent.id or team_id is not None:
                    raise Forbidden("an agent may only take a thread for itself")
                if thread.owner_agent_id not in (None, viewer.agent.id):
                    raise Conflict("this thread has an owner: ask a supervisor to reassign it")
            if agent_id is not None:
                agent = self.repo.agent_in(conn, viewer.tenant_id, agent_id)
                if agent is None or agent.disabled_at is not None:
                    raise InvalidInput(f"agent_id: no active agent {agent_id}")
                if viewer.role == "agent" and thread.team_id in agent.team_ids:
                    # an agent taking its team's thread: the thread stays the team's (its
                    # queue, its SLA policy, a reassignment back to the team)
                    team_id = thread.team_id
            if team_id is not None and self.repo.team_in(conn, viewer.tenant_id, team_id) is None:
                raise InvalidInput(f"team_id: no team {team_id}")
            actor = viewer.agent.id if viewer.agent else None
            record = self._assign_in(
                conn, thread, agent_id, team_id, "assigned", now, actor, reason
            )
            append_evidence(conn, [record])
            found = self.repo.lock_thread_in(conn, thread_id)
        assert found is not None
        return found

    def _assign_in(
        self,
        conn: Connection,
        thread: Thread,
        agent_id: str | None,
        team_id: str | None,
        reason: str,
        now: datetime,
        actor_agent_id: str | None,
        reason_text: str | None = None,
    ) -> EvidenceRecord:
        """Move the thread and notify the new owner; returns the ThreadAssigned record (the
        caller appends it)."""
        self.repo.update_thread_in(conn, thread.id, owner_agent_id=agent_id, team_id=team_id)
        if agent_id is not None and agent_id != thread.owner_agent_id and reason != "first_reply":
            self.repo.notify_in(
                conn,
                tenant_id=thread.tenant_id,
                agent_id=agent_id,
                kind="thread_assigned",
                text=f"A thread was assigned to you: {thread.subject[:200]}",
                now=now,
                thread_id=thread.id,
            )
        details: dict[str, Any] = {"thread_id": thread.id, "reason": reason}
        if agent_id is not None:
            details["owner_agent_id"] = agent_id
        if team_id is not None:
            details["team_id"] = team_id
        if thread.owner_agent_id is not None:
            details["previous_owner_agent_id"] = thread.owner_agent_id
        if actor_agent_id is not None:
            details["assigned_by_agent_id"] = actor_agent_id
        if reason_text:
            details["reason_text"] = reason_text[:500]
        return new_record(
            tenant_id=thread.tenant_id,
            event="ThreadAssigned",
            subject=Subject("archive_thread", thread.id),
            event_time=now,
            details=details,
        )

    # -- agents, teams, settings ---------------------------------------------------------------

    def create_agent(
        self, tenant_id: str, *, email: str, name: str, role: str
    ) -> tuple[Agent, IssuedApiKey]:
        """A new agent and its API key (shown once)."""
        email = email.strip().lower()
        if role not in ROLES:
            raise InvalidInput(f"role: one of {', '.join(ROLES)}")
        if "@" not in email or len(email) > 320:
            raise InvalidInput("email: an email address")
        now = self.clock()
        agent_id = str(uuid.uuid4())
        try:
            with write_transaction(self.engine) as conn:
                self.repo.insert_agent_in(
                    conn,
                    {
                        "id": agent_id,
                        "tenant_id": tenant_id,
                        "email": email,
                        "name": name.strip()[:200] or email,
                        "role": role,
                        "created_at": now,
                    },
                )
                key = TenantRepository.issue_api_key_in(
                    conn, tenant_id, f"archive agent {email}", agent_id=agent_id
                )
                agent = self.repo.agent_in(conn, tenant_id, agent_id)
                append_evidence(
                    conn,
                    [
                        _access_record(
                            tenant_id,
                            "AgentChanged",
                            Subject("archive_agent", agent_id),
                            now,
                            {"change": "created", "email": email, "role": role},
                        )
                    ],
                )
        except IntegrityError:
            raise Conflict(f"an agent with the email {email} exists") from None
        assert agent is not None
        return agent, key

    def update_agent(
        self,
        tenant_id: str,
        agent_id: str,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        new_key: bool = False,
    ) -> tuple[Agent, IssuedApiKey | None]:
        if role is not None and role not in ROLES:
            raise InvalidInput(f"role: one of {', '.join(ROLES)}")
        now = self.clock()
        key = None
        with write_transaction(self.engine) as conn:
            agent = self.repo.agent_in(conn, tenant_id, agent_id)
            if agent is None:
                raise NotFound(f"no agent {agent_id}")
            values: dict[str, Any] = {}
            if role is not None:
                values["role"] = role
            if disabled is True and agent.disabled_at is None:
                values["disabled_at"] = now
                TenantRepository.revoke_agent_keys_in(conn, tenant_id, agent_id)
            elif disabled is False:
                values["disabled_at"] = None
            if values:
                self.repo.update_agent_in(conn, agent_id, **values)
            if new_key:
                if disabled or (agent.disabled_at is not None and disabled is not False):
                    raise Conflict("a disabled agent gets no key")
                TenantRepository.revoke_agent_keys_in(conn, tenant_id, agent_id)
                key = TenantRepository.issue_api_key_in(
                    conn, tenant_id, f"archive agent {agent.email}", agent_id=agent_id
                )
            changes = []
            if role is not None and role != agent.role:
                changes.append({"change": "role", "role": role, "previous_role": agent.role})
            if "disabled_at" in values and values["disabled_at"] is not None:
                changes.append({"change": "disabled"})
            elif "disabled_at" in values and agent.disabled_at is not None:
                changes.append({"change": "enabled"})
            if new_key:
                changes.append({"change": "new_key"})  # the old keys revoked
            append_evidence(
                conn,
                [
                    _access_record(
                        tenant_id,
                        "AgentChanged",
                        Subject("archive_agent", agent_id),
                        now,
                        {**change, "email": agent.email},
                    )
                    for change in changes
                ],
            )
            found = self.repo.agent_in(conn, tenant_id, agent_id)
        assert found is not None
        return found, key

    def create_team(self, tenant_id: str, name: str, agent_ids: Sequence[str]) -> Team:
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("name: 1 to 200 characters")
        team_id = str(uuid.uuid4())
        try:
            with write_transaction(self.engine) as conn:
                self._check_agents_in(conn, tenant_id, agent_ids)
                self.repo.insert_team_in(
                    conn,
                    {
                        "id": team_id,
                        "tenant_id": tenant_id,
                        "name": name,
                        "created_at": self.clock(),
                    },
                )
                self.repo.set_members_in(conn, team_id, agent_ids)
                team = self.repo.team_in(conn, tenant_id, team_id)
                assert team is not None
                append_evidence(conn, [_team_record(team, "created", self.clock())])
        except IntegrityError:
            raise Conflict(f"a team named {name!r} exists") from None
        assert team is not None
        return team

    def set_team_members(self, tenant_id: str, team_id: str, agent_ids: Sequence[str]) -> Team:
        with write_transaction(self.engine) as conn:
            if self.repo.team_in(conn, tenant_id, team_id) is None:
                raise NotFound(f"no team {team_id}")
            self._check_agents_in(conn, tenant_id, agent_ids)
            self.repo.set_members_in(conn, team_id, agent_ids)
            team = self.repo.team_in(conn, tenant_id, team_id)
            assert team is not None
            append_evidence(conn, [_team_record(team, "members", self.clock())])
        return team

    def _check_agents_in(self, conn: Connection, tenant_id: str, agent_ids: Sequence[str]) -> None:
        for i, agent_id in enumerate(agent_ids):
            if self.repo.agent_in(conn, tenant_id, agent_id) is None:
                raise InvalidInput(f"agent_ids.{i}: no agent {agent_id}")

    def settings(self, tenant_id: str) -> Any:
        with write_transaction(self.engine) as conn:
            return self.repo.settings_in(conn, tenant_id, self.clock())

    def update_settings(
        self,
        tenant_id: str,
        *,
        retention_days: int | None = None,
        clear_retention: bool = False,
        own_domains: Sequence[str] | None = None,
        rotate_journal_token: bool = False,
        changed_by: str = "admin",
    ) -> Any:
        """A change of retention is a ``RetentionChanged`` record (who, from, to): it decides
        what the purge removes.  A new journal token is a ``JournalAddressRotated`` record
        (who, when; never a token): from its commit the old address is refused at RCPT.
        ``changed_by``: ``admin`` or ``agent:<id>``."""
        values: dict[str, Any] = {}
        if rotate_journal_token:
            values["journal_token"] = secrets.token_hex(16)
        if retention_days is not None:
            if not RETENTION_FLOOR_DAYS <= retention_days <= 36_500:
                raise InvalidInput(
                    f"retention_days: {RETENTION_FLOOR_DAYS} to 36500 (or null: keep forever)"
                )
            values["retention_days"] = retention_days
        elif clear_retention:
            values["retention_days"] = None
        if own_domains is not None:
            cleaned = sorted({d.strip().lower().rstrip(".") for d in own_domains if d.strip()})
            for i, d in enumerate(cleaned):
                if "." not in d or len(d) > 253 or "@" in d or " " in d:
                    raise InvalidInput(f"own_domains.{i}: a domain name such as example.com")
            values["own_domains"] = json.dumps(cleaned)
        now = self.clock()
        with write_transaction(self.engine) as conn:
            before = self.repo.settings_in(conn, tenant_id, now).retention_days
            row = self.repo.update_settings_in(conn, tenant_id, now, **values)
            if "retention_days" in values and values["retention_days"] != before:
                record = new_record(
                    tenant_id=tenant_id,
                    event="RetentionChanged",
                    subject=Subject("archive_settings", tenant_id),
                    event_time=now,
                    details={
                        "previous_retention_days": before,
                        "retention_days": values["retention_days"],
                        "changed_by": changed_by,
                    },
                )
                append_evidence(conn, [record])
            if rotate_journal_token:
                rotated = new_record(
                    tenant_id=tenant_id,
                    event="JournalAddressRotated",
                    subject=Subject("archive_settings", tenant_id),
                    event_time=now,
                    details={"changed_by": changed_by},
                )
                append_evidence(conn, [rotated])
            return row

    def viewer(self, tenant_id: str, agent_id: str | None) -> Viewer:
        """Who a key is: the administrator, or an active agent (its key is revoked when it is
        disabled, so a disabled agent never gets here; checked anyway)."""
        if agent_id is None:
            return Viewer(tenant_id)
        agent = self.repo.agent(tenant_id, agent_id)
        if agent is None or agent.disabled_at is not None:
            raise Forbidden("this agent is disabled")
        return Viewer(tenant_id, agent)

    def message(self, viewer: Viewer, message_id: str) -> ArchivedMessage:
        found = self.repo.message(viewer, message_id)
        if found is None:
            raise NotFound(f"no archived message {message_id}")
        return found

    def raw(self, viewer: Viewer, message_id: str) -> tuple[ArchivedMessage, BinaryIO]:
        """The message and its exact bytes to stream; 410 once purged after retention."""
        message = self.message(viewer, message_id)
        if message.purged_at is not None:
            raise Gone("this message was purged after its retention period (its record stays)")
        return message, self.blobs.open(message.sha256)


def _access_record(
    tenant_id: str, event: str, subject: Subject, now: datetime, details: dict[str, Any]
) -> EvidenceRecord:
    """Who may see what changed: an agent created, given another role, disabled, enabled or
    re-keyed; a team made or its members changed.  An auditor asking "who could read this
    thread on that day" gets the answer from the sealed log, not from today's rows."""
    return new_record(
        tenant_id=tenant_id, event=event, subject=subject, event_time=now, details=details
    )


def _team_record(team: Team, change: str, now: datetime) -> EvidenceRecord:
    return _access_record(
        team.tenant_id,
        "TeamChanged",
        Subject("archive_team", team.id),
        now,
        {"change": change, "name": team.name, "agent_ids": sorted(team.agent_ids)},
    )
