"""Open and click tracking: the tenant's choice, the tracked copy made at submission, and each
hit of a pixel or a tracked link as its own evidence record.

**When the copy is made.**  At submission, before anything is sealed: the SubmissionAcceptance
keeps ``content`` as the message *as submitted* (its SHA-256 is of the sender's bytes, which
``original.eml`` and the certificate embed), and states in ``details.tracking`` the SHA-256
and size of the tracked copy made from it, which is stored too.  Both are sealed in the same
record; the delivery then transmits the tracked copy (its records name both digests).  Nothing
sealed as submitted is ever changed afterwards.

**Hits.**  Mail clients and their proxies preload images; security scanners follow every
link within seconds of delivery.  So every hit is counted, at most one record is written per
token per ``tracking_coalesce_seconds`` (the next record names the hits in between), and a
hit within ``tracking_automated_seconds`` of delivery (or before it) is marked
``likely_automated``.  None of it is proof that a person read the message, and records say
``non_essential``.  An unknown token is a 404 with nothing written.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sealpost.communications.tracking.repository import TokenHit, TrackingRepository
from sealpost.communications.tracking.rewrite import rewrite_message
from sealpost.config import Settings
from sealpost.ledger.records import EvidenceRecord, Party, Subject, format_time, new_record
from sealpost.logging import get_logger

log = get_logger(__name__)

OPEN, CLICK = "open", "click"
OPEN_EVENT, CLICK_EVENT = "OpenTracked", "LinkClicked"
TOKEN = re.compile(r"^[A-Za-z0-9_-]{22}$")
"""A token: 16 random bytes (128 bits), base64url without padding."""
NON_ESSENTIAL = (
    "non-essential: mail clients preload images and security scanners follow links, so an "
    "open or a click is never proof that a person read the message"
)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Choice:
    opens: bool = False
    clicks: bool = False

    @property
    def any(self) -> bool:
        return self.opens or self.clicks


@dataclass(frozen=True)
class TrackedCopy:
    """The copy of one communication's message that will be transmitted, and its tokens."""

    raw: bytes
    sha256: str
    rows: tuple[dict[str, Any], ...]
    evidence: dict[str, Any]
    """``details.tracking`` of the SubmissionAcceptance."""


@dataclass(frozen=True)
class Visitor:
    ip: str | None
    user_agent: str | None


