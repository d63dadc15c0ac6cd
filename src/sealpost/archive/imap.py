"""IMAP pull: read each configured mailbox's folders into the archive, once per message.

A session logs in (LOGIN, or SASL XOAUTH2 with an OAuth2 access token), reads every folder
from its cursor on (``UID n:*``, RFC 9051 §6.4.4; read-only SELECT and ``BODY.PEEK[]`` so no
``\\Seen`` flag is set, §6.4.5), in chunks of UIDs and of bytes, archives each message with
its source ``imap`` / ``<mailbox>/<folder>/<uidvalidity>/<uid>`` and moves the cursor only
after that ingest committed.  A new UIDVALIDITY (the folder was recreated or renumbered)
reads the folder again from UID 1: ingest deduplicates by content, so nothing is stored
twice.  Then, where the server offers IDLE (RFC 2177), the session waits on the first folder
and reads new mail as it arrives, for ``idle_seconds``; otherwise the mailbox is polled.

A failure (refused login, unreachable host, TLS, a missing folder) ends the session: the
mailbox shows ``failing`` with a readable error and is retried after a growing wait (see
``mailboxes.py``).  Sessions run in a pool, one thread per mailbox, each with its own
timeouts: one dead server never holds up another mailbox.  A connection lost during IDLE,
after a good read, is not a failure: the mailbox is due again at once, and the next session
resumes from the cursors.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import (
    CapabilityError,
    IMAPClientAbortError,
    IMAPClientError,
    LoginError,
)

from sealpost.archive.mailboxes import Claim, MailboxService, private_address, private_peer
from sealpost.archive.model import Source
from sealpost.archive.service import ArchiveService
from sealpost.logging import get_logger
from sealpost.loops import Loop, round_failed, round_ok

log = get_logger(__name__)

CHUNK_UIDS = 100
CHUNK_BYTES = 32 << 20
"""A FETCH asks for at most this many bytes of messages (a bigger message comes alone)."""
IDLE_CHECK_SECONDS = 1.0
"""How often an IDLE session looks at its stop flag and its lease."""
RETRY_AFTER_DISCONNECT_SECONDS = 1.0


class ImapFailure(Exception):
    """An attempt failed; the message is what the mailbox's ``last_error`` shows."""


class _LeaseLost(Exception):
    """Another worker has the mailbox now, or it was disabled or changed: end quietly."""


