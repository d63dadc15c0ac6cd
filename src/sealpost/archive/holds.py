"""Legal holds: while a hold is active, no message it covers is purged after retention.

A hold covers a thread (its later messages too), a customer's address (every message from or
to it, later ones too) or a search query (the messages it matched when placed, frozen; the
purge also re-evaluates the query, so a message that matches it later is kept as well).
Placing and releasing a hold are acts of a named person with a reason: each is an evidence
record (``LegalHoldPlaced`` / ``LegalHoldReleased``) with its event, in the same transaction.
Administrators, supervisors and auditors may place and release holds; agents may not (a hold
exists to protect mail from the people who handled it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine

from sealpost.archive.hold_repository import HoldRepository
from sealpost.archive.model import HOLD_KINDS, Hold, Viewer
from sealpost.archive.queries import QueryMatcher, SearchQuery
from sealpost.archive.repository import ArchiveRepository
from sealpost.db.engine import write_transaction
from sealpost.errors import Conflict, Forbidden, InvalidInput, NotFound
from sealpost.events.outbox import append_evidence
from sealpost.ledger.records import Subject, new_record

HOLD_ROLES = ("admin", "supervisor", "auditor")
"""Who may place and release legal holds, and export."""


def actor(viewer: Viewer) -> str:
    """How a hold or an export names who acted: ``admin`` or ``agent:<id>``."""
    return "admin" if viewer.agent is None else f"agent:{viewer.agent.id}"


def actor_words(viewer: Viewer) -> str:
    """Who acted, for a person to read (a report): name, address and role of an agent."""
    if viewer.agent is None:
        return "the tenant's administrator (its API key)"
    a = viewer.agent
    return f"{a.name} <{a.email}>, {a.role} (agent {a.id})"


def may_hold(viewer: Viewer) -> None:
    if viewer.role not in HOLD_ROLES:
        raise Forbidden(
            f"legal holds and exports need one of these roles: {', '.join(HOLD_ROLES)} "
            f"(this key is {viewer.role})"
        )


class HoldService:
    def __init__(
        self,
        repo: HoldRepository,
        archive: ArchiveRepository,
        matcher: QueryMatcher,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repo = repo
        self.archive = archive
        self.matcher = matcher
        self.clock = clock

    @property
    def engine(self) -> Engine:
        return self.repo.engine

    def place(
        self,
        viewer: Viewer,
        *,
        kind: str,
        reason: str,
        thread_id: str | None = None,
        address: str | None = None,
        query: SearchQuery | None = None,
    ) -> Hold:
        may_hold(viewer)
        reason = reason.strip()
        if not reason:
            raise InvalidInput("reason: say why the mail is held (a case, a claim, a request)")
        if kind not in HOLD_KINDS:
            raise InvalidInput(f"kind: one of {', '.join(HOLD_KINDS)}")
        given = {"thread": thread_id, "address": address, "query": query}
        if given[kind] is None or any(v is not None for k, v in given.items() if k != kind):
            raise InvalidInput(f"a {kind} hold takes {kind if kind != 'thread' else 'thread_id'}")
        tenant_id = viewer.tenant_id
        frozen: list[str] = []
        details: dict[str, Any] = {"kind": kind, "reason": reason[:2000], "placed_by": ""}
        if kind == "thread":
            assert thread_id is not None
            if self.archive.thread(viewer, thread_id) is None:
                raise NotFound(f"no thread {thread_id}")
            details["thread_id"] = thread_id
        elif kind == "address":
            assert address is not None
            address = address.strip().lower()
            if address.count("@") != 1 or len(address) > 320 or " " in address:
                raise InvalidInput("address: one email address")
            details["address"] = address
        else:
            assert query is not None
            frozen = self.matcher.matching_ids(tenant_id, query)
            details["query"] = query.to_json()
            details["matched"] = len(frozen)
        now = self.clock()
        hold_id = str(uuid.uuid4())
        details["placed_by"] = actor(viewer)
        record = new_record(
            tenant_id=tenant_id,
            event="LegalHoldPlaced",
            subject=Subject("archive_hold", hold_id),
            event_time=now,
            details=details,
        )
        with write_transaction(self.engine) as conn:
            self.archive.settings_in(conn, tenant_id, now)
            self.repo.lock_tenant_in(conn, tenant_id)  # a purge running now sees it or ends first
            self.repo.insert_hold_in(
                conn,
                {
                    "id": hold_id,
                    "tenant_id": tenant_id,
                    "kind": kind,
                    "thread_id": thread_id,
                    "address": address,
                    "query": query.to_json() if query else None,
                    "reason": reason[:2000],
                    "placed_by": actor(viewer),
                    "placed_at": now,
                    "placed_record_id": record.id,
                },
                frozen,
            )
            append_evidence(conn, [record])
            hold = self.repo.hold_in(conn, tenant_id, hold_id)
        assert hold is not None
        return hold

    def release(self, viewer: Viewer, hold_id: str, reason: str) -> Hold:
        may_hold(viewer)
        reason = reason.strip()
        if not reason:
            raise InvalidInput("reason: say why the hold ends (case closed, claim withdrawn)")
        now = self.clock()
        with write_transaction(self.engine) as conn:
            hold = self.repo.hold_in(conn, viewer.tenant_id, hold_id)
            if hold is None:
                raise NotFound(f"no legal hold {hold_id}")
            if not hold.active:
                raise Conflict(f"legal hold {hold_id} was released already")
            record = new_record(
                tenant_id=viewer.tenant_id,
                event="LegalHoldReleased",
                subject=Subject("archive_hold", hold_id),
                event_time=now,
                details={
                    "kind": hold.kind,
                    "reason": reason[:2000],
                    "released_by": actor(viewer),
                    "placed_record_id": hold.placed_record_id,
                },
            )
            if not self.repo.release_in(
                conn,
                hold_id,
                released_at=now,
                released_by=actor(viewer),
                release_reason=reason[:2000],
                released_record_id=record.id,
            ):
                raise Conflict(f"legal hold {hold_id} was released already")
            append_evidence(conn, [record])
            found = self.repo.hold_in(conn, viewer.tenant_id, hold_id)
        assert found is not None
        return found

    def get(self, viewer: Viewer, hold_id: str) -> Hold:
        may_hold(viewer)
        found = self.repo.hold(viewer.tenant_id, hold_id)
        if found is None:
            raise NotFound(f"no legal hold {hold_id}")
        return found

    def list_holds(self, viewer: Viewer, *, active_only: bool, limit: int) -> list[Hold]:
        may_hold(viewer)
        return self.repo.holds(viewer.tenant_id, active_only=active_only, limit=limit)

    def covered_ids(self, tenant_id: str, hold: Hold) -> list[str]:
        """Every message the hold covers now, oldest first (a query hold: the frozen list
        and what the query matches now)."""
        with self.engine.connect() as conn:
            found = self.repo.covered_ids_in(conn, tenant_id, hold)
        if hold.kind == "query" and hold.query:
            found |= set(self.matcher.matching_ids(tenant_id, SearchQuery.from_json(hold.query)))
        with self.engine.connect() as conn:
            return [r.id for r in self.repo.message_rows_in(conn, sorted(found))]

    def held_among(self, conn: Connection, tenant_id: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` an active hold covers, read in the purge's transaction after it
        locked the tenant (see :meth:`HoldRepository.lock_tenant_in`): a hold being placed
        either committed before, and is seen, or waits for the purge to end."""
        held: set[str] = set()
        for hold in self.repo.active_holds_in(conn, tenant_id):
            held |= self.repo.covered_ids_in(conn, tenant_id, hold, ids)
            if hold.kind == "query" and hold.query:
                query = SearchQuery.from_json(hold.query)
                held |= set(self.matcher.matching_ids(tenant_id, query, among=ids))
                # a message not indexed yet cannot be found by its text: kept until it is
                held |= self.repo.unindexed_among_in(conn, ids)
        return held
