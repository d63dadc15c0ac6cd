"""IMAP mailboxes pulled into the archive: their settings, each folder's cursor, and the state
of the attempts to read them (what an administrator sees when a password expired).

Settings changes are ``MailboxConfigured`` records (never with the secret).  A mailbox that
stops working gets one ``MailboxFailing`` record per failing period (the start of a gap in
what the archive received from it; its event is ``sealpost.archive.mailbox_failing``) and
its supervisors a notification; the first good read after it is ``MailboxRecovered``.
Between attempts a failing mailbox waits longer each time (doubling, capped).

Workers lease due mailboxes (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, as the other loops):
each mailbox is read by one worker at a time, by any number of worker processes.  Each
folder's cursor (UIDVALIDITY, last UID: RFC 9051 §2.3.1.1) moves only after the message's
ingest committed, so a crash re-fetches at most that message, which ingest deduplicates.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from sealpost.archive.repository import ArchiveRepository
from sealpost.archive.tables import archive_agents, archive_mailbox_folders, archive_mailboxes
from sealpost.db.engine import is_sqlite, write_transaction
from sealpost.errors import Conflict, InvalidInput, NotFound
from sealpost.events.outbox import append_evidence
from sealpost.ledger.records import Reason, Subject, new_record

TLS_MODES = ("ssl", "starttls", "none")
"""``ssl``: TLS from the first byte (port 993, RFC 8314 §3.3); ``starttls``: upgraded by
STARTTLS (RFC 9051 §6.2.1); ``none``: plain text, for a server on the same host only."""
AUTH_METHODS = ("password", "xoauth2")
"""``password``: LOGIN; ``xoauth2``: an OAuth2 access token (SASL XOAUTH2, Gmail and
Microsoft 365), refreshed by whoever holds the refresh token, through ``PATCH``."""
MAX_FOLDERS = 50
FIRST_RETRY_SECONDS = 15.0
"""The wait after a first failure; it doubles with each failure in a row, up to the cap."""
MAX_ERROR = 1000


@dataclass(frozen=True)
class Mailbox:
    id: str
    tenant_id: str
    name: str
    host: str
    port: int
    tls: str
    username: str
    auth: str
    folders: tuple[str, ...]
    enabled: bool
    stored_state: str
    last_error: str | None
    failing_since: datetime | None
    consecutive_failures: int
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    next_attempt_at: datetime
    messages_fetched: int
    created_at: datetime
    updated_at: datetime

    @property
    def state(self) -> str:
        """``disabled`` (not enabled), ``failing`` (its last attempt failed) or ``ok``."""
        return "disabled" if not self.enabled else self.stored_state


@dataclass(frozen=True)
class FolderCursor:
    folder: str
    uidvalidity: int
    last_uid: int
    messages_fetched: int
    synced_at: datetime | None


@dataclass(frozen=True)
class Claim:
    """A leased mailbox and what logging in takes (kept out of :class:`Mailbox`, which the
    API shows)."""

    mailbox: Mailbox
    secret: str
    owner: str


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite gives naive UTC back
        return value.replace(tzinfo=UTC)
    return value


def _mailbox(row: Any) -> Mailbox:
    return Mailbox(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        host=row.host,
        port=row.port,
        tls=row.tls,
        username=row.username,
        auth=row.auth,
        folders=tuple(json.loads(row.folders)),
        enabled=bool(row.enabled),
        stored_state=row.state,
        last_error=row.last_error,
        failing_since=_utc(row.failing_since),
        consecutive_failures=row.consecutive_failures,
        last_attempt_at=_utc(row.last_attempt_at),
        last_success_at=_utc(row.last_success_at),
        next_attempt_at=_utc(row.next_attempt_at) or datetime.now(UTC),
        messages_fetched=row.messages_fetched,
        created_at=_utc(row.created_at) or datetime.now(UTC),
        updated_at=_utc(row.updated_at) or datetime.now(UTC),
    )


def private_address(host: str) -> str | None:
    """The first loopback/private/link-local/reserved address ``host`` resolves to, if any
    (no probing of the operator's own network through a tenant's settings)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None  # does not resolve now: the attempt will say so
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global:
            return str(address)
    return None


def private_peer(address: str) -> bool:
    """Whether a connected socket's peer address is loopback/private/link-local/reserved."""
    return not ipaddress.ip_address(address.split("%", 1)[0]).is_global