def _text(value: Any) -> str:
    """A server's response text, readable (IMAPClient gives ``b'...'`` reprs)."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if text.startswith(("b'", 'b"')) and text.endswith(text[1]):
        text = text[2:-1]
    return text.strip()


def describe(exc: BaseException, host: str, port: int) -> str:
    """A last error an administrator can act on (never with the secret)."""
    where = f"{host}:{port}"
    if isinstance(exc, ImapFailure):
        return str(exc)
    if isinstance(exc, LoginError):
        return f"login refused by {where}: {_text(exc) or 'authentication failed'}"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {where}: connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {host}: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from {where} in time"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS with {where}: certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed: {exc.reason or exc}"
    if isinstance(exc, OSError):
        return f"network error with {where}: {exc.strerror or exc}"
    if isinstance(exc, IMAPClientError):
        return f"IMAP error from {where}: {_text(exc)}"
    # not the mailbox's fault (the database, a bug): its text may name the operator's hosts
    # or SQL, which a tenant must not read; the log has it
    return f"internal error while archiving mail from {where} ({type(exc).__name__}); it is retried"


def _chunks(uids: list[int], sizes: dict[int, int]) -> Iterator[list[int]]:
    batch: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if batch and (len(batch) >= CHUNK_UIDS or total + size > CHUNK_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        yield batch


class ImapPuller:
    """One session per claimed mailbox: connect, read every folder, IDLE or let go."""

    def __init__(
        self,
        mailboxes: MailboxService,
        archive: ArchiveService,
        *,
        timeout_seconds: float = 30.0,
        poll_seconds: float = 60.0,
        idle_seconds: float = 300.0,
        allow_private_networks: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        ingest_threads: int = 4,
    ) -> None:
        self.mailboxes = mailboxes
        self.archive = archive
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        self.idle_seconds = idle_seconds
        self.allow_private_networks = allow_private_networks
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.lease_seconds = max(120.0, 4 * timeout_seconds)
        self.ingest_threads = ingest_threads
        """Messages of one chunk ingested at once (their blob writes, MIME scans and commits
        overlap); the cursor then moves past the whole chunk.  1: one by one, the cursor
        after each."""

    def connect(self, claim: Claim) -> IMAPClient:
        m = claim.mailbox
        if not self.allow_private_networks:
            private = private_address(m.host)
            if private is not None:
                raise ImapFailure(f"{m.host} resolves to a loopback/private address ({private})")
        client = IMAPClient(
            m.host,
            port=m.port,
            ssl=m.tls == "ssl",
            ssl_context=self.ssl_context,
            timeout=self.timeout_seconds,
        )
        try:
            self._check_peer(client, m.host, m.tls)
            if m.tls == "starttls":
                try:
                    client.starttls(self.ssl_context)
                except CapabilityError:
                    raise ImapFailure(f"{m.host}:{m.port} does not offer STARTTLS") from None
            if m.auth == "xoauth2":
                client.oauth2_login(m.username, claim.secret)
            else:
                client.login(m.username, claim.secret)
        except BaseException:
            _close(client)
            raise
        return client

    def _check_peer(self, client: IMAPClient, host: str, tls: str) -> None:
        """The address actually connected to, checked before any credential is sent: the
        name was resolved once for the check above and again by the connection, and a DNS
        answer that changed in between (rebinding) must not reach the operator's network.
        A plain-text session (``tls: none``) may only go to a loopback/private peer.  The
        error never quotes the server's greeting."""
        peer = str(client.socket().getpeername()[0])
        private = private_peer(peer)
        if private and not self.allow_private_networks:
            raise ImapFailure(
                f"{host} connected to a loopback/private address ({peer}); refused before login"
            )
        if tls == "none" and not private:
            raise ImapFailure(
                f"{host} connected to a public address ({peer}) without TLS; refused before "
                "sending the password in plain text"
            )

    def session(self, claim: Claim, stop: threading.Event | None = None) -> None:
        """Read the mailbox; record ``ok``/``failing`` and when it is due again."""
        stop = stop or threading.Event()
        m = claim.mailbox
        synced = False
        client: IMAPClient | None = None
        try:
            client = self.connect(claim)
            for folder in m.folders:
                self.sync_folder(client, claim, folder, stop)
                if stop.is_set():
                    break
            else:
                self.mailboxes.succeeded(claim)
                synced = True
            idle = (
                synced
                and self.idle_seconds > 0
                and not stop.is_set()
                and client.has_capability("IDLE")
            )
            if idle:
                self._idle(client, claim, stop)
            self.mailboxes.release(claim, 0.0 if idle else self.poll_seconds)
        except _LeaseLost:  # changed meanwhile: due again at once with its new settings
            log.info("archive.imap.lease_lost", mailbox=m.id)
            self.mailboxes.release(claim, 0.0)
        except Exception as exc:
            error = describe(exc, m.host, m.port)
            log.info("archive.imap.attempt_failed", mailbox=m.id, error=repr(exc))
            if synced and isinstance(exc, OSError | IMAPClientAbortError):
                # the connection dropped while waiting: not a failure, resume soon
                log.info("archive.imap.disconnected", mailbox=m.id, error=error)
                self.mailboxes.release(claim, RETRY_AFTER_DISCONNECT_SECONDS)
            else:
                delay = self.mailboxes.failed(claim, error)
                log.warning("archive.imap.failed", mailbox=m.id, error=error, retry_in=delay)
        finally:
            if client is not None:
                _close(client)

    def sync_folder(
        self, client: IMAPClient, claim: Claim, folder: str, stop: threading.Event
    ) -> int:
        """Archive what the folder holds past its cursor; returns how many were fetched."""
        m = claim.mailbox
        try:
            info = client.select_folder(folder, readonly=True)
        except IMAPClientError as exc:
            raise ImapFailure(f"folder {folder!r} on {m.host}:{m.port}: {_text(exc)}") from None
        uidvalidity = int(info[b"UIDVALIDITY"])
        cursor = self.mailboxes.start_folder(m.id, folder, uidvalidity)
        uidnext = info.get(b"UIDNEXT")
        if not info.get(b"EXISTS") or (uidnext is not None and int(uidnext) <= cursor.last_uid + 1):
            # empty, or nothing new (RFC 9051 §7.3.1: UIDNEXT): no SEARCH, which some servers
            # refuse with "*" in an empty folder
            self.mailboxes.folder_synced(m.id, folder)
            return 0
        found = client.search(["UID", f"{cursor.last_uid + 1}:*"])
        uids = sorted(int(u) for u in found if int(u) > cursor.last_uid)  # n:* includes the last
        pool = None
        if self.ingest_threads > 1 and len(uids) > 1:
            pool = ThreadPoolExecutor(self.ingest_threads, thread_name_prefix="sealpost-ingest")
        try:
            return self._sync_uids(client, claim, folder, uidvalidity, uids, stop, pool)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def _sync_uids(
        self,
        client: IMAPClient,
        claim: Claim,
        folder: str,
        uidvalidity: int,
        uids: list[int],
        stop: threading.Event,
        pool: ThreadPoolExecutor | None,
    ) -> int:
        m = claim.mailbox
        fetched = 0
        for start in range(0, len(uids), 1000):
            window = uids[start : start + 1000]
            sizes = {
                int(uid): int(data.get(b"RFC822.SIZE", 0))
                for uid, data in client.fetch(window, ["RFC822.SIZE"]).items()
            }
            for batch in _chunks(window, sizes):
                if stop.is_set():
                    return fetched
                fetched_now = client.fetch(batch, ["BODY.PEEK[]"])
                bodies = {u: fetched_now[u].get(b"BODY[]") for u in batch if u in fetched_now}
                present = [u for u in batch if bodies.get(u) is not None]
                # (a UID missing was expunged since the SEARCH: nothing to archive)
                del fetched_now

                def ingest(uid: int, bodies: dict[int, Any] = bodies) -> None:
                    ref = f"{m.id}/{folder}/{uidvalidity}/{uid}"
                    raw = bytes(bodies[uid])
                    self.archive.ingest(m.tenant_id, raw, Source("imap", ref))

                if pool is None:
                    for uid in present:
                        ingest(uid)
                        self.mailboxes.advance(m.id, folder, uidvalidity, uid)
                else:  # every ingest of the chunk committed, then the cursor moves past it
                    list(pool.map(ingest, present))
                    if present:
                        self.mailboxes.advance(
                            m.id, folder, uidvalidity, max(present), count=len(present)
                        )
                fetched += len(present)
                del bodies
                if not self.mailboxes.renew(m.id, claim.owner, self.lease_seconds):
                    raise _LeaseLost()
        self.mailboxes.folder_synced(m.id, folder)
        return fetched

    def _idle(self, client: IMAPClient, claim: Claim, stop: threading.Event) -> None:
        """Wait for new mail in the first folder (RFC 2177); read it as it comes."""
        folder = claim.mailbox.folders[0]
        # selected and read up to now in this very session: whatever arrives from here on
        # is announced by EXISTS, at the latest when IDLE starts (RFC 2177 §3)
        self.sync_folder(client, claim, folder, stop)
        deadline = time.monotonic() + self.idle_seconds
        renewed = time.monotonic()
        client.idle()
        try:
            while not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                responses = client.idle_check(timeout=min(IDLE_CHECK_SECONDS, left))
                if time.monotonic() - renewed > self.lease_seconds / 4:
                    if not self.mailboxes.renew(claim.mailbox.id, claim.owner, self.lease_seconds):
                        raise _LeaseLost()
                    renewed = time.monotonic()
                if any(len(r) > 1 and r[1] == b"EXISTS" for r in responses):
                    client.idle_done()
                    self.sync_folder(client, claim, folder, stop)
                    client.idle()
        finally:
            with contextlib.suppress(Exception):  # the connection is gone: nothing to end
                client.idle_done()


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:
        with contextlib.suppress(Exception):
            client.shutdown()


