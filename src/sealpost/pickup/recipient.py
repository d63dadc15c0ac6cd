"""Registered pickup, the recipient's side: the steps the pickup page takes.

1. The link is checked, never spent, when the page is fetched (mail scanners GET every link);
   the page's script spends it for a page session: NotificationAccessTracking (E, the notice's
   link was opened by a person's browser), with IP and user agent.
2. Identification at the level the sender chose: an email code, an SMS code, or the answer
   to the sender's question; counted attempts, lockout after 5 wrong ones.  It holds for that
   page session only.
3. Consent mode: NotificationForAcceptance (the choice is offered), then ConsignmentAcceptance
   or ConsignmentRejection (with the reason, if given).  Basic mode goes straight to 4.
4. ContentHandover when the content is first shown; ContentAccessTracking per download.

Acceptance, rejection, (basic) handover and expiry are mutually exclusive: each is a
compare-and-set from ``notified`` in the transaction that writes its record.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sealpost.access.model import EMAIL, SMS, mask
from sealpost.access.repository import token_digest
from sealpost.errors import Conflict, Gone, InvalidInput, Locked, NotFound, SealpostError
from sealpost.ledger.records import EvidenceRecord, Reason, Subject
from sealpost.pickup import content, steps
from sealpost.pickup.model import (
    ACCEPTED,
    BASIC,
    CHALLENGE,
    CONSENT,
    EMAIL_OTP,
    HANDED_OVER,
    MAX_ATTEMPTS,
    NOTIFIED,
    REJECTED,
    Pickup,
    Visitor,
)
from sealpost.pickup.ports import Contents, OutgoingMail, OutgoingSms
from sealpost.pickup.service import PickupService, holder

SUBJECT = steps.SUBJECT_TYPE
WRONG_ANSWER = "That is not the answer."
LOCKED = "Too many wrong tries: ask the sender to send the message again."


class NotIdentified(SealpostError):
    """A step that needs the recipient identified first (HTTP 403)."""

    status = 403
    code = "not_identified"
    title = "Identify yourself first"


class PickupPage:
    def __init__(self, service: PickupService, contents: Contents) -> None:
        self.service = service
        self.repo = service.repo
        self.access = service.access
        self.contents = contents

    def _now(self) -> datetime:
        return self.service.clock()

    # -- links and sessions ----------------------------------------------------------------

    def by_link(self, token: str) -> Pickup:
        """What a link opens, without spending it."""
        grant = self.access.link(token, SUBJECT)
        found = self.repo.get(grant.holder.subject_id) if grant else None
        if grant is None or found is None or found.party_id != grant.holder.party_id:
            raise NotFound("This link is not valid.")
        if grant.used_at is not None:
            raise Gone("This link was already opened. Use the latest email we sent you.")
        if grant.expires_at <= self._now():
            raise Gone("This link has expired.")
        return found

    def spent(self, token: str) -> bool:
        """The link was opened (by a page whose script may still hold its session)."""
        grant = self.access.link(token, SUBJECT)
        return grant is not None and grant.used_at is not None

    def open(self, token: str, visitor: Visitor) -> tuple[str, Pickup]:
        """Spend the link for a page session; NotificationAccessTracking."""
        found = self.by_link(token)
        now = self._now()
        evidence = steps.record(
            found, "NotificationAccessTracking", now, visitor=visitor, details={"opened": "link"}
        )
        with self.repo.transaction() as conn:
            grant = self.access.link(token, SUBJECT)
            assert grant is not None
            session = self.access.open_session_in(
                conn,
                token,
                grant,
                now=now,
                expires_at=now + timedelta(minutes=self.service.config.session_minutes),
                ip=visitor.ip,
                user_agent=visitor.user_agent,
            )
            if session is None:
                raise Gone("This link was already opened. Use the latest email we sent you.")
            self.repo.set_in(conn, found.communication_id, where_null="opened_at", opened_at=now)
            self.repo.add_evidence_in(conn, [evidence])
        after = self.repo.get(found.communication_id)
        assert after is not None
        return session, after

    def by_session(self, token: str | None) -> tuple[Pickup, str]:
        grant = self.access.session(token, SUBJECT, self._now())
        found = self.repo.get(grant.holder.subject_id) if grant else None
        if grant is None or found is None or token is None:
            raise Gone("This page has expired: open the link of the latest email again.")
        return found, token_digest(token)

    @staticmethod
    def identified(p: Pickup, session: str) -> bool:
        return p.identified_at is not None and p.identified_session == session

    def view(self, p: Pickup, session: str) -> dict[str, Any]:
        """What the page shows: never the content, and the sender only where allowed."""
        challenge = self.access.challenge(holder(p)) if p.identification != CHALLENGE else None
        attempts = challenge.attempts if challenge else p.attempts
        return {
            "state": p.state,
            "identification": p.identification,
            "consent": p.consent,
            "identified": self.identified(p, session),
            "sender": (p.sender_name or p.sender) if p.sender_visible else None,
            "question": p.challenge_question if p.identification == CHALLENGE else None,
            "attempts_left": max(MAX_ATTEMPTS - attempts, 0),
            "expires_at": p.expires_at.isoformat() if p.expires_at else None,
            "handed_over": p.handed_over_at is not None,
        }

    # -- identification --------------------------------------------------------------------

    def _refuse_if_expired(self, p: Pickup) -> None:
        """The window is over at ``expires_at`` itself, whether or not the worker came by:
        the page records AcceptanceRejectionExpiry (once: the same compare-and-set as the
        worker's) and refuses the step (409)."""
        now = self._now()
        if p.state == NOTIFIED and p.expires_at is not None and now >= p.expires_at:
            self.service.expire(p, now)
            raise Conflict("This message is no longer available (expired).")

    def _open_for_identification(self, p: Pickup) -> None:
        """A recipient may identify while the pickup is open, and again (a later link) once
        the message is theirs; never after a rejection or the expiry."""
        self._refuse_if_expired(p)
        if p.state not in (NOTIFIED, ACCEPTED, HANDED_OVER):
            raise Conflict(f"This message is no longer available ({p.state}).")

    def send_code(self, p: Pickup, session: str, visitor: Visitor) -> dict[str, Any]:
        """A one-time code by the channel the sender chose (a certified email or an SMS),
        good only in this page ``session``."""
        self._open_for_identification(p)
        if p.identification == CHALLENGE:
            raise InvalidInput("This message asks a question, not a code.")
        channel, to = (EMAIL, p.recipient) if p.identification == EMAIL_OTP else (SMS, p.phone)
        assert to is not None
        text = "Your code to open the certified message / Su código: {code} (10 min)."

        def deliver(code: str) -> str:
            details = {"pickup_of": p.communication_id, "purpose": "code"}
            if channel == EMAIL:
                return self.service.mailer.send(
                    OutgoingMail(
                        tenant_id=p.tenant_id,
                        sender=self.service.config.mail_from,
                        to=to,
                        subject="Your code / Su código",
                        text=text.format(code=code),
                        identification={"method": "registered-pickup"},
                        details=details,
                        access_secret=True,
                    )
                )
            if self.service.sms is None:
                raise InvalidInput("SMS codes are not available on this Sealpost.")
            return self.service.sms.send(
                OutgoingSms(p.tenant_id, to, text.format(code=code), details, access_secret=True)
            )

        sent = self.access.send_code(
            holder(p),
            channel=channel,
            to=to,
            deliver=deliver,
            now=self._now(),
            session=session,
            ip=visitor.ip,
        )
        return {
            "sent_to": mask(to, channel),
            "expires_at": sent.expires_at.isoformat() if sent.expires_at else None,
        }

    def identify(self, p: Pickup, session: str, answer: str, visitor: Visitor) -> Pickup:
        """Check the code or the answer (counted); on success the recipient is identified for
        this page, and in consent mode the choice is offered (NotificationForAcceptance)."""
        self._open_for_identification(p)
        now = self._now()
        with self.repo.transaction() as conn:
            if p.identification == CHALLENGE:
                if p.attempts >= MAX_ATTEMPTS:
                    raise Locked(LOCKED)
                attempts = self.repo.take_attempt_in(conn, p.communication_id, MAX_ATTEMPTS)
                if attempts is None:
                    raise Locked(LOCKED)
                matched = steps.answer_matches(answer, p.challenge_hash or "")
                locked = not matched and attempts >= MAX_ATTEMPTS
            else:
                check = self.access.check_code_in(
                    conn, holder(p), answer, now, visitor.ip, session=session
                )
                matched, locked, attempts = check.matched, check.locked, check.attempts
            if locked:
                self.repo.add_evidence_in(conn, [self._lockout(p, now, visitor, attempts)])
            if matched:
                self.repo.set_in(
                    conn, p.communication_id, identified_at=now, identified_session=session
                )
                if p.consent == CONSENT and p.offered_at is None and p.state == NOTIFIED:
                    offered = steps.record(
                        p, "NotificationForAcceptance", now, visitor=visitor, identified=True
                    )
                    self.repo.set_in(conn, p.communication_id, offered_at=now)
                    self.repo.add_evidence_in(conn, [offered])
        if not matched:
            if locked:
                raise Locked(LOCKED)
            left = max(MAX_ATTEMPTS - attempts, 0)
            raise InvalidInput(
                f"{WRONG_ANSWER if p.identification == CHALLENGE else 'Wrong code.'}"
                f" {left} tries left."
            )
        after = self.repo.get(p.communication_id)
        assert after is not None
        return after

    @staticmethod
    def _lockout(p: Pickup, now: datetime, visitor: Visitor, attempts: int) -> EvidenceRecord:
        """The wrong try that locks the recipient out is evidence: the recipient could not be
        brought to the acceptance step (ETSI EN 319 522-3 Table 2, C.2
        NotificationForAcceptanceFailure, reason ``identification_failed``).  Written once,
        by the one check that takes the last attempt (the count is atomic); only the sender's
        resend (:meth:`PickupService.resend`) lets the recipient try again."""
        return steps.record(
            p,
            "NotificationForAcceptanceFailure",
            now,
            visitor=visitor,
            reasons=[
                Reason(
                    "identification_failed",
                    f"{attempts} wrong {'answers' if p.identification == CHALLENGE else 'codes'}"
                    " in a row: the recipient is locked out until the sender sends the message"
                    " again.",
                )
            ],
            details={
                "identification_failed": {
                    "method": p.identification,
                    "attempts": attempts,
                }
            },
        )

    # -- consent ---------------------------------------------------------------------------

    def _decide(self, p: Pickup, session: str, visitor: Visitor, reject: str | None) -> Pickup:
        if not self.identified(p, session):
            raise NotIdentified("Identify yourself first.")
        if p.consent != CONSENT:
            raise Conflict("This message needs no acceptance.")
        self._refuse_if_expired(p)
        now = self._now()
        state = REJECTED if reject is not None else ACCEPTED
        if reject is not None:
            text = reject.strip() or "The recipient rejected the message (no reason given)."
            evidence = steps.record(
                p,
                "ConsignmentRejection",
                now,
                visitor=visitor,
                identified=True,
                reasons=[Reason("rejected_by_recipient", text)],
                details={"reason_given": bool(reject.strip())},
            )
        else:
            evidence = steps.record(
                p, "ConsignmentAcceptance", now, visitor=visitor, identified=True
            )
        with self.repo.transaction() as conn:
            if not self.repo.set_in(
                conn,
                p.communication_id,
                expect_states=(NOTIFIED,),
                state=state,
                decided_at=now,
                reason=(reject.strip() or None) if reject is not None else None,
            ):
                current = self.repo.get_in(conn, p.communication_id)
                raise Conflict(
                    f"This message was already {current.state if current else 'closed'}."
                )
            self.repo.add_evidence_in(conn, [evidence])
            self.service.states.finish_in(conn, p.communication_id, state, now)
        after = self.repo.get(p.communication_id)
        assert after is not None
        return after

    def accept(self, p: Pickup, session: str, visitor: Visitor) -> Pickup:
        return self._decide(p, session, visitor, None)

    def reject(self, p: Pickup, session: str, visitor: Visitor, reason: str) -> Pickup:
        return self._decide(p, session, visitor, reason)

    # -- handover --------------------------------------------------------------------------

    def _may_hand_over(self, p: Pickup, session: str) -> None:
        """Refuse, before anything is read or recorded, a visitor the content is not for."""
        if not self.identified(p, session):
            raise NotIdentified("Identify yourself first.")
        if p.consent == CONSENT and p.state != ACCEPTED:
            raise Conflict(
                "Accept the message first."
                if p.state == NOTIFIED
                else f"This message is no longer available ({p.state})."
            )
        if p.consent == BASIC and p.state not in (NOTIFIED, HANDED_OVER):
            raise Conflict(f"This message is no longer available ({p.state}).")
        if p.consent == BASIC:
            self._refuse_if_expired(p)

    def _hand_over(self, p: Pickup, session: str, visitor: Visitor) -> Pickup:
        """ContentHandover, once: after acceptance (consent) or identification (basic).
        Callers read the content first: a handover is recorded only for bytes Sealpost could
        actually hand over (a blob missing from the store records nothing)."""
        self._may_hand_over(p, session)
        if p.handed_over_at is not None:
            return p
        now = self._now()
        evidence = steps.record(
            p,
            "ContentHandover",
            now,
            visitor=visitor,
            identified=True,
            details={"content_sha256": p.content_sha256},
        )
        with self.repo.transaction() as conn:
            if p.consent == BASIC:
                won = self.repo.set_in(
                    conn,
                    p.communication_id,
                    expect_states=(NOTIFIED,),
                    state=HANDED_OVER,
                    decided_at=now,
                    handed_over_at=now,
                )
            else:
                won = self.repo.set_in(
                    conn,
                    p.communication_id,
                    expect_states=(ACCEPTED,),
                    where_null="handed_over_at",
                    handed_over_at=now,
                )
            if won:
                self.repo.add_evidence_in(conn, [evidence])
                if p.consent == BASIC:
                    self.service.states.finish_in(conn, p.communication_id, HANDED_OVER, now)
                else:
                    self.service.states.touch_in(conn, p.communication_id, now)
        after = self.repo.get(p.communication_id)
        assert after is not None
        if after.handed_over_at is None:
            raise Conflict(f"This message is no longer available ({after.state}).")
        return after

    def content(self, p: Pickup, session: str, visitor: Visitor) -> dict[str, Any]:
        self._may_hand_over(p, session)
        raw = self.contents.get(p.content_sha256, of=Subject("communication", p.communication_id))
        p = self._hand_over(p, session, visitor)
        return {
            "subject": p.subject,
            "sender": p.sender_name or p.sender,
            "sender_address": p.sender,
            "text": content.text_of(raw),
            "html": content.html_of(raw),
            "attachments": [
                {
                    "index": a.index,
                    "filename": a.filename,
                    "content_type": a.content_type,
                    "size": a.size,
                }
                for a in content.attachments(raw)
            ],
            "size": len(raw),
        }

    def download(
        self, p: Pickup, session: str, visitor: Visitor, part: str
    ) -> tuple[str, str, bytes]:
        """The original (.eml, ``part="eml"``) or one attachment; ContentAccessTracking."""
        self._may_hand_over(p, session)
        raw = self.contents.get(p.content_sha256, of=Subject("communication", p.communication_id))
        p = self._hand_over(p, session, visitor)
        if part == "eml":
            name, ctype, data = "message.eml", "message/rfc822", raw
        else:
            numbered = part.isascii() and part.isdigit()  # not "\u00b2": a digit to isdigit
            found = content.attachment(raw, int(part)) if numbered else None
            if found is None:
                raise NotFound(f"no attachment {part[:20]!r}")
            meta, data = found
            name, ctype = meta.filename, meta.content_type
        now = self._now()
        evidence = steps.record(
            p,
            "ContentAccessTracking",
            now,
            visitor=visitor,
            identified=True,
            details={
                "download": {
                    "part": part,
                    "filename": name,
                    "content_type": ctype,
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            },
        )
        with self.repo.transaction() as conn:
            self.repo.add_evidence_in(conn, [evidence])
            self.service.states.touch_in(conn, p.communication_id, now)
        return name, ctype, data
