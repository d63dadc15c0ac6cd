"""The access kit: single-use links, page sessions, one-time codes and lockouts.

A page a person opens from a certified message goes through three steps, each here:

1. **The link** (in the message) is checked, never spent, when its page is fetched: mail
   scanners (Outlook Safe Links and the like) GET every link of a message, and would burn a
   single-use link before its owner clicks.  The page's script then spends it
   (:meth:`AccessService.open_session_in`) for a page session.
2. **The session** token lives only in the page (a header on every call, never a URL or a
   cookie), so the page works inside a third-party iframe where cookies are blocked, and a
   forwarded message is worth nothing once its link was opened.  A new link can close the
   holder's open pages (:meth:`end_sessions_in`).
3. **The one-time code** (6 digits, 10 minutes) goes by a channel the caller picks and words
   (:class:`CodeDelivery`: a certified email now, an SMS later); it is stored as an HMAC bound
   to the holder, checks are counted atomically, the 5th wrong one locks the holder out until
   whoever issues links vouches again (:meth:`reset_codes_in`), and at most 5 codes are sent
   per link.  A code is bound to the page session that asked for it (its HMAC covers the
   session): typed in another session it is a wrong code, so whoever reads the code elsewhere
   (the sender of record reading its own certified emails, a mailbox rule forwarding it)
   cannot use it in a page of their own.  Sends and checks are also counted per client
   address, across links (``codes_per_ip``): one address holding many links (or guessing for
   many holders) is slowed down before it gets far.

The kit decides nothing about the subject (is the process open? is it this person's turn?):
its caller checks that, and records the evidence.  Methods named ``*_in`` run inside the
caller's transaction, so a domain's state change and the access change commit together.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import Connection

from sealpost.access import codes
from sealpost.access.model import (
    LINK,
    MAX_ATTEMPTS,
    MAX_SENDS,
    SESSION,
    VALID_SECONDS,
    Challenge,
    CodeCheck,
    CodeDelivery,
    Grant,
    Holder,
)
from sealpost.access.repository import AccessRepository
from sealpost.db.engine import write_transaction
from sealpost.errors import InvalidInput, Locked, RateLimited, TooManyRequests
from sealpost.ratelimit import RateLimiter, client_key, retry_after

LOCKED_MESSAGE = "Too many wrong codes: ask the sender for a new link."


class NewerCode(InvalidInput):
    """The code typed was superseded by one asked from another page session (two pages open,
    say the email's link on a computer and the SMS's on the phone): 422, not counted — the
    code is not even compared, so nothing is learnt from it."""

    code = "newer_code_sent"
    title = "A newer code was sent"


def _session_digest(session: str) -> str:
    return hashlib.sha256(session.encode()).hexdigest()


def _bound(holder: Holder, session: str) -> str:
    """What a code's HMAC is bound to: the holder, and the page session that asked for it."""
    return f"{holder.party_id}\0{session}"


