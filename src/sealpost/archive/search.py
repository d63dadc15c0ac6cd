"""Full-text search of the archive, accent- and case-insensitive, and the indexer behind it.

The index (migration 0021) holds, per archived message, its subject, body text and the names
and text of its attachments (``extract.py``):

* SQLite: an FTS5 table with ``tokenize = "unicode61 remove_diacritics 2"`` (sqlite.org/fts5,
  §4.3.1: case folding and diacritics removed, "garantia" matches "garantía");
* PostgreSQL: a table whose ``document`` is a generated ``tsvector`` of the ``simple``
  configuration over ``archive_unaccent(...)`` (an immutable wrapper of ``unaccent``: generated
  columns need immutable expressions), with a GIN index.  ``simple``, not ``spanish``: a stemmer
  misses "notificacion" -> "notificaciones"; a prefix query does not.

Every query word is a prefix (FTS5 ``"word"*``, PostgreSQL ``'word':*``) once it has
:data:`PREFIX_MIN` characters; shorter words match whole words.  Words are AND-ed.  User input
never reaches either query language as syntax: it is cut into words (letters and digits), each
quoted, so quotes, ``OR``, ``NEAR(``, ``*`` or parentheses cannot break or widen a query.

Results are what the viewer may see (``repository.visible_messages``), of its tenant only,
newest first.  :meth:`ArchiveSearch.matching_ids` gives other parts (legal hold by query,
export of a query) the same matching without HTTP.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from sealpost.archive.extract import Extracted, Extractor, PdfLimits, Problem, clean
from sealpost.archive.model import DIRECTIONS, ArchivedMessage, Viewer
from sealpost.archive.queries import ColumnMatcher
from sealpost.archive.queries import SearchQuery as HoldQuery
from sealpost.archive.repository import message_from_row, visible_messages
from sealpost.archive.tables import archive_messages, archive_search, archive_threads
from sealpost.config import Settings
from sealpost.db.blobs import BlobStorage
from sealpost.db.engine import is_sqlite, write_transaction
from sealpost.errors import InvalidInput
from sealpost.ledger.repository import as_utc_or_none
from sealpost.logging import get_logger
from sealpost.loops import Loop, periodic

log = get_logger(__name__)

m = archive_messages.c
s = archive_search.c
t = archive_threads.c

message_date = func.coalesce(m.sent_at, m.archived_at)
"""A message's date for search: its Date header, else when it was archived (a mailbox pulled
years later keeps its mail's dates).  Results are in this order, newest first, and the date
window filters on it (PostgreSQL: ``ix_archive_messages_date`` serves both)."""

PREFIX_MIN = 3
"""Words of fewer characters match whole words only ("de" does not find every "del...")."""
MAX_TERMS = 12
MAX_TERM_CHARS = 64
SNIPPET_SOURCE_CHARS = 20_000
"""The snippet is looked for in this much of the body (cheap for a page of results)."""

_WORD = re.compile(r"(?:(?![\u02b0-\u02ff\u0149])[^\W_])+")
"""A word: letters and digits; the spacing modifier letters (U+02B0–U+02FF: "ʼ", "ʻ", "ː")
and "ŉ" separate words, since ``unaccent`` turns them into an apostrophe or a colon, which
would break or widen a PostgreSQL tsquery."""


@dataclass(frozen=True)
class SearchQuery:
    """A search: its words and filters (any may be None).  ``after`` is inclusive, ``before``
    exclusive, both on the message's Date (its archiving time when it has none)."""

    text: str
    from_address: str | None = None
    """An address, or ``@domain`` for any sender of that domain."""
    to_address: str | None = None
    """A recipient (To or Cc)."""
    after: datetime | None = None
    before: datetime | None = None
    thread_id: str | None = None
    agent_id: str | None = None
    """The owner of the message's thread."""
    team_id: str | None = None
    has_attachment: bool | None = None
    direction: str | None = None


@dataclass(frozen=True)
class SearchHit:
    message: ArchivedMessage
    snippet: str | None


@dataclass(frozen=True)
class IndexHealth:
    archived: int
    indexed: int
    partial: int
    failed: int
    pending: int
    oldest_pending_seconds: float | None


