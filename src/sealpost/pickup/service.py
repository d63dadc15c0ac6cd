"""Registered pickup, the sender's side: opening a pickup, the notice and its reminders, the
notice's own delivery, and the end of the window.

* :meth:`PickupService.open_in` runs inside the submission's transaction: the communication
  and its pickup exist together or not at all.
* :meth:`PickupService.run_due` (the pickup worker, ``tasks.py``) sends each notice — a
  certified email of its own, without the content and, where the policy hides the sender,
  without the sender's name (ConsignmentNotification, or ConsignmentNotificationFailure when it
  cannot be accepted) —, records NotificationDelivered (or the failure) once the notice's own
  delivery is known, sends reminders before the window closes, and records
  AcceptanceRejectionExpiry when it closed (ETSI EN 319 522-3 C.5; Ley 39/2015 art. 43.2:
  "deemed rejected").  Every step is compare-and-set: any number of workers may run.

The recipient's steps (the page) are in ``recipient.py``.  Nothing here commits on its own
beyond the short transactions it opens for each step.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from sealpost.access.model import Holder
from sealpost.access.service import AccessService
from sealpost.config import Settings
from sealpost.errors import Conflict, InvalidInput, NotFound, SealpostError
from sealpost.ledger.records import Reason
from sealpost.logging import get_logger
from sealpost.phones import checked_number
from sealpost.pickup import sms_text, steps
from sealpost.pickup.model import (
    ACCEPTED,
    CHALLENGE,
    CONSENT,
    CONSIGNMENT_MODES,
    CONSIGNMENT_URIS,
    EXPIRED,
    HANDED_OVER,
    IDENTIFICATIONS,
    MAX_ATTEMPTS,
    MAX_RESENDS,
    NEW,
    NOTICE_CHANNELS,
    NOTIFIED,
    POLICIES,
    SMS_OTP,
    Pickup,
    PickupOptions,
    policy,
)
from sealpost.pickup.ports import (
    CommunicationStates,
    Mailer,
    OutgoingMail,
    OutgoingSms,
    SmsSender,
    SmsStates,
)
from sealpost.pickup.repository import PickupRepository

log = get_logger(__name__)

RESENDABLE = (NOTIFIED, ACCEPTED, HANDED_OVER)
"""States in which the sender may resend: open, or the message is the recipient's already."""

NOTICE_RETRY_SECONDS = 60.0
DEFAULTS_TTL_SECONDS = 5.0
NOTICE_CLAIM_SECONDS = 300.0
"""A worker that claimed a notice and died: another sends it after this long."""


@dataclass(frozen=True)
class PickupConfig:
    public_url: str
    mail_from: str
    default_days: float
    default_hide_sender: bool
    reminder_days: tuple[float, ...]
    session_minutes: float

    @classmethod
    def from_settings(cls, settings: Settings) -> PickupConfig:
        return cls(
            public_url=settings.resolved_public_url,
            mail_from=settings.resolved_pickup_mail_from,
            default_days=settings.pickup_default_days,
            default_hide_sender=settings.pickup_hide_sender,
            reminder_days=tuple(sorted(settings.pickup_reminder_days, reverse=True)),
            session_minutes=settings.pickup_session_minutes,
        )


STATUS_COLUMN = {"email": "notice_status", "sms": "notice_sms_status"}
REFUSED = "refused"
"""A channel's notice refused for good (not a number, not an address): not tried again."""


def usable_channels(pickup: Pickup) -> tuple[str, ...]:
    """The pickup's notice channels, but for one whose notice was refused for good."""
    return tuple(c for c in pickup.channels if getattr(pickup, STATUS_COLUMN[c]) != REFUSED)


def holder(pickup: Pickup) -> Holder:
    """The access kit's key for the recipient of ``pickup``."""
    return Holder(pickup.tenant_id, steps.SUBJECT_TYPE, pickup.communication_id, pickup.party_id)