class ImapWorker:
    """Claims due mailboxes and runs their sessions in a pool (``concurrency`` at once)."""

    def __init__(
        self,
        puller: ImapPuller,
        *,
        concurrency: int = 8,
        look_seconds: float = 1.0,
        owner: str | None = None,
    ) -> None:
        self.puller = puller
        self.concurrency = concurrency
        self.look_seconds = look_seconds
        self.owner = owner or f"imap-{uuid.uuid4().hex[:12]}"

    def claim(self, limit: int) -> list[Claim]:
        return self.puller.mailboxes.claim_due(
            self.owner, limit=limit, lease_seconds=self.puller.lease_seconds
        )

    def run_once(self, stop: threading.Event | None = None) -> int:
        """Claim the due mailboxes and read them all (concurrently); returns how many."""
        claims = self.claim(self.concurrency)
        if claims:
            with ThreadPoolExecutor(len(claims), thread_name_prefix="sealpost-imap") as pool:
                list(pool.map(lambda c: self.puller.session(c, stop), claims))
        return len(claims)

    def run(self, stop: threading.Event) -> None:
        active: set[Any] = set()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="sealpost-imap")
        try:
            while not stop.is_set():
                active = {f for f in active if not f.done()}
                try:
                    claims = self.claim(self.concurrency - len(active))
                except Exception as exc:  # the database is down: look again later
                    log.error("archive.imap.round_failed", error=repr(exc))
                    round_failed(exc)
                else:
                    round_ok()
                    for claim in claims:
                        future = pool.submit(self.puller.session, claim, stop)
                        future.add_done_callback(_log_crash)
                        active.add(future)
                stop.wait(self.look_seconds)
        finally:
            pool.shutdown(wait=True)


def _log_crash(future: Any) -> None:
    """A session that could not even record its outcome (the database is down): its lease
    expires and another attempt follows; say so in the log."""
    exc = future.exception()
    if exc is not None:
        log.error("archive.imap.session_crashed", error=repr(exc))


def loops(worker: ImapWorker) -> list[Loop]:
    return [Loop("archive-imap", worker.run)]