@dataclass(frozen=True)
class Unindexed:
    """A message whose text is not (all) in the index, and which files and why."""

    message: ArchivedMessage
    problems: list[dict[str, str]]


def terms_of(text_: str) -> list[str]:
    """The words of a user's query: letters and digits (NFKC), lowercased; nothing of any
    query syntax survives.  422 when there is none."""
    words = _WORD.findall(unicodedata.normalize("NFKC", text_))
    terms: list[str] = []
    for word in words:
        word = word.lower()[:MAX_TERM_CHARS]
        if word not in terms:
            terms.append(word)
    if not terms:
        raise InvalidInput("q: give at least one word (letters or digits) to search for")
    if len(terms) > MAX_TERMS:
        raise InvalidInput(f"q: at most {MAX_TERMS} words")
    return terms


def fts5_query(terms: Sequence[str]) -> str:
    """Each word quoted (FTS5 string syntax: no operator inside quotes), a prefix from
    :data:`PREFIX_MIN` characters, all required."""
    return " ".join(f'"{w}"*' if len(w) >= PREFIX_MIN else f'"{w}"' for w in terms)


def ts_query(terms: Sequence[str]) -> str:
    """The same for ``to_tsquery``: quoted lexemes (no quote or backslash can be in a word)."""
    return " & ".join(f"'{w}':*" if len(w) >= PREFIX_MIN else f"'{w}'" for w in terms)


def search_date(message: ArchivedMessage) -> datetime:
    """``message_date`` of a message (what a search's cursor holds)."""
    return message.sent_at or message.archived_at


def _variants() -> dict[str, str]:
    """Each lowercase base letter and the accented letters (Latin-1, Latin Extended-A) that
    fold to it."""
    found: dict[str, str] = {}
    for code in range(0xC0, 0x250):
        char = chr(code).lower()
        base = unicodedata.normalize("NFKD", char)[:1]
        if base.isascii() and base.isalpha() and base != char:
            found[base] = found.get(base, "") + char
    return found


_VARIANTS = _variants()


def _accent_blind(term: str) -> str:
    """A regular expression matching ``term`` at a word's start, whatever its accents."""
    folded = "".join(unicodedata.normalize("NFKD", c)[:1] for c in term)
    letters = "".join(
        f"[{re.escape(c)}{_VARIANTS[c]}]" if c in _VARIANTS else re.escape(c) for c in folded
    )
    return r"(?<![^\W_])" + letters