class PickupService:
    def __init__(
        self,
        repo: PickupRepository,
        access: AccessService,
        mailer: Mailer,
        states: CommunicationStates,
        config: PickupConfig,
        *,
        sms: SmsSender | None = None,
        sms_states: SmsStates | None = None,
        clock: Callable[[], datetime] = steps.utc_now,
    ) -> None:
        self.repo = repo
        self.access = access
        self.mailer = mailer
        self.states = states
        self.config = config
        self.sms = sms
        """The sms domain's sender; None: ``sms_otp`` and SMS notices are refused (422)."""
        self.sms_states = sms_states
        """The sms domain's statuses: an SMS notice's own delivery."""
        self.clock = clock
        self._defaults: dict[str, tuple[str, float]] = {}
        """Tenant -> (default delivery, monotonic time it is good until)."""

    # -- the desk: what communications' submission asks ------------------------------------

    def default_delivery(self, tenant_id: str) -> str:
        """Asked for every submission (SMTP's hot path): read at most every
        :data:`DEFAULTS_TTL_SECONDS` per tenant and process (a change made through this process
        applies at once, through another replica within that time)."""
        now = time.monotonic()
        cached = self._defaults.get(tenant_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = self.repo.settings(tenant_id)
        delivery = found["delivery"] if found else "direct"
        if len(self._defaults) > 10_000:
            self._defaults.clear()
        self._defaults[tenant_id] = (delivery, now + DEFAULTS_TTL_SECONDS)
        return delivery

    def put_settings(self, tenant_id: str, values: dict[str, Any]) -> None:
        self.repo.put_settings(tenant_id, values, self.clock())
        self._defaults.pop(tenant_id, None)

    def resolve(self, tenant_id: str, options: PickupOptions | None) -> dict[str, Any]:
        """Fill in the tenant's defaults and check the choices; the challenge answer leaves
        here only as a hash.  ``InvalidInput`` names the field."""
        chosen = options or PickupOptions()
        defaults = self.repo.settings(tenant_id) or {}
        identification = chosen.identification or defaults.get("identification", "email_otp")
        consent = chosen.consent or defaults.get("consent", CONSENT)
        policy_name = chosen.policy or defaults.get("policy", "default")
        if identification not in IDENTIFICATIONS:
            raise InvalidInput(f"pickup.identification must be one of {', '.join(IDENTIFICATIONS)}")
        if consent not in CONSIGNMENT_MODES:
            raise InvalidInput("pickup.consent must be consent or basic")
        if policy_name not in POLICIES:
            raise InvalidInput(f"pickup.policy must be one of {', '.join(POLICIES)}")
        channels = tuple(dict.fromkeys(chosen.notice or ("email",)))
        if not channels or any(c not in NOTICE_CHANNELS for c in channels):
            raise InvalidInput('pickup.notice is ["email"], ["sms"] or ["email", "sms"]')
        phone, question, answer_hash = None, None, None
        if identification == SMS_OTP:
            if self.sms is None:
                raise InvalidInput(
                    "pickup.identification: sms_otp needs an SMS sender, and none is "
                    "configured on this Sealpost"
                )
            if not chosen.phone:
                raise InvalidInput("pickup.phone: sms_otp needs an E.164 number (+34600111222)")
            phone = checked_number(chosen.phone, "pickup.phone")
        if "sms" in channels:
            if self.sms is None:
                raise InvalidInput(
                    "pickup.notice: a notice by SMS needs an SMS sender, and none is "
                    "configured on this Sealpost"
                )
            if not chosen.phone:
                raise InvalidInput(
                    "pickup.phone: a notice by SMS needs an E.164 number (+34600111222)"
                )
            phone = checked_number(chosen.phone, "pickup.phone")
        if identification == CHALLENGE:
            if not chosen.challenge_question or not (chosen.challenge_answer or "").strip():
                raise InvalidInput(
                    "pickup.challenge_question and pickup.challenge_answer are required for "
                    "challenge"
                )
            question = chosen.challenge_question
            answer_hash = steps.hash_answer(chosen.challenge_answer or "")
        window = policy(policy_name, default_hide_sender=self.config.default_hide_sender)
        return {
            "identification": identification,
            "consent": consent,
            "policy": policy_name,
            "hide_sender": self.hides_sender(window.hide_sender, defaults),
            "phone": phone,
            "notice": ",".join(channels),
            "challenge_question": question,
            "challenge_hash": answer_hash,
            "evidence": {
                "consignment": CONSIGNMENT_URIS[consent],
                "identification": identification,
                "policy": policy_name,
                "legal_basis": window.legal_basis,
                "notice": list(channels),
            },
        }

    @staticmethod
    def hides_sender(by_policy: bool, defaults: Mapping[str, Any]) -> bool:
        """The sender is hidden when the policy hides it (``fr``; ``default`` with
        ``SEALPOST_PICKUP_HIDE_SENDER``) or the tenant chose to (``hide_sender`` of its pickup
        settings): a tenant can hide, never show what the policy hides."""
        return by_policy or bool(defaults.get("hide_sender", False))

    def open_in(
        self,
        conn: Connection,
        *,
        tenant_id: str,
        communication_id: str,
        recipient: str,
        sender: str,
        sender_name: str | None,
        subject: str | None,
        content_sha256: str,
        options: Mapping[str, Any],
        now: datetime,
    ) -> None:
        """The pickup of a communication just accepted, in the submission's transaction; its
        notice goes at the worker's next round."""
        self.repo.insert_in(
            conn,
            {
                "communication_id": communication_id,
                "tenant_id": tenant_id,
                "party_id": str(uuid.uuid4()),
                "state": NEW,
                "recipient": recipient,
                "sender": sender,
                "sender_name": sender_name,
                "subject": subject,
                "content_sha256": content_sha256,
                "identification": options["identification"],
                "consent": options["consent"],
                "policy": options["policy"],
                "hide_sender": int(bool(options["hide_sender"])),
                "phone": options.get("phone"),
                "notice_channels": options.get("notice") or "email",
                "challenge_question": options.get("challenge_question"),
                "challenge_hash": options.get("challenge_hash"),
                "notice_due_at": now,
                "created_at": now,
            },
        )

    def describe(self, tenant_id: str, communication_id: str) -> dict[str, Any] | None:
        """The pickup's state and each step's time, for ``GET /v1/communications/{id}``."""
        p = self.repo.get(communication_id, tenant_id)
        if p is None:
            return None

        def at(moment: datetime | None) -> str | None:
            return None if moment is None else moment.isoformat().replace("+00:00", "Z")

        steps_done = [
            (name, moment)
            for name, moment in (
                ("notified", p.notified_at),
                ("opened", p.opened_at),
                ("identified", p.identified_at),
                ("offered", p.offered_at),
                (p.state, p.decided_at if p.state != HANDED_OVER else None),
                ("handed_over", p.handed_over_at),
            )
            if moment is not None
        ]
        return {
            "state": p.state,
            "identification": p.identification,
            "consent": p.consent,
            "consignment": CONSIGNMENT_URIS[p.consent],
            "policy": p.policy,
            "hide_sender": p.hide_sender,
            "challenge_question": p.challenge_question,
            "notice": {
                "channels": list(p.channels),
                "communication_id": p.notice_communication_id,
                "status": p.notice_status,
                "sms_id": p.notice_sms_id,
                "sms_status": p.notice_sms_status,
                "sent": p.notices_sent,
            },
            "expires_at": at(p.expires_at),
            "reason": p.reason,
            "locked_out": self.locked_out(p),
            "steps": [{"step": name, "at": at(moment)} for name, moment in steps_done],
        }

    # -- the worker ------------------------------------------------------------------------

    def run_due(self, now: datetime | None = None) -> int:
        """One round of the pickup worker; returns how many steps it took."""
        now = now or self.clock()
        done = 0
        for p in self.repo.due_notices(now):
            done += self.send_notice(p, now, reminder=False)
        for p in self.repo.notices_in_flight():
            done += self.confirm_notice(p, now)
        for p in self.repo.due_reminders(now):
            done += self.send_notice(p, now, reminder=True)
        for p in self.repo.due_expiry(now):
            done += self.expire(p, now)
        return done

    def _notice_text(self, p: Pickup, url: str, expires_at: datetime, reminder: bool) -> str:
        sender = None if p.hide_sender else (p.sender_name or p.sender)
        until = policy(p.policy).until_text(expires_at)
        en = [
            ("Reminder: a" if reminder else "A")
            + " certified message is waiting for you"
            + (f" from {sender}." if sender else "."),
            "Open it here (you will be asked to identify yourself): " + url,
            f"You can pick it up before {until}. After that, it counts as not accepted.",
        ]
        es = [
            ("Recordatorio: tiene" if reminder else "Tiene")
            + " una comunicación certificada pendiente"
            + (f" de {sender}." if sender else "."),
            "Acceda aquí (se le pedirá que se identifique): " + url,
            f"Puede recogerla antes del {until}. Después se tendrá por no aceptada.",
        ]
        footer = "Sealpost records every step of this delivery as sealed evidence."
        return "\n".join([*en, "", *es, "", footer])

    def _sms_notice_text(self, p: Pickup, url: str, expires_at: datetime, reminder: bool) -> str:
        """The notice as an SMS: who (unless the policy hides the sender), the single-use
        link and the close as ``dd/mm/yyyy HH:MM`` on the policy's legal clock, the zone
        named (as the email notice states it) — no content, no subject.  GSM-7 only, so it
        stays two segments at most (3GPP TS 23.038; ``sms_text.py``)."""
        sender = None if p.hide_sender else (p.sender_name or p.sender)
        zone = policy(p.policy).zone
        return sms_text.notice(sender, url, expires_at, zone, reminder=reminder)

    def _send_by(
        self,
        p: Pickup,
        channel: str,
        url: str,
        expires_at: datetime,
        reminder: bool,
        *,
        purpose: str | None = None,
    ) -> str:
        """The notice by one channel: a certified email or a certified SMS; returns its id."""
        details = {
            "pickup_of": p.communication_id,
            "purpose": purpose or ("reminder" if reminder else "notice"),
        }
        if channel == "sms":
            if self.sms is None or not p.phone:
                raise InvalidInput("SMS notices are not available on this Sealpost now")
            return self.sms.send(
                OutgoingSms(
                    p.tenant_id,
                    p.phone,
                    self._sms_notice_text(p, url, expires_at, reminder),
                    details,
                    access_secret=True,  # the single-use link: the sender must not read it
                )
            )
        subject = (
            "Reminder: " if reminder else ""
        ) + "A certified message is waiting for you / Comunicación certificada pendiente"
        return self.mailer.send(
            OutgoingMail(
                tenant_id=p.tenant_id,
                sender=self.config.mail_from,
                to=p.recipient,
                subject=subject,
                text=self._notice_text(p, url, expires_at, reminder),
                identification={"method": "registered-pickup"},
                details=details,
                access_secret=True,  # the single-use link: the sender must not read it
            )
        )

    def send_notice(self, p: Pickup, now: datetime, *, reminder: bool) -> int:
        """The notice (or a reminder) by each of the pickup's channels — a certified email, a
        certified SMS or both —, each with a fresh single-use link of its own (opening one
        does not spend the other), holding neither the content nor, where the policy hides
        it, the sender.  A ConsignmentNotification per channel that took it, a
        ConsignmentNotificationFailure per channel that did not; the pickup is notified when
        one channel took it, and the notice is tried again later when none did."""
        claim_until = now + timedelta(seconds=NOTICE_CLAIM_SECONDS)
        window = policy(p.policy, default_hide_sender=self.config.default_hide_sender)
        expires_at = p.expires_at or window.expires_at(now, self.config.default_days)
        with self.repo.transaction() as conn:
            if reminder:
                claimed = self.repo.set_in(
                    conn,
                    p.communication_id,
                    expect_states=(NOTIFIED,),
                    where_equal={"next_reminder_at": p.next_reminder_at},
                    next_reminder_at=self._next_reminder(expires_at, now),
                )
            else:
                claimed = self.repo.set_in(
                    conn,
                    p.communication_id,
                    expect_states=(NEW,),
                    where_equal={"notice_due_at": p.notice_due_at},
                    notice_due_at=claim_until,
                )
            if not claimed:
                return 0
            tokens = {
                channel: self.access.issue_link_in(conn, holder(p), now=now, expires_at=expires_at)
                for channel in usable_channels(p)
            }
        sent: dict[str, str] = {}
        refused: dict[str, Any] = {}
        records = []
        for channel, token in tokens.items():
            url = f"{self.config.public_url}/pickup/{token}"
            try:
                sent[channel] = self._send_by(p, channel, url, expires_at, reminder)
            except SealpostError as exc:
                final = isinstance(exc, InvalidInput)
                log.warning(
                    "pickup.notice_refused",
                    communication_id=p.communication_id,
                    channel=channel,
                    final=final,
                )
                if final:  # the operator's or the mailer's no to this number: final
                    refused[STATUS_COLUMN[channel]] = REFUSED
                records.append(
                    steps.record(
                        p,
                        "ConsignmentNotificationFailure",
                        now,
                        reasons=[Reason("notice_not_accepted", exc.message)],
                        details={"channel": channel, "reminder": reminder, "final": final},
                    )
                )
        if not sent:
            with self.repo.transaction() as conn:
                if not reminder:
                    # Tried again in a minute, unless every channel refused for good.
                    left = [c for c in tokens if STATUS_COLUMN[c] not in refused]
                    self.repo.set_in(
                        conn,
                        p.communication_id,
                        expect_states=(NEW,),
                        notice_due_at=(
                            now + timedelta(seconds=NOTICE_RETRY_SECONDS) if left else None
                        ),
                        **refused,
                    )
                elif refused:
                    self.repo.set_in(conn, p.communication_id, **refused)
                self.repo.add_evidence_in(conn, records)
            return 1
        values: dict[str, Any] = {"notices_sent": p.notices_sent + 1, **refused}
        for channel, notice_id in sent.items():
            carried = (
                {"notice_sms_id": notice_id}
                if channel == "sms"
                else {"notice_communication_id": notice_id}
            )
            records.append(
                steps.record(
                    p,
                    "ConsignmentNotification",
                    now,
                    details={
                        **carried,
                        "channel": channel,
                        "reminder": reminder,
                        "sender_shown": not p.hide_sender,
                        "available_until": expires_at.isoformat(),
                    },
                )
            )
            if channel == "sms":
                values.update(notice_sms_id=notice_id, notice_sms_status="sent")
            else:
                values.update(notice_communication_id=notice_id, notice_status="sent")
        if not reminder:
            values.update(
                state=NOTIFIED,
                notified_at=now,
                expires_at=expires_at,
                notice_due_at=None,
                next_reminder_at=self._next_reminder(expires_at, now),
            )
        with self.repo.transaction() as conn:
            self.repo.set_in(conn, p.communication_id, **values)
            self.repo.add_evidence_in(conn, records)
        return 1

    def _next_reminder(self, expires_at: datetime, now: datetime) -> datetime | None:
        """The next reminder time after ``now`` (None: no more reminders)."""
        for days in self.config.reminder_days:  # largest first
            moment = expires_at - timedelta(days=days)
            if moment > now:
                return moment
        return None

    def confirm_notice(self, p: Pickup, now: datetime) -> int:
        """NotificationDelivered once a notice's own delivery is recorded — the recipient's
        server took the email; the operator reported the SMS delivered to the handset —,
        ConsignmentNotificationFailure when it could not be delivered.  An SMS without a final
        receipt in time (``unconfirmed``) is neither: it stops being watched, and nothing
        claims it arrived."""
        done = 0
        if p.notice_status == "sent" and p.notice_communication_id is not None:
            done += self._confirm_email(p, now)
        if p.notice_sms_status == "sent" and p.notice_sms_id is not None:
            done += self._confirm_sms(p, now)
        return done

    def _confirm_email(self, p: Pickup, now: datetime) -> int:
        assert p.notice_communication_id is not None
        status = self.states.status(p.notice_communication_id)
        if status in ("delivered", "relayed"):
            event, reasons, new = "NotificationDelivered", [], "delivered"
        elif status == "failed":
            reason = Reason("notice_not_delivered", "The notice email could not be delivered.")
            event, reasons, new = "ConsignmentNotificationFailure", [reason], "failed"
        else:
            return 0
        details = {"notice_communication_id": p.notice_communication_id, "notice_status": status}
        if p.notice_channels != "email":  # records of email-only pickups keep their shape
            details["channel"] = "email"
        evidence = steps.record(p, event, now, reasons=reasons, details=details)
        with self.repo.transaction() as conn:
            if not self.repo.set_in(
                conn,
                p.communication_id,
                where_equal={
                    "notice_status": "sent",
                    "notice_communication_id": p.notice_communication_id,
                },
                notice_status=new,
            ):
                return 0
            self.repo.add_evidence_in(conn, [evidence])
        return 1

    def _confirm_sms(self, p: Pickup, now: datetime) -> int:
        """The SMS notice's own receipts decide (3GPP TS 23.040 status report, SMPP 3.4
        Appendix B): ``delivered`` only from the operator's report of delivery."""
        assert p.notice_sms_id is not None
        status = self.sms_states.status(p.notice_sms_id) if self.sms_states else None
        evidence = None
        if status == "delivered":
            new = "delivered"
            evidence = steps.record(
                p,
                "NotificationDelivered",
                now,
                details={"channel": "sms", "notice_sms_id": p.notice_sms_id, "sms_status": status},
            )
        elif status in ("undelivered", "failed"):
            new = "failed"
            evidence = steps.record(
                p,
                "ConsignmentNotificationFailure",
                now,
                reasons=[
                    Reason("notice_not_delivered", f"The notice SMS was not delivered ({status}).")
                ],
                details={"channel": "sms", "notice_sms_id": p.notice_sms_id, "sms_status": status},
            )
        elif status == "unconfirmed":
            new = "unconfirmed"
        else:
            return 0
        with self.repo.transaction() as conn:
            if not self.repo.set_in(
                conn,
                p.communication_id,
                where_equal={"notice_sms_status": "sent", "notice_sms_id": p.notice_sms_id},
                notice_sms_status=new,
            ):
                return 0
            if evidence is not None:
                self.repo.add_evidence_in(conn, [evidence])
        return 1

    def expire(self, p: Pickup, now: datetime) -> int:
        """The window closed without acceptance or rejection: AcceptanceRejectionExpiry, the
        communication ``unclaimed``.  Loses to an acceptance or rejection made first."""
        window = policy(p.policy, default_hide_sender=self.config.default_hide_sender)
        deemed = " (deemed rejected)" if p.policy == "es" else ""
        closed = window.until_text(p.expires_at) if p.expires_at else "the window closed"
        text = f"Not accepted or rejected before {closed}; {window.legal_basis}{deemed}."
        evidence = steps.record(
            p,
            "AcceptanceRejectionExpiry",
            now,
            reasons=[Reason("expired", text)],
            details={"expired_at": p.expires_at.isoformat() if p.expires_at else None},
        )
        with self.repo.transaction() as conn:
            if not self.repo.set_in(
                conn,
                p.communication_id,
                expect_states=(NOTIFIED,),
                state=EXPIRED,
                decided_at=now,
                reason="expired",
            ):
                return 0
            self.repo.add_evidence_in(conn, [evidence])
            self.states.finish_in(conn, p.communication_id, "unclaimed", now)
        return 1

    def locked_out(self, p: Pickup) -> bool:
        """Too many wrong codes or answers: only :meth:`resend` lets the recipient try again."""
        if p.identification == CHALLENGE:
            return p.attempts >= MAX_ATTEMPTS
        found = self.access.challenge(holder(p))
        return found is not None and found.locked

    # -- the sender's resend ---------------------------------------------------------------

    def resend(self, tenant_id: str, communication_id: str) -> dict[str, Any]:
        """The sender sends the notice again, by each of the pickup's channels (email, SMS or
        both: :meth:`_send_by`), each with a fresh single-use link, while the pickup is open
        (``notified``, before the window closes) and also once the recipient accepted (or, in
        basic mode, was handed the content): a recipient whose page was lost (a reload, a
        closed tab) identifies again and goes straight to the content — no new acceptance.

        * The holder's older links not opened yet are revoked (review2 M1): whoever holds one
          can no longer open a page and lock the recipient out again.
        * A locked-out recipient gets code sends and wrong tries from zero (the sender vouches
          for a new try: the access kit's ``reset_codes_in``, and the challenge's own counter),
          and the pages opened before are closed.  Otherwise open pages stay open: an
          identified recipient is not thrown out by a resend (review2 M3).
        * At most :data:`MAX_RESENDS` per pickup, then 409.
        * At or after ``expires_at`` an open pickup expires first (AcceptanceRejectionExpiry,
          as the page does) and the resend is refused (409).

        Recorded as ConsignmentNotification per channel with ``details.reason = "resent"``
        (ETSI EN 319 522-3 Table 2: a notification of the consignment), or
        ConsignmentNotificationFailure for a channel that did not take it.  The window does
        not move.  404 for another tenant's communication."""
        now = self.clock()
        p = self.repo.get(communication_id, tenant_id)
        if p is None:
            raise NotFound("no pickup for this communication")
        if p.state == NOTIFIED and p.expires_at is not None and now >= p.expires_at:
            self.expire(p, now)
            raise Conflict("the pickup is expired: its window closed, nothing to resend")
        if p.state not in RESENDABLE or p.expires_at is None:
            raise Conflict(
                f"the pickup is {p.state}: "
                + ("its first notice is on its way" if p.state == NEW else "nothing to resend")
            )
        if not usable_channels(p):
            raise Conflict("every channel of this pickup refused its notice for good")
        if p.resends >= MAX_RESENDS:
            raise Conflict(
                f"the notice was already resent {p.resends} times (at most {MAX_RESENDS})"
            )
        locked = self.locked_out(p)
        # An accepted message stays available after the window: its new link lives as long
        # as a first notice's would.
        link_until = (
            p.expires_at
            if p.state == NOTIFIED
            else max(p.expires_at, now + timedelta(days=self.config.default_days))
        )
        with self.repo.transaction() as conn:
            values: dict[str, Any] = {"resends": p.resends + 1}
            if locked:
                values["attempts"] = 0
            if not self.repo.set_in(
                conn,
                communication_id,
                expect_states=(p.state,),
                where_equal={"resends": p.resends},
                **values,
            ):
                current = self.repo.get_in(conn, communication_id)
                raise Conflict(
                    f"the pickup is {current.state if current else 'gone'}, or resent meanwhile"
                )
            self.access.revoke_links_in(conn, holder(p), now)
            if locked:
                self.access.reset_codes_in(conn, holder(p))
                self.access.end_sessions_in(conn, holder(p), now)
            tokens = {
                channel: self.access.issue_link_in(conn, holder(p), now=now, expires_at=link_until)
                for channel in usable_channels(p)
            }
        sent: dict[str, str] = {}
        records = []
        failure: SealpostError | None = None
        for channel, token in tokens.items():
            url = f"{self.config.public_url}/pickup/{token}"
            try:
                sent[channel] = self._send_by(p, channel, url, link_until, False, purpose="resent")
            except SealpostError as exc:
                failure = exc
                records.append(
                    steps.record(
                        p,
                        "ConsignmentNotificationFailure",
                        now,
                        reasons=[Reason("notice_not_accepted", exc.message)],
                        details={"channel": channel, "reminder": False, "reason": "resent"},
                    )
                )
        update: dict[str, Any] = {"notices_sent": p.notices_sent + (1 if sent else 0)}
        for channel, notice_id in sent.items():
            carried = (
                {"notice_sms_id": notice_id}
                if channel == "sms"
                else {"notice_communication_id": notice_id}
            )
            records.append(
                steps.record(
                    p,
                    "ConsignmentNotification",
                    now,
                    details={
                        **carried,
                        "channel": channel,
                        "reminder": False,
                        "reason": "resent",
                        "codes_reset": locked,
                        "sender_shown": not p.hide_sender,
                        "available_until": link_until.isoformat(),
                    },
                )
            )
            if channel == "sms":
                update.update(notice_sms_id=notice_id, notice_sms_status="sent")
            else:
                update.update(notice_communication_id=notice_id, notice_status="sent")
        with self.repo.transaction() as conn:
            self.repo.set_in(conn, communication_id, **update)
            self.repo.add_evidence_in(conn, records)
        if not sent and failure is not None:
            raise failure
        return {
            "communication_id": communication_id,
            "notice_communication_id": sent.get("email"),
            "notice_sms_id": sent.get("sms"),
            "channels": list(sent),
            "available_until": link_until.isoformat().replace("+00:00", "Z"),
            "notices_sent": update["notices_sent"],
            "resends_left": MAX_RESENDS - p.resends - 1,
        }