def only_private(host: str) -> bool:
    """Whether ``host`` resolves, and only to loopback/private addresses: where a password may
    travel in plain text (``tls: none``) without crossing the internet."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(private_peer(str(info[4][0])) for info in infos)


PLAIN_TEXT_REFUSED = (
    "tls: none sends the password in plain text; it is only for a server on a loopback or "
    "private address (use ssl or starttls)"
)


def backoff_seconds(failures: int, cap: float) -> float:
    return float(min(cap, FIRST_RETRY_SECONDS * 2 ** max(0, min(failures - 1, 30))))


class MailboxRepository:
    """The SQL of mailboxes and folder cursors."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @staticmethod
    def row_in(conn: Connection, mailbox_id: str, *, lock: bool = False) -> Any:
        query = select(archive_mailboxes).where(archive_mailboxes.c.id == mailbox_id)
        if lock and not is_sqlite(conn):
            query = query.with_for_update()
        return conn.execute(query).first()

    def get(self, tenant_id: str, mailbox_id: str) -> Mailbox | None:
        m = archive_mailboxes.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(archive_mailboxes).where(m.id == mailbox_id, m.tenant_id == tenant_id)
            ).first()
        return _mailbox(row) if row is not None else None

    def all(self, tenant_id: str) -> list[Mailbox]:
        m = archive_mailboxes.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(archive_mailboxes).where(m.tenant_id == tenant_id).order_by(m.name, m.id)
            ).all()
        return [_mailbox(r) for r in rows]

    def folders(self, mailbox_id: str) -> list[FolderCursor]:
        f = archive_mailbox_folders.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(archive_mailbox_folders).where(f.mailbox_id == mailbox_id).order_by(f.folder)
            ).all()
        return [
            FolderCursor(r.folder, r.uidvalidity, r.last_uid, r.messages_fetched, _utc(r.synced_at))
            for r in rows
        ]

    def cursor(self, mailbox_id: str, folder: str) -> FolderCursor | None:
        return next((c for c in self.folders(mailbox_id) if c.folder == folder), None)


