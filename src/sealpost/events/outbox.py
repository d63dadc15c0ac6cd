"""The transactional outbox: the events of a state change, committed with the change itself.

``append_evidence`` is how every repository writes evidence: the records *and* the events they
imply (``events.registry``), in the caller's transaction.  A change therefore never commits
without its event, and an event never exists for a change that rolled back: nothing is lost
between "the database says delivered" and "the integrator heard it", whatever crashes when.

Each event gets its subject's next *sequence* number (1, 2, 3... per communication) from a
counter row locked by the upsert, so two transactions on the same subject are serialised and
commit in sequence order (a subject's opening event, always number 1, needs no counter).

Events are written without a *position*; the dispatcher (one at a time, under the
``events-dispatcher`` lease) gives committed events consecutive positions in the order it
finds them.  Positions are what consumers page by (``GET /v1/events?after=``)
and what the AMQP publisher's cursor counts: unlike insertion ids on PostgreSQL, they never
reveal a later event before an earlier one that committed late.

Every index of the table grows at its right end (event ids are UUIDv7, time-ordered): an
index on random keys would dirty one page per event in the transaction that accepts a
message, and acceptance is the hot path.
"""

from __future__ import annotations

import functools
import json
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    TextClause,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)

from sealpost.db import leases
from sealpost.db.engine import after_commit, is_sqlite, write_transaction
from sealpost.errors import SealpostError
from sealpost.events.cloudevents import encode, envelope
from sealpost.events.registry import (
    REGISTRY,
    NewEvent,
    events_for_records,
)
from sealpost.events.tables import outbox_cursors, outbox_events, webhook_deliveries
from sealpost.ledger.records import EvidenceRecord
from sealpost.ledger.repository import SqlLogStorage, as_utc

DISPATCHER_LEASE = "events-dispatcher"
AMQP_CURSOR = "amqp"
PURGED_CURSOR = "purged"  # the highest position retention deleted: older pull cursors are gone
PURGE_BATCH = 2000
_CHUNK = 500


class LeaseLost(SealpostError):
    """The dispatcher lease changed hands: this process must stop positioning."""

    code = "lease_lost"
    title = "Another process took over this job"


@dataclass(frozen=True)
class StoredEvent:
    id: str
    tenant_id: str
    type: str
    subject: str
    sequence: int
    time: datetime
    record_id: str | None
    payload: str
    """The CloudEvent, exactly the JSON text that is published, posted and signed."""
    position: int | None

    def cloudevent(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.payload)
        return loaded


@dataclass(frozen=True)
class PositionedEvent:
    id: str
    tenant_id: str
    type: str
    subject: str
    position: int


def _subject(subject_type: str, subject_id: str) -> str:
    return f"{REGISTRY.collection(subject_type)}/{subject_id}"


def _stored(row: Any) -> StoredEvent:
    return StoredEvent(
        id=row.id,
        tenant_id=row.tenant_id,
        type=row.type,
        subject=_subject(row.subject_type, row.subject_id),
        sequence=row.sequence,
        time=as_utc(row.time),
        record_id=row.record_id,
        payload=row.payload,
        position=row.position,
    )


_COLUMNS = [
    outbox_events.c[name]
    for name in (
        "id",
        "tenant_id",
        "type",
        "subject_type",
        "subject_id",
        "sequence",
        "time",
        "record_id",
        "payload",
        "position",
    )
]


# -- writing, inside the state change's transaction ----------------------------------------


def append_evidence(
    conn: Connection, records: Sequence[EvidenceRecord], events: Sequence[NewEvent] = ()
) -> None:
    """Evidence records, the events they imply and ``events``, in the caller's transaction."""
    SqlLogStorage.append_in(conn, records)
    add_events_in(conn, [*events_for_records(records), *events])


_COMMITTED: weakref.WeakKeyDictionary[Engine, threading.Event] = weakref.WeakKeyDictionary()
_COMMITTED_GUARD = threading.Lock()


def committed_signal(engine: Engine) -> threading.Event:
    """Set whenever a transaction of this process committed events to ``engine``: the
    dispatcher of the same process wakes at once instead of waiting for its poll."""
    with _COMMITTED_GUARD:
        signal = _COMMITTED.get(engine)
        if signal is None:
            signal = _COMMITTED[engine] = threading.Event()
        return signal