def snippet(body: str, terms: Sequence[str], width: int = 90) -> str | None:
    """Some words around the first match in the body (its start when the match is elsewhere:
    the subject, an attachment)."""
    if not body:
        return None
    pattern = re.compile("|".join(_accent_blind(t) for t in terms), re.IGNORECASE)
    found = pattern.search(body)
    start = 0 if found is None else max(0, found.start() - width // 2)
    end = min(len(body), start + 2 * width)
    piece = body[start:end].strip()
    return ("…" if start else "") + piece + ("…" if end < len(body) else "")


class ArchiveSearch:
    """Search, index health and the indexer of the archive."""

    def __init__(
        self, engine: Engine, blobs: BlobStorage, extractor: Extractor | None = None
    ) -> None:
        self.engine = engine
        self.blobs = blobs
        self.extractor = extractor or Extractor()

    # -- searching -----------------------------------------------------------------------------

    def _match(self, terms: Sequence[str]) -> ColumnElement[bool]:
        if is_sqlite(self.engine):
            return literal_column("archive_search").op("MATCH")(bindparam("fts", fts5_query(terms)))
        return literal_column("archive_search.document").op("@@")(
            func.to_tsquery(
                literal_column("'simple'::regconfig"),
                func.archive_unaccent(bindparam("tsq", ts_query(terms))),
            )
        )

    def _base(self, viewer: Viewer, query: SearchQuery, terms: Sequence[str]) -> Select[Any]:
        """The matching messages the viewer may see."""
        tenant = viewer.tenant_id
        stmt = (
            select(archive_messages)
            .select_from(archive_search.join(archive_messages, m.id == s.message_id))
            .where(
                self._match(terms),
                s.tenant_id == tenant,
                m.purged_at.is_(None),
                visible_messages(viewer),
            )
        )
        return stmt.where(*self._filters(tenant, query))

    @staticmethod
    def _filters(tenant: str, q: SearchQuery) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if q.from_address:
            sender = q.from_address.strip().lower()
            if sender.startswith("@"):
                found.append(m.from_address.like("%" + _like(sender), escape="\\"))
            else:
                found.append(m.from_address == sender)
        if q.to_address:
            quoted = "%" + _like(json.dumps(q.to_address.strip().lower())) + "%"
            found.append(
                or_(
                    m.to_addresses.like(quoted, escape="\\"),
                    m.cc_addresses.like(quoted, escape="\\"),
                )
            )
        if q.after is not None:
            found.append(message_date >= q.after)
        if q.before is not None:
            found.append(message_date < q.before)
        if q.thread_id:
            found.append(m.thread_id == q.thread_id)
        if q.agent_id or q.team_id:
            owned = select(t.id).where(t.tenant_id == tenant)
            if q.agent_id:
                owned = owned.where(t.owner_agent_id == q.agent_id)
            if q.team_id:
                owned = owned.where(t.team_id == q.team_id)
            found.append(m.thread_id.in_(owned))
        if q.has_attachment is not None:
            found.append(m.has_attachments.is_(q.has_attachment))
        if q.direction:
            if q.direction not in DIRECTIONS:
                raise InvalidInput(f"direction: one of {', '.join(DIRECTIONS)}")
            found.append(m.direction == q.direction)
        return found

    def search(
        self,
        viewer: Viewer,
        query: SearchQuery,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[SearchHit]:
        """The messages matching ``query`` that ``viewer`` may see, newest first (by
        ``message_date``), by keyset: ``after`` is the (date, id) of the last one seen."""
        terms = terms_of(query.text)
        body = func.substr(s.body, 1, SNIPPET_SOURCE_CHARS).label("snippet_source")
        sqlite = is_sqlite(self.engine)
        with self._reading() as conn:
            stmt = self._base(viewer, query, terms)
            if after is not None:
                stmt = stmt.where(tuple_(message_date, m.id) < tuple_(*after))
            stmt = stmt.order_by(message_date.desc(), m.id.desc()).limit(limit)
            if sqlite:  # the FTS5 row is at hand (a lookup by message_id would scan the table)
                stmt = stmt.add_columns(body)
            rows = conn.execute(stmt).all()
            messages = [message_from_row(r) for r in rows]
            if sqlite:
                bodies = {r.id: r.snippet_source for r in rows}
            elif messages:  # by primary key, for the page only (not every match before a sort)
                bodies = dict(
                    conn.execute(
                        select(s.message_id, body).where(
                            s.message_id.in_([msg.id for msg in messages])
                        )
                    ).all()
                )
            else:
                bodies = {}
        return [SearchHit(msg, snippet(bodies.get(msg.id) or "", terms)) for msg in messages]

    def matching_ids(self, tenant_id: str, query: SearchQuery) -> list[str]:
        """Every message of the tenant matching ``query`` (as its administrator sees them),
        newest first: what a legal hold "by query" or the export of a query takes."""
        terms = terms_of(query.text)
        stmt = (
            self._base(Viewer(tenant_id), query, terms)
            .with_only_columns(m.id)
            .order_by(message_date.desc(), m.id.desc())
        )
        with self._reading() as conn:
            return list(conn.execute(stmt).scalars())

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection for a search.  On PostgreSQL every execution is planned with its own
        words (``plan_cache_mode``: psycopg prepares a statement run five times, and a generic
        plan cannot know whether a word is rare, start from the GIN index, or common, walk the
        date index), and without parallel workers: a page of 50 is small work, and with three
        processes the planner found the walk down the date index three times cheaper than it
        is, and chose it for words in 0.2 % of the messages (0.2-0.4 s at 1M messages instead
        of 20 ms; bench/archive_search.py).  Both are SET LOCAL: this transaction only."""
        with self.engine.connect() as conn:
            if not is_sqlite(conn):
                conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
                conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
            yield conn

    # -- index health --------------------------------------------------------------------------

    def health(self, tenant_id: str, now: datetime) -> IndexHealth:
        """Archived (not purged) messages by index state, and how long the oldest has waited."""
        live = and_(m.tenant_id == tenant_id, m.purged_at.is_(None))
        with self.engine.connect() as conn:
            counts: dict[str, int] = {
                state: int(n)
                for state, n in conn.execute(
                    select(m.index_state, func.count()).where(live).group_by(m.index_state)
                )
            }
            oldest = conn.execute(
                select(func.min(m.archived_at)).where(live, m.index_state == "pending")
            ).scalar()
        oldest_at = as_utc_or_none(oldest)
        return IndexHealth(
            archived=sum(int(v) for v in counts.values()),
            indexed=int(counts.get("indexed", 0)),
            partial=int(counts.get("partial", 0)),
            failed=int(counts.get("failed", 0)),
            pending=int(counts.get("pending", 0)),
            oldest_pending_seconds=(
                None if oldest_at is None else max(0.0, (now - oldest_at).total_seconds())
            ),
        )

    def unindexed(
        self, viewer: Viewer, *, after: tuple[datetime, str] | None = None, limit: int = 50
    ) -> list[Unindexed]:
        """Messages indexed ``partial`` or ``failed`` that the viewer may see, newest first,
        each with the files that could not be read and why."""
        stmt = select(archive_messages).where(
            visible_messages(viewer),
            m.purged_at.is_(None),
            m.index_state.in_(("partial", "failed")),
        )
        if after is not None:
            stmt = stmt.where(tuple_(m.archived_at, m.id) < tuple_(*after))
        stmt = stmt.order_by(m.archived_at.desc(), m.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        found = []
        for row in rows:
            try:
                problems = json.loads(row.index_error or "[]")
            except ValueError:
                problems = [{"file": "(message)", "reason": str(row.index_error)}]
            found.append(Unindexed(message_from_row(row), problems))
        return found

    # -- the indexer ---------------------------------------------------------------------------

    def index_pending(self, limit: int = 20) -> int:
        """Index up to ``limit`` pending messages; returns how many were done.

        PostgreSQL: claimed ``FOR UPDATE SKIP LOCKED`` and written in the same transaction,
        so indexers in several processes never take the same message (a crash releases the
        rows).  SQLite: read, extracted outside any transaction (the single writer is not held
        while a PDF is read), then stored compare-and-set (``index_state = 'pending'``), so
        a second process at worst repeats the reading, never the row."""
        columns = (
            m.id,
            m.tenant_id,
            m.sha256,
            m.subject,
            m.attachment_names,
            m.parts,
            m.purged_at,
        )
        pending = select(*columns).where(m.index_state == "pending").limit(limit)
        if is_sqlite(self.engine):
            with self.engine.connect() as conn:
                rows = conn.execute(pending).all()
            results = [(row, self._extract(row)) for row in rows]
            with write_transaction(self.engine) as conn:
                return self._store_in(conn, results)
        with self.engine.begin() as conn:
            rows = conn.execute(
                pending.with_for_update(of=archive_messages, skip_locked=True)
            ).all()
            results = [(row, self._extract(row)) for row in rows]
            return self._store_in(conn, results)

    def index_all(self, batch: int = 20) -> int:
        """Index until nothing is pending (the indexer loop's round; tests call it)."""
        done = 0
        while True:
            count = self.index_pending(batch)
            done += count
            if count < batch:
                return done

    def _extract(self, row: Any) -> tuple[str, Extracted | None]:
        """(state, text) of one message; never raises (a message is never retried forever)."""
        names = [n for n in json.loads(row.attachment_names) if n]
        if row.purged_at is not None:
            return "failed", None
        started = time.monotonic()
        try:
            extracted = self.extractor.extract(
                row.subject, names, json.loads(row.parts), lambda: self.blobs.open(row.sha256)
            )
        except Exception as exc:  # its bytes are unreadable, or a bug: its subject is indexed
            log.error("archive.index_failed", message_id=row.id, error=repr(exc))
            extracted = Extracted(
                subject=clean(row.subject),
                files=clean(" ".join(names)),
                problems=[Problem("(message)", f"its text could not be read: {exc!r}"[:500])],
            )
            return "failed", extracted
        log.info(
            "archive.indexed",
            message_id=row.id,
            state=extracted.state,
            ms=round((time.monotonic() - started) * 1000),
        )
        return extracted.state, extracted

    def _store_in(
        self, conn: Connection, results: list[tuple[Any, tuple[str, Extracted | None]]]
    ) -> int:
        done = 0
        for row, (state, extracted) in results:
            error = (
                extracted.error()
                if extracted is not None
                else json.dumps([{"file": "(message)", "reason": "purged before it was indexed"}])
            )
            changed = conn.execute(
                update(archive_messages)
                .where(m.id == row.id, m.index_state == "pending")
                .values(index_state=state, index_error=error)
            ).rowcount
            done += changed
            if not changed or extracted is None:
                continue
            values = {
                "message_id": row.id,
                "tenant_id": row.tenant_id,
                "subject": extracted.subject,
                "body": extracted.body,
                "files": extracted.files,
            }
            if is_sqlite(conn):
                conn.execute(insert(archive_search).values(**values))
            else:
                stmt = pg_insert(archive_search).values(**values)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[s.message_id],
                        set_={k: stmt.excluded[k] for k in ("subject", "body", "files")},
                    )
                )
        return done

    def forget_in(self, conn: Connection, message_ids: Sequence[str]) -> None:
        """Take messages out of the index (a purge after retention calls it in its own
        transaction: a purged message is found by no search)."""
        if message_ids:
            conn.execute(archive_search.delete().where(s.message_id.in_(list(message_ids))))


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def indexer_loops(search: ArchiveSearch, settings: Settings) -> list[Loop]:
    """The indexer (worker role): every round indexes until nothing is pending.  Any number
    may run (see :meth:`ArchiveSearch.index_pending`)."""
    if not settings.archive_indexer_enabled:
        return []
    return [
        periodic("archive-indexer", settings.archive_indexer_interval_seconds, search.index_all)
    ]


def pdf_limits(settings: Settings) -> PdfLimits:
    return PdfLimits(
        max_bytes=settings.archive_index_pdf_max_mb * 1024 * 1024,
        max_pages=settings.archive_index_pdf_max_pages,
        timeout_seconds=settings.archive_index_pdf_timeout_seconds,
    )


@dataclass(frozen=True)
class SearchMatcher:
    """The ``QueryMatcher`` port of legal holds and exports "by query" over this search.

    The text goes through the index (accents and case folded, every word a prefix), the filters
    through the archived messages' own columns (dates: the archiving time), both required; a
    query without text is the columns' alone.  A message not indexed yet, or purged (its
    text left the index, its metadata stays), cannot be found by its text: those whose subject
    holds the text are taken too.  The purge treats every unindexed message as held while a
    query hold is active (``HoldService.held_among``), so a hold placed before the indexer
    caught up loses nothing."""

    search: ArchiveSearch
    columns: ColumnMatcher

    def matching_ids(
        self, tenant_id: str, query: HoldQuery, among: Sequence[str] | None = None
    ) -> list[str]:
        if not query.text:
            return self.columns.matching_ids(tenant_id, query, among)
        found = self.search.matching_ids(tenant_id, SearchQuery(text=query.text))
        if among is not None:
            wanted = set(among)
            found = [i for i in found if i in wanted]
        filters = {f.name: getattr(query, f.name) for f in fields(query) if f.name != "text"}
        if found and any(v not in (None, "") for v in filters.values()):
            # the filters on the text's matches themselves: never on a capped list of all
            # the filters' matches, which would drop the newest mail of a wide filter
            allowed = set(self.columns.matching_ids(tenant_id, replace(query, text=None), found))
            found = [message_id for message_id in found if message_id in allowed]
        by_subject = self.columns.matching_ids(tenant_id, query, among)
        if by_subject:
            with self.search.engine.connect() as conn:
                unindexed: set[str] = set()
                for start in range(0, len(by_subject), 500):
                    unindexed |= set(
                        conn.execute(
                            select(m.id).where(
                                m.tenant_id == tenant_id,
                                or_(
                                    m.index_state.in_(("pending", "failed")),
                                    m.purged_at.is_not(None),
                                ),
                                m.id.in_(by_subject[start : start + 500]),
                            )
                        ).scalars()
                    )
            seen = set(found)
            found += [i for i in by_subject if i in unindexed and i not in seen]
        return found