class MailboxService:
    """Settings, leases, cursors and state of the archive's IMAP mailboxes."""

    def __init__(
        self,
        repo: MailboxRepository,
        *,
        allow_private_networks: bool = False,
        backoff_cap_seconds: float = 3600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repo = repo
        self.allow_private_networks = allow_private_networks
        self.backoff_cap_seconds = backoff_cap_seconds
        self.clock = clock

    @property
    def engine(self) -> Engine:
        return self.repo.engine

    # -- settings ------------------------------------------------------------------------------

    def _checked(self, values: dict[str, Any]) -> dict[str, Any]:
        """Validated settings (only those given), each error naming its field."""
        out: dict[str, Any] = {}
        if "name" in values:
            name = str(values["name"]).strip()
            if not 1 <= len(name) <= 200:
                raise InvalidInput("name: 1 to 200 characters")
            out["name"] = name
        if "host" in values:
            host = str(values["host"]).strip().lower().rstrip(".")
            bad = any(c.isspace() or c in "/@[]" or ord(c) < 32 for c in host)
            if not host or len(host) > 253 or bad or (":" in host and not _is_ipv6(host)):
                raise InvalidInput("host: a host name or an IP address")
            if not self.allow_private_networks:
                private = private_address(host)
                if private is not None:
                    raise InvalidInput(
                        f"host: {host} is a loopback/private address ({private}); the operator "
                        "allows such servers with SEALPOST_ARCHIVE_IMAP_ALLOW_PRIVATE_NETWORKS"
                    )
            out["host"] = host
        if "port" in values:
            port = values["port"]
            if not isinstance(port, int) or not 1 <= port <= 65535:
                raise InvalidInput("port: 1 to 65535")
            out["port"] = port
        if "tls" in values:
            if values["tls"] not in TLS_MODES:
                raise InvalidInput(f"tls: one of {', '.join(TLS_MODES)}")
            out["tls"] = values["tls"]
        if "auth" in values:
            if values["auth"] not in AUTH_METHODS:
                raise InvalidInput(f"auth: one of {', '.join(AUTH_METHODS)}")
            out["auth"] = values["auth"]
        if "username" in values:
            username = str(values["username"])
            if not 1 <= len(username) <= 320 or "\r" in username or "\n" in username:
                raise InvalidInput("username: 1 to 320 characters, one line")
            out["username"] = username
        if "secret" in values:
            secret = str(values["secret"])
            if not 1 <= len(secret) <= 8192 or "\r" in secret or "\n" in secret:
                raise InvalidInput("secret: the password or access token, 1 to 8192 characters")
            out["secret"] = secret
        if "folders" in values:
            folders = [str(f) for f in values["folders"]]
            if not 1 <= len(folders) <= MAX_FOLDERS:
                raise InvalidInput(f"folders: 1 to {MAX_FOLDERS} folder names")
            for i, folder in enumerate(folders):
                if not 1 <= len(folder) <= 1000 or any(ord(c) < 32 for c in folder):
                    raise InvalidInput(f"folders.{i}: 1 to 1000 characters, no control characters")
            if len(set(folders)) != len(folders):
                raise InvalidInput("folders: each folder once")
            out["folders"] = json.dumps(folders)
        if "enabled" in values:
            out["enabled"] = bool(values["enabled"])
        return out

    def create(self, tenant_id: str, **values: Any) -> Mailbox:
        """A new mailbox, read at once by the next worker round."""
        missing = [
            k
            for k in ("name", "host", "port", "tls", "username", "auth", "secret")
            if k not in values
        ]
        if missing:
            raise InvalidInput(f"{missing[0]}: required")
        values.setdefault("folders", ["INBOX"])
        values.setdefault("enabled", True)
        checked = self._checked(values)
        if checked["tls"] == "none" and not only_private(checked["host"]):
            raise InvalidInput(PLAIN_TEXT_REFUSED)
        now = self.clock()
        mailbox_id = str(uuid.uuid4())
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(
                    insert(archive_mailboxes).values(
                        id=mailbox_id,
                        tenant_id=tenant_id,
                        state="ok",
                        next_attempt_at=now,
                        created_at=now,
                        updated_at=now,
                        **checked,
                    )
                )
                row = self.repo.row_in(conn, mailbox_id)
                append_evidence(conn, [self._configured(row, "created", now, secret=True)])
        except IntegrityError:
            raise Conflict(f"a mailbox named {checked['name']!r} exists") from None
        return _mailbox(row)

    def update(self, tenant_id: str, mailbox_id: str, **values: Any) -> Mailbox:
        """Change settings; any change makes the mailbox due now (a fixed password is tried
        at once, not after the backoff)."""
        checked = self._checked(values)
        now = self.clock()
        try:
            with write_transaction(self.engine) as conn:
                row = self.repo.row_in(conn, mailbox_id, lock=True)
                if row is None or row.tenant_id != tenant_id:
                    raise NotFound(f"no mailbox {mailbox_id}")
                changed = {k: v for k, v in checked.items() if getattr(row, k) != v}
                if not changed:
                    return _mailbox(row)
                host, tls = changed.get("host", row.host), changed.get("tls", row.tls)
                plain = ("host" in changed or "tls" in changed) and tls == "none"
                if plain and not only_private(host):
                    raise InvalidInput(PLAIN_TEXT_REFUSED)
                if changed.get("enabled") is False:
                    changed.update(lease_owner=None, lease_until=None)
                conn.execute(
                    update(archive_mailboxes)
                    .where(archive_mailboxes.c.id == mailbox_id)
                    .values(updated_at=now, next_attempt_at=now, **changed)
                )
                row = self.repo.row_in(conn, mailbox_id)
                record = self._configured(row, "updated", now, secret="secret" in changed)
                append_evidence(conn, [record])
        except IntegrityError:
            raise Conflict(f"a mailbox named {checked.get('name')!r} exists") from None
        return _mailbox(row)

    @staticmethod
    def _configured(row: Any, change: str, now: datetime, *, secret: bool) -> Any:
        return new_record(
            tenant_id=row.tenant_id,
            event="MailboxConfigured",
            subject=Subject("archive_mailbox", row.id),
            event_time=now,
            details={
                "change": change,
                "name": row.name,
                "host": row.host,
                "port": row.port,
                "tls": row.tls,
                "username": row.username,
                "auth": row.auth,
                "folders": json.loads(row.folders),
                "enabled": bool(row.enabled),
                "secret_set": secret,
            },
        )

    def get(self, tenant_id: str, mailbox_id: str) -> Mailbox:
        found = self.repo.get(tenant_id, mailbox_id)
        if found is None:
            raise NotFound(f"no mailbox {mailbox_id}")
        return found

    # -- the worker's side ---------------------------------------------------------------------

    def claim_due(self, owner: str, *, limit: int, lease_seconds: float) -> list[Claim]:
        """Lease up to ``limit`` enabled mailboxes whose next attempt is due."""
        if limit <= 0:
            return []
        now = self.clock()
        m = archive_mailboxes.c
        due = (
            select(m.id)
            .where(m.enabled.is_(True), m.next_attempt_at <= now)
            .where(or_(m.lease_until.is_(None), m.lease_until < now))
            .order_by(m.next_attempt_at)
            .limit(limit)
        )
        with write_transaction(self.engine) as conn:
            if not is_sqlite(conn):
                due = due.with_for_update(skip_locked=True)
            rows = conn.execute(
                update(archive_mailboxes)
                .where(m.id.in_(due))
                .values(
                    lease_owner=owner,
                    lease_until=now + timedelta(seconds=lease_seconds),
                    last_attempt_at=now,
                )
                .returning(*archive_mailboxes.c)
            ).all()
        return [Claim(_mailbox(r), r.secret, owner) for r in rows]

    def renew(self, mailbox_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend the lease; False when it was lost or the mailbox was disabled or changed
        meanwhile (the session ends: the next one uses the new settings)."""
        m = archive_mailboxes.c
        now = self.clock()
        with write_transaction(self.engine) as conn:
            done = conn.execute(
                update(archive_mailboxes)
                .where(m.id == mailbox_id, m.lease_owner == owner, m.enabled.is_(True))
                .where(m.updated_at <= m.last_attempt_at)  # not PATCHed since the claim
                .values(lease_until=now + timedelta(seconds=lease_seconds))
            )
        return bool(done.rowcount)

    def start_folder(self, mailbox_id: str, folder: str, uidvalidity: int) -> FolderCursor:
        """The folder's cursor under ``uidvalidity``: kept when it is the one known, else (a
        new folder, or one renumbered: RFC 9051 §2.3.1.1) reset to read it again from UID 1;
        ingest deduplicates what was archived before."""
        f = archive_mailbox_folders.c
        with write_transaction(self.engine) as conn:
            row = conn.execute(
                select(archive_mailbox_folders).where(
                    f.mailbox_id == mailbox_id, f.folder == folder
                )
            ).first()
            if row is None:
                conn.execute(
                    insert(archive_mailbox_folders).values(
                        mailbox_id=mailbox_id, folder=folder, uidvalidity=uidvalidity, last_uid=0
                    )
                )
            elif row.uidvalidity != uidvalidity:
                conn.execute(
                    update(archive_mailbox_folders)
                    .where(f.mailbox_id == mailbox_id, f.folder == folder)
                    .values(uidvalidity=uidvalidity, last_uid=0)
                )
        cursor = self.repo.cursor(mailbox_id, folder)
        assert cursor is not None
        return cursor

    def advance(
        self, mailbox_id: str, folder: str, uidvalidity: int, uid: int, *, count: int = 1
    ) -> None:
        """Move the folder's cursor past ``uid`` (called once the ingest of every message up
        to it committed); ``count`` messages were fetched."""
        f = archive_mailbox_folders.c
        now = self.clock()
        with write_transaction(self.engine) as conn:
            done = conn.execute(
                update(archive_mailbox_folders)
                .where(f.mailbox_id == mailbox_id, f.folder == folder)
                .where(f.uidvalidity == uidvalidity, f.last_uid < uid)
                .values(last_uid=uid, messages_fetched=f.messages_fetched + count, synced_at=now)
            )
            if done.rowcount:
                conn.execute(
                    update(archive_mailboxes)
                    .where(archive_mailboxes.c.id == mailbox_id)
                    .values(messages_fetched=archive_mailboxes.c.messages_fetched + count)
                )

    def folder_synced(self, mailbox_id: str, folder: str) -> None:
        f = archive_mailbox_folders.c
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(archive_mailbox_folders)
                .where(f.mailbox_id == mailbox_id, f.folder == folder)
                .values(synced_at=self.clock())
            )

    def succeeded(self, claim: Claim) -> None:
        """Every folder was read: ``ok``; ``MailboxRecovered`` when it was failing."""
        now = self.clock()
        m = archive_mailboxes.c
        with write_transaction(self.engine) as conn:
            row = self.repo.row_in(conn, claim.mailbox.id, lock=True)
            if row is None or row.lease_owner != claim.owner:
                return
            conn.execute(
                update(archive_mailboxes)
                .where(m.id == row.id)
                .values(
                    state="ok",
                    consecutive_failures=0,
                    failing_since=None,
                    last_success_at=now,
                    last_error=None,
                )
            )
            if row.state == "failing":
                record = new_record(
                    tenant_id=row.tenant_id,
                    event="MailboxRecovered",
                    subject=Subject("archive_mailbox", row.id),
                    event_time=now,
                    details={
                        "name": row.name,
                        "host": row.host,
                        "port": row.port,
                        "username": row.username,
                        "failing_since": _stamp(_utc(row.failing_since)),
                        "failures": row.consecutive_failures,
                    },
                )
                append_evidence(conn, [record])

    def release(self, claim: Claim, after_seconds: float) -> None:
        """Let the mailbox go, due again in ``after_seconds`` (a change made meanwhile keeps
        it due at once)."""
        m = archive_mailboxes.c
        due = self.clock() + timedelta(seconds=after_seconds)
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(archive_mailboxes)
                .where(m.id == claim.mailbox.id, m.lease_owner == claim.owner)
                .values(
                    lease_owner=None,
                    lease_until=None,
                    next_attempt_at=_later_unless_changed(m, due),
                )
            )

    def failed(self, claim: Claim, error: str) -> float:
        """The attempt failed: ``failing`` with ``error``, due again after the backoff;
        the first failure of a period is a ``MailboxFailing`` record (its event is the
        alert) and a notification to the tenant's supervisors.  Returns the backoff."""
        now = self.clock()
        error = error[:MAX_ERROR]
        m = archive_mailboxes.c
        with write_transaction(self.engine) as conn:
            row = self.repo.row_in(conn, claim.mailbox.id, lock=True)
            if row is None or row.lease_owner != claim.owner:
                return 0.0
            failures = row.consecutive_failures + 1
            delay = backoff_seconds(failures, self.backoff_cap_seconds)
            starting = row.state != "failing"
            conn.execute(
                update(archive_mailboxes)
                .where(m.id == row.id)
                .values(
                    state="failing",
                    last_error=error,
                    consecutive_failures=failures,
                    failing_since=now if starting else row.failing_since,
                    lease_owner=None,
                    lease_until=None,
                    next_attempt_at=_later_unless_changed(m, now + timedelta(seconds=delay)),
                )
            )
            if starting:
                self._alert_in(conn, row, error, now)
        return delay

    def _alert_in(self, conn: Connection, row: Any, error: str, now: datetime) -> None:
        record = new_record(
            tenant_id=row.tenant_id,
            event="MailboxFailing",
            subject=Subject("archive_mailbox", row.id),
            event_time=now,
            reasons=(Reason(_reason_code(error), error[:500]),),
            details={
                "name": row.name,
                "host": row.host,
                "port": row.port,
                "username": row.username,
                "error": error,
            },
        )
        append_evidence(conn, [record])
        a = archive_agents.c
        supervisors = conn.execute(
            select(a.id).where(
                a.tenant_id == row.tenant_id, a.role == "supervisor", a.disabled_at.is_(None)
            )
        ).scalars()
        archive = ArchiveRepository(self.engine)
        for agent_id in supervisors.all():
            archive.notify_in(
                conn,
                tenant_id=row.tenant_id,
                agent_id=agent_id,
                kind="mailbox_failing",
                text=f"The mailbox {row.name} cannot be read: {error[:300]}",
                now=now,
            )


def _later_unless_changed(m: Any, due: datetime) -> Any:
    """``due``, unless the settings changed during the attempt (``updated_at`` after the
    claim): then the mailbox stays due at once, with its new settings."""
    changed = and_(m.last_attempt_at.is_not(None), m.updated_at > m.last_attempt_at)
    return case((changed, m.next_attempt_at), else_=due)


def _reason_code(error: str) -> str:
    """A stable code for the kind of failure (the text says the rest)."""
    for prefix, code in (
        ("login refused", "login_refused"),
        ("cannot connect", "unreachable"),
        ("cannot resolve", "unresolvable"),
        ("no answer", "timeout"),
        ("TLS", "tls"),
        ("folder", "folder"),
    ):
        if error.startswith(prefix):
            return code
    return "error"


def _stamp(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False