def add_events_in(conn: Connection, events: Sequence[NewEvent]) -> None:
    if not events:
        return
    after_commit(conn, committed_signal(conn.engine).set)
    sequences = _reserve_sequences(conn, events)
    conn.execute(
        insert(outbox_events),
        [
            {
                "id": event.id,
                "tenant_id": event.tenant_id,
                "type": event.type,
                "subject_type": event.subject_type,
                "subject_id": event.subject_id,
                "sequence": sequence,
                "time": event.time,
                "record_id": event.record_id,
                "payload": encode(envelope(event, sequence)),
            }
            for event, sequence in zip(events, sequences, strict=True)
        ],
    )


def _reserve_sequences(conn: Connection, events: Sequence[NewEvent]) -> list[int]:
    """Each event's sequence number within its subject.

    An *opening* event (``EventKind.opens_subject``: accepted, rejected) is its subject's first
    by construction: it is number 1 and needs no counter, so accepting a message writes no
    counter row at all.  Other events take the next numbers from the subject's counter row,
    locked by one multi-row upsert per chunk (``ON CONFLICT DO UPDATE ... RETURNING``, on
    PostgreSQL and SQLite alike), keys sorted so that two transactions never lock the same rows
    in opposite orders.  For a subject type that always opens with such an event, the counter
    counts the events *after* the opening one.
    """
    sequences: list[int | None] = [None] * len(events)
    opened: set[tuple[str, str]] = set()
    counts: Counter[tuple[str, str]] = Counter()
    for index, event in enumerate(events):
        key = (event.subject_type, event.subject_id)
        if _opens(event.type) and key not in opened and key not in counts:
            sequences[index] = 1
            opened.add(key)
        else:
            counts[key] += 1
    keys = sorted(counts)
    last: dict[tuple[str, str], int] = {}
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        parameters: dict[str, object] = {}
        for i, key in enumerate(chunk):
            parameters.update({f"t{i}": key[0], f"i{i}": key[1], f"n{i}": counts[key]})
        for row in conn.execute(_upsert_counters(len(chunk)), parameters):
            opener = 1 if REGISTRY.opens(row.subject_type) else 0
            last[(row.subject_type, row.subject_id)] = row.last_sequence + opener
    following = {key: last[key] - counts[key] + 1 for key in keys}
    out = []
    for event, sequence in zip(events, sequences, strict=True):
        if sequence is None:
            key = (event.subject_type, event.subject_id)
            sequence = following[key]
            following[key] += 1
        out.append(sequence)
    return out


@functools.cache
def _upsert_counters(rows: int) -> TextClause:
    """The upsert of ``rows`` counters, as SQL both SQLite and PostgreSQL speak, built once per
    size (SQLAlchemy compiles a multi-row INSERT construct again on every call)."""
    values = ", ".join(f"(:t{i}, :i{i}, :n{i})" for i in range(rows))  # placeholders only
    return text(
        "INSERT INTO event_subjects (subject_type, subject_id, last_sequence) "  # noqa: S608
        f"VALUES {values} ON CONFLICT (subject_type, subject_id) DO UPDATE "
        "SET last_sequence = event_subjects.last_sequence + excluded.last_sequence "
        "RETURNING subject_type, subject_id, last_sequence"
    )


def _raise_cursor_in(conn: Connection, name: str, position: int) -> None:
    """Move a cursor up to ``position`` (never down), creating it if needed."""
    c = outbox_cursors.c
    found = conn.execute(select(c.position).where(c.name == name)).first()
    if found is None:
        conn.execute(insert(outbox_cursors).values(name=name, position=position))
    elif found.position < position:
        conn.execute(update(outbox_cursors).where(c.name == name).values(position=position))


# -- the dispatcher and the readers ----------------------------------------------------------


class OutboxRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, events: Sequence[NewEvent]) -> None:
        with write_transaction(self.engine) as conn:
            add_events_in(conn, events)

    def has_unpositioned(self) -> bool:
        """A cheap read (partial index) so that an idle dispatcher never takes the write lock."""
        o = outbox_events.c
        with self.engine.connect() as conn:
            return (
                conn.execute(select(o.seq).where(o.position.is_(None)).limit(1)).first() is not None
            )

    def position_new(
        self,
        holder: str,
        *,
        limit: int,
        on_positioned: Callable[[Connection, list[PositionedEvent]], None] | None = None,
    ) -> list[PositionedEvent]:
        """Give committed events without a position the next positions, oldest first, and
        let ``on_positioned`` (webhook fan-out) write in the same transaction.

        Fenced: raises :class:`LeaseLost` unless ``holder`` holds the dispatcher lease, and the
        unique index on ``position`` refuses a second writer's batch whole.
        """
        o = outbox_events.c
        with write_transaction(self.engine) as conn:
            if not leases.held_in(conn, DISPATCHER_LEASE, holder):
                raise LeaseLost("the events dispatcher lease is held by another process")
            rows = conn.execute(
                select(o.seq, o.id, o.tenant_id, o.type, o.subject_type, o.subject_id)
                .where(o.position.is_(None))
                .order_by(o.seq)
                .limit(limit)
            ).all()
            if not rows:
                return []
            top = int(conn.execute(select(func.max(o.position))).scalar() or 0)
            positioned = [
                PositionedEvent(
                    r.id, r.tenant_id, r.type, _subject(r.subject_type, r.subject_id), top + i
                )
                for i, r in enumerate(rows, start=1)
            ]
            if is_sqlite(conn):
                conn.execute(
                    update(outbox_events)
                    .where(o.seq == bindparam("b_seq"))
                    .values(position=bindparam("b_position")),
                    [{"b_seq": r.seq, "b_position": top + i} for i, r in enumerate(rows, 1)],
                )
            else:
                conn.execute(
                    text(
                        "UPDATE outbox_events AS e SET position = v.position FROM unnest("
                        "CAST(:seqs AS bigint[]), CAST(:positions AS bigint[])) "
                        "AS v(seq, position) WHERE e.seq = v.seq"
                    ),
                    {
                        "seqs": [r.seq for r in rows],
                        "positions": [p.position for p in positioned],
                    },
                )
            if on_positioned is not None:
                on_positioned(conn, positioned)
        return positioned

    # -- cursors (AMQP publishing) --------------------------------------------------------------

    def cursor(self, name: str) -> int:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(outbox_cursors.c.position).where(outbox_cursors.c.name == name)
            ).scalar()
        return int(found or 0)

    def advance_cursor(self, name: str, expected: int, new: int) -> bool:
        """Compare-and-set: a stale dispatcher can never move a cursor backwards."""
        c = outbox_cursors.c
        with write_transaction(self.engine) as conn:
            moved = conn.execute(
                update(outbox_cursors)
                .where(c.name == name, c.position == expected)
                .values(position=new)
            ).rowcount
            if moved:
                return True
            exists = conn.execute(select(c.position).where(c.name == name)).first()
            if exists is None and expected == 0:
                conn.execute(insert(outbox_cursors).values(name=name, position=new))
                return True
        return False

    def after(self, position: int, limit: int) -> list[StoredEvent]:
        """Positioned events after ``position``, every tenant, in position order."""
        o = outbox_events.c
        query = select(*_COLUMNS).where(o.position > position).order_by(o.position).limit(limit)
        with self.engine.connect() as conn:
            return [_stored(r) for r in conn.execute(query)]

    def follow(self, name: str, limit: int, handle: Callable[[StoredEvent], None]) -> int:
        """One round of an in-process follower (the sequences' stops, the deadlines' terms):
        hand each of up to ``limit`` events after cursor ``name`` to ``handle``, then move the
        cursor past them.  Returns how many were read; 0 also when another process moved the
        cursor first (it handled the same events: handlers are idempotent)."""
        position = self.cursor(name)
        events = self.after(position, limit)
        if not events:
            return 0
        for event in events:
            handle(event)
        last = events[-1].position
        assert last is not None
        if not self.advance_cursor(name, position, last):
            return 0
        return len(events)

    # -- retention ----------------------------------------------------------------------------

    def purge_before(self, cutoff: datetime, *, published_up_to: int | None = None) -> int:
        """Delete events whose time is before ``cutoff``, oldest position first, one batch per
        transaction (SQLite writers wait for one batch, not for the whole purge).

        Kept whatever their age: the newest event (positions continue from it), any after
        ``published_up_to`` (RabbitMQ has not confirmed them yet), and any a webhook delivery
        still retries.  The walk follows positions and stops at the first recent event, so an
        hourly purge with nothing to do reads one row, not the table.
        """
        o, d = outbox_events.c, webhook_deliveries.c
        purged, last = 0, 0
        while True:
            with write_transaction(self.engine) as conn:
                top = conn.execute(select(func.max(o.position))).scalar()
                if top is None:
                    return purged
                bound = top - 1 if published_up_to is None else min(top - 1, published_up_to)
                rows = conn.execute(
                    select(o.seq, o.id, o.position, o.time)
                    .where(o.position > last, o.position <= bound)
                    .order_by(o.position)
                    .limit(PURGE_BATCH)
                ).all()
                old = []
                for row in rows:
                    if as_utc(row.time) >= cutoff:
                        break
                    old.append(row)
                if not old:
                    return purged
                retried = set(  # events a webhook delivery still retries
                    conn.execute(
                        select(d.event_id).where(
                            d.event_id.in_([r.id for r in old]), d.state == "pending"
                        )
                    ).scalars()
                )
                doomed = [r for r in old if r.id not in retried]
                if doomed:
                    conn.execute(delete(outbox_events).where(o.seq.in_([r.seq for r in doomed])))
                    _raise_cursor_in(conn, PURGED_CURSOR, max(r.position for r in doomed))
                purged += len(doomed)
                last = old[-1].position
            if len(old) < len(rows) or len(rows) < PURGE_BATCH:
                return purged

    # -- the API's reads ---------------------------------------------------------------------

    def page(
        self,
        tenant_id: str,
        *,
        after: int = 0,
        limit: int = 100,
        types: Sequence[str] = (),
    ) -> list[StoredEvent]:
        """A tenant's positioned events after ``after``, oldest first (the pull API)."""
        o = outbox_events.c
        query = select(*_COLUMNS).where(o.tenant_id == tenant_id, o.position > after)
        if types:
            query = query.where(o.type.in_(list(types)))
        with self.engine.connect() as conn:
            return [_stored(r) for r in conn.execute(query.order_by(o.position).limit(limit))]

    def get(self, tenant_id: str, event_id: str) -> StoredEvent | None:
        o = outbox_events.c
        query = select(*_COLUMNS).where(o.tenant_id == tenant_id, o.id == event_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _stored(row)

    def positioned(
        self,
        tenant_id: str,
        *,
        event_ids: Sequence[str] = (),
        time_from: datetime | None = None,
        time_to: datetime | None = None,
        types: Sequence[str] = (),
        limit: int,
    ) -> list[PositionedEvent]:
        """A tenant's positioned events by id or by time range (replay), in position order."""
        o = outbox_events.c
        query = select(o.id, o.tenant_id, o.type, o.subject_type, o.subject_id, o.position).where(
            o.tenant_id == tenant_id, o.position.is_not(None)
        )
        if event_ids:
            query = query.where(o.id.in_(list(event_ids)))
        if time_from is not None:
            query = query.where(o.time >= time_from)
        if time_to is not None:
            query = query.where(o.time < time_to)
        if types:
            query = query.where(o.type.in_(list(types)))
        with self.engine.connect() as conn:
            return [
                PositionedEvent(
                    r.id, r.tenant_id, r.type, _subject(r.subject_type, r.subject_id), r.position
                )
                for r in conn.execute(query.order_by(o.position).limit(limit))
            ]

    def backlog(self, cap: int | None = None) -> dict[str, int]:
        """Operations: events waiting for a position (counted up to ``cap`` when given: a
        bounded query while a backlog grows), and the AMQP publisher's lag."""
        o = outbox_events.c
        waiting = select(o.seq).where(o.position.is_(None))
        if cap is not None:
            waiting = waiting.limit(cap)
        with self.engine.connect() as conn:
            unpositioned = conn.execute(
                select(func.count()).select_from(waiting.subquery())
            ).scalar_one()
            top = conn.execute(select(func.max(o.position))).scalar() or 0
        return {
            "unpositioned": int(unpositioned),
            "last_position": int(top),
            "amqp_cursor": self.cursor(AMQP_CURSOR),
        }

    def oldest_unpositioned_time(self) -> datetime | None:
        """When the oldest event still waiting for its position happened (the events lag:
        ``ix_outbox_events_unpositioned``, one row read)."""
        o = outbox_events.c
        query = select(o.time).where(o.position.is_(None)).order_by(o.seq).limit(1)
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar_one_or_none()
        return None if found is None else as_utc(found)


def _opens(event_type: str) -> bool:
    kind = REGISTRY.kind(event_type)
    return kind is not None and kind.opens_subject