class TrackingService:
    def __init__(
        self,
        repository: TrackingRepository,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = repository
        self.settings = settings
        self.clock = clock

    # -- the tenant's choice ------------------------------------------------------------------

    def choice(self, tenant_id: str) -> Choice:
        opens, clicks = self.repository.settings(tenant_id)
        return Choice(opens, clicks)

    def put_choice(self, tenant_id: str, choice: Choice) -> None:
        self.repository.put_settings(tenant_id, choice.opens, choice.clicks, self.clock())

    # -- at submission --------------------------------------------------------------------------

    def tracked_copy(
        self, tenant_id: str, communication_id: str, raw: bytes, choice: Choice
    ) -> TrackedCopy | None:
        """The tracked copy of ``raw`` for one recipient; None when nothing is tracked (no
        HTML part, or nothing in it to rewrite)."""
        base = self.settings.resolved_public_url
        rows: list[dict[str, Any]] = []

        def row(kind: str, token: str, link: int | None, url: str | None) -> None:
            rows.append(
                {
                    "token_sha256": token_digest(token),
                    "tenant_id": tenant_id,
                    "communication_id": communication_id,
                    "kind": kind,
                    "link": link,
                    "url": url,
                    "hits": 0,
                    "records": 0,
                    "unrecorded": 0,
                }
            )

        pixel_token = secrets.token_urlsafe(16)

        def link_url(position: int, url: str) -> str:
            token = secrets.token_urlsafe(16)
            row(CLICK, token, position, url)
            return f"{base}/t/c/{token}"

        try:
            rewritten = rewrite_message(
                raw,
                pixel_url=f"{base}/t/o/{pixel_token}.gif" if choice.opens else None,
                link_url=link_url if choice.clicks else None,
            )
        except Exception as exc:  # a message the rewriter cannot take goes out untracked
            log.warning("tracking.not_rewritten", communication=communication_id, error=repr(exc))
            return None
        if rewritten is None:
            return None
        if rewritten.pixel:
            row(OPEN, pixel_token, None, None)
        digest = hashlib.sha256(rewritten.raw).hexdigest()
        changed = []  # only what was done: opens alone redirect no link, and so on
        if rewritten.pixel:
            changed.append("its HTML part has a 1x1 image")
        if rewritten.links:
            count = len(rewritten.links)
            changed.append(
                f"{count} http(s) link{'s' if count != 1 else ''} of its HTML part "
                f"{'go' if count != 1 else 'goes'} through Sealpost's redirect"
            )
        evidence = {
            "opens": choice.opens,
            "clicks": choice.clicks,
            "pixel": rewritten.pixel,
            "links": len(rewritten.links),
            "tracked_sha256": digest,
            "tracked_size": len(rewritten.raw),
            "note": "content is the message as submitted; the copy transmitted is the tracked "
            f"copy (tracked_sha256): {' and '.join(changed)}; " + NON_ESSENTIAL,
        }
        return TrackedCopy(rewritten.raw, digest, tuple(rows), evidence)

    # -- hits -----------------------------------------------------------------------------------

    def hit(self, kind: str, token: str, visitor: Visitor) -> TokenHit | None:
        """Count a hit of a pixel (``open``) or a link (``click``); None for a token that is
        not one of ours (nothing written).  A click's caller redirects to ``url``."""
        if not TOKEN.match(token):
            return None
        now = self.clock()

        def decide(found: TokenHit) -> EvidenceRecord | None:
            window = self.settings.tracking_coalesce_seconds
            if (
                found.last_recorded_at is not None
                and (now - found.last_recorded_at).total_seconds() < window
            ):
                return None
            return self._record(found, now, visitor)

        return self.repository.hit(token_digest(token), kind, now, decide)

    def _record(self, found: TokenHit, now: datetime, visitor: Visitor) -> EvidenceRecord:
        after = (  # whole seconds: records hold no floats (RFC 8785 forms differ)
            None if found.delivered_at is None else int((now - found.delivered_at).total_seconds())
        )
        automated = after is None or after < self.settings.tracking_automated_seconds
        details: dict[str, Any] = {
            "tracking": NON_ESSENTIAL,
            "visitor": {"ip": visitor.ip, "user_agent": visitor.user_agent},
            "likely_automated": automated,
            "seconds_after_delivery": after,
            "hits_coalesced": found.unrecorded,
            "hits": found.hits + 1,
        }
        if found.kind == CLICK:
            details["url"] = found.url
            details["link"] = found.link
        return new_record(
            tenant_id=found.tenant_id,
            event=OPEN_EVENT if found.kind == OPEN else CLICK_EVENT,
            subject=Subject("communication", found.communication_id),
            event_time=now,
            submission_time=found.submitted_at,
            sender=Party(found.sender),
            recipient=Party(found.recipient),
            application_identifier=found.message_id,
            details=details,
        )

    # -- the API's view -------------------------------------------------------------------------

    def describe(self, tenant_id: str, communication_id: str) -> dict[str, Any] | None:
        """Opens and clicks of one communication, apart from its timeline; None if untracked."""
        tokens = self.repository.tokens(tenant_id, communication_id)
        if not tokens:
            return None

        def counts(t: dict[str, Any]) -> dict[str, Any]:
            return {
                "hits": t["hits"],
                "records": t["records"],
                "first_at": None if t["first_hit_at"] is None else format_time(t["first_hit_at"]),
                "last_at": None if t["last_hit_at"] is None else format_time(t["last_hit_at"]),
            }

        pixel = next((t for t in tokens if t["kind"] == OPEN), None)
        return {
            "non_essential": NON_ESSENTIAL,
            "opens": None if pixel is None else counts(pixel),
            "links": [
                {"link": t["link"], "url": t["url"], **counts(t)}
                for t in tokens
                if t["kind"] == CLICK
            ],
        }