class AccessService:
    def __init__(
        self,
        repo: AccessRepository,
        *,
        code_key: bytes,
        codes_per_ip: RateLimiter | None = None,
    ) -> None:
        self.repo = repo
        self._code_key = code_key
        """HMAC key of stored codes (every replica derives it from the seal key)."""
        self.codes_per_ip = codes_per_ip
        """Code sends and checks per client address (None: no such limit)."""

    def _code_rate(self, ip: str | None) -> None:
        """RateLimited when ``ip`` sent or checked too many codes lately; counted before the
        holder's own counters, so a refused try costs the holder nothing."""
        if self.codes_per_ip is None or ip is None:
            return
        wait = self.codes_per_ip.take(client_key(ip))
        if wait:
            raise RateLimited(
                "Too many codes asked for or tried from your address: wait a moment.",
                retry_after=retry_after(wait),
            )

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with write_transaction(self.repo.engine) as conn:
            yield conn

    # -- links and sessions --------------------------------------------------------------------

    def issue_link_in(
        self, conn: Connection, holder: Holder, *, now: datetime, expires_at: datetime
    ) -> str:
        """A fresh single-use link token for ``holder`` (to put in a message).  It brings 5 new
        code sends (each send is a message with a cost: the budget is per link, and links are
        rate-limited by their issuer), never new code checks: only a reset gives those."""
        token = secrets.token_urlsafe(32)
        self.repo.add_link_in(conn, holder, token=token, kind=LINK, now=now, expires_at=expires_at)
        self.repo.set_challenge_in(conn, holder, sends=0)
        return token

    def link(self, token: str, subject_type: str) -> Grant | None:
        """What a link opens, spent or not: checking it spends nothing."""
        return self.repo.grant(token, LINK, subject_type)

    def open_session_in(
        self,
        conn: Connection,
        link: str,
        grant: Grant,
        *,
        now: datetime,
        expires_at: datetime,
        ip: str | None,
        user_agent: str | None,
    ) -> str | None:
        """Spend ``link`` (found as ``grant``) for a page session token; None when it was
        spent meanwhile (another tab, a scanner running scripts)."""
        if not self.repo.use_link_in(conn, link, now):
            return None
        session = secrets.token_urlsafe(32)
        self.repo.add_link_in(
            conn,
            grant.holder,
            token=session,
            kind=SESSION,
            now=now,
            expires_at=expires_at,
            ip=ip,
            user_agent=user_agent,
        )
        return session

    def session(self, token: str | None, subject_type: str, now: datetime) -> Grant | None:
        """The open session ``token`` names, or None (unknown, expired or ended)."""
        if not token:
            return None
        found = self.repo.grant(token, SESSION, subject_type)
        if found is None or found.expires_at <= now:
            return None
        return found

    def end_sessions_in(self, conn: Connection, holder: Holder, now: datetime) -> None:
        """Close the holder's open pages: whoever held an older link loses it."""
        self.repo.end_sessions_in(conn, holder, now)

    def revoke_links_in(self, conn: Connection, holder: Holder, now: datetime) -> None:
        """Expire the holder's links not opened yet: a new link replaces them, and whoever
        holds an older one (forwarded, leaked) can no longer open a page with it."""
        self.repo.revoke_links_in(conn, holder, now)

    def links_since(self, holder: Holder, since: datetime) -> int:
        with self.repo.engine.connect() as conn:
            return self.repo.links_since_in(conn, holder, since)

    # -- one-time codes ------------------------------------------------------------------------

    def challenge(self, holder: Holder) -> Challenge | None:
        return self.repo.challenge(holder)

    def send_code(
        self,
        holder: Holder,
        *,
        channel: str,
        to: str,
        deliver: CodeDelivery,
        now: datetime,
        session: str,
        ip: str | None = None,
    ) -> Challenge:
        """Send a new code to ``to`` by ``channel`` (``deliver`` words and sends it); it
        replaces the previous one, and does not reset the attempts.  ``session``: the page
        session asking (the code works only there); ``ip``: the client asking, for the
        per-address rate."""
        self._code_rate(ip)
        with self.transaction() as conn:  # counted before sending: parallel clicks too
            if not self.repo.take_send_in(conn, holder, MAX_SENDS):
                raise TooManyRequests(
                    f"{MAX_SENDS} codes were already sent: use the latest, or ask the "
                    "sender for a new link"
                )
        code = codes.new_code()
        communication_id = deliver(code)
        with self.transaction() as conn:
            self.repo.set_challenge_in(
                conn,
                holder,
                channel=channel,
                code_hash=codes.digest(self._code_key, _bound(holder, session), code),
                expires_at=now + timedelta(seconds=VALID_SECONDS),
                sent_to=to,
                communication_id=communication_id,
                code_session=_session_digest(session),
            )
            found = self.repo.challenge_in(conn, holder)
        assert found is not None
        return found

    def check_code_in(
        self,
        conn: Connection,
        holder: Holder,
        code: str,
        now: datetime,
        ip: str | None = None,
        *,
        session: str,
    ) -> CodeCheck:
        """Check ``code``, counting the check whatever its outcome (atomically: parallel
        guesses get at most :data:`MAX_ATTEMPTS` checks).  A matching code is used up; the
        right code typed in another ``session`` than the one that asked for it does not match
        (and counts).
        Raises ``Locked`` when no check is left, ``InvalidInput`` when no code is pending or
        it expired (neither counts), ``RateLimited`` when ``ip`` tried too many codes lately
        (not counted for the holder)."""
        self._code_rate(ip)
        found = self.repo.challenge_in(conn, holder)
        if found is not None and found.locked:
            raise Locked(LOCKED_MESSAGE)
        if found is None or found.code_hash is None or found.expires_at is None:
            raise InvalidInput("Ask for a code first.")
        if found.expires_at <= now:
            raise InvalidInput("This code has expired: ask for a new one.")
        if found.code_session not in (None, _session_digest(session)):
            raise NewerCode(
                "A newer code was sent since, asked from another page (another tab or "
                "device): use the latest code on the page that asked for it, or ask for a "
                "new code here.  This try was not counted."
            )
        attempts = self.repo.take_attempt_in(conn, holder, MAX_ATTEMPTS)
        if attempts is None:
            raise Locked(LOCKED_MESSAGE)
        if codes.matches(self._code_key, _bound(holder, session), code, found.code_hash):
            self.repo.set_challenge_in(conn, holder, code_hash=None)
            return CodeCheck(True, attempts, False, found)
        return CodeCheck(False, attempts, attempts >= MAX_ATTEMPTS, found)

    def reset_codes_in(self, conn: Connection, holder: Holder) -> None:
        """Whoever issues links vouches for the holder: new code sends and attempts."""
        self.repo.set_challenge_in(conn, holder, attempts=0, sends=0, code_hash=None)
