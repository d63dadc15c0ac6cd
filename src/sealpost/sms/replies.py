"""Answers to certified SMS: a mobile-originated message matched to the SMS it answers.

SMS has no thread identifier: an answer names only the handset (``source_addr``) and the
number it was sent to (``destination_addr``).  It is matched to the newest SMS sent to that
handset whose originator is that destination, else to the newest SMS sent to the handset at
all (operators often deliver answers to a shared long number whatever the sender id was).
That SMS's tenant owns the answer; an answer to a number Sealpost never texted is
acknowledged and dropped (logged), so the operator does not resend it forever.  When the SMS
so matched belong to more than one tenant (two tenants texted the handset from the same
originator, the default one say), the answer names none of them: it is dropped the same way
(its text must not reach, nor stop the sequence of, whichever texted last), except an
opt-out, which each of those tenants records on its own newest SMS.

The answer is stored with the operator's PDU body exactly as received, and a
``urn:sealpost:event:ReplyReceived`` record goes on the SMS it answers (an answer is a new
message from the recipient, not a step of the SMS's delivery: no ETSI name fits).  A text
that is only one of :data:`OPT_OUT_KEYWORDS` (case and surrounding spaces ignored) is an
opt-out: the number joins the tenant's opt-out list and the event is
``sealpost.sms.opted_out`` instead of ``sealpost.sms.replied``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from sealpost.errors import InvalidInput
from sealpost.ledger.records import ContentInfo, Party, Subject, new_record
from sealpost.logging import get_logger
from sealpost.phones import checked_number
from sealpost.sms.providers import InboundSms
from sealpost.sms.reply_repository import OptOut, SmsReply, SmsReplyRepository
from sealpost.sms.repository import SmsRepository

log = get_logger(__name__)

OPT_OUT_KEYWORDS = (
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "OPTOUT",
    "REVOKE",
    "BAJA",
    "ARRET",
    "ARRÊT",
    "STOPP",
)
"""The carriers' standard English set (CTIA: STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT;
with OPTOUT and REVOKE), Spanish, French (with and without the accent), German/Scandinavian."""

_QUOTES = "\"'`“”‘’«»„‹›()[]"


def opt_out_keyword(text: str) -> str | None:
    """The keyword when the whole text is one of :data:`OPT_OUT_KEYWORDS`: trimmed, case
    ignored, compatibility forms folded (NFKC: full-width letters), quotes and a final ``.``
    or ``!`` ignored, ``OPT-OUT`` / ``OPT OUT`` read as OPTOUT; else None (``stop calling me
    at work`` is a reply)."""
    word = unicodedata.normalize("NFKC", text).strip().rstrip(".!").strip().strip(_QUOTES)
    word = word.strip().rstrip(".!").strip().upper()
    if word in ("OPT-OUT", "OPT OUT"):
        word = "OPTOUT"
    return word if word in OPT_OUT_KEYWORDS else None


def _plain(address: str) -> str:
    """An originator for comparison: digits of a number, else the sender id in upper case."""
    digits = re.sub(r"[^0-9]", "", address)
    return digits if address.lstrip("+").isdigit() else address.strip().upper()


class SmsReplies:
    """The :class:`~sealpost.sms.providers.InboundSink` of the operator adapters."""

    def __init__(
        self,
        sms: SmsRepository,
        repo: SmsReplyRepository,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sms = sms
        self.repo = repo
        self.clock = clock

    def inbound(self, message: InboundSms) -> None:
        """Match, store and evidence an answer (durable on return); see the module text."""
        try:
            phone = checked_number(message.phone, "source_addr")
        except InvalidInput:
            phone = message.phone
        candidates = self.repo.latest_to(phone)
        if not candidates:
            log.info("sms.reply_unmatched", provider=message.provider)
            return
        wanted = _plain(message.destination)
        by_originator = [c for c in candidates if _plain(c[1]) == wanted]
        matched = by_originator or candidates
        keyword = opt_out_keyword(message.text)
        newest: dict[str, str] = {}  # tenant id -> its newest matching SMS
        for sms_id, _, tenant_id in matched:
            newest.setdefault(tenant_id, sms_id)
        if len(newest) > 1 and keyword is None:
            # Several tenants texted this handset from that originator: the answer names
            # none of them.  Its text must not reach (nor stop the sequence of) whichever
            # texted last; acknowledged and dropped, as an answer from a stranger is.
            log.warning("sms.reply_ambiguous", provider=message.provider, tenants=len(newest))
            return
        # a STOP that could be for several tenants is honoured by each of them
        for sms_id in newest.values():
            self._keep(message, phone, sms_id, keyword, "originator" if by_originator else "number")

    def _keep(
        self,
        message: InboundSms,
        phone: str,
        sms_id: str,
        keyword: str | None,
        matched_by: str,
    ) -> None:
        sms = self.sms.get(sms_id)
        if sms is None:
            return
        now = self.clock()
        reply_id = str(uuid.uuid4())
        data = message.text.encode("utf-8")
        text_sha256 = hashlib.sha256(data).hexdigest()
        raw_sha256 = hashlib.sha256(message.raw).hexdigest()
        reply = {
            "reply_id": reply_id,
            "provider": message.provider,
            "destination": message.destination,
            "matched_by": matched_by,
            "raw_sha256": raw_sha256,
            "opt_out": keyword is not None,
            "automatic": False,
        }
        if keyword is not None:
            reply["keyword"] = keyword
        record = new_record(
            tenant_id=sms.tenant_id,
            event="ReplyReceived",
            subject=Subject("sms", sms.id),
            event_time=now,
            submission_time=sms.submitted_at,
            sender=Party(phone),
            recipient=Party(sms.sender),
            content=ContentInfo(text_sha256, len(data)),
            details={"channel": "sms", "reply": reply},
        )
        row = {
            "id": reply_id,
            "tenant_id": sms.tenant_id,
            "sms_id": sms.id,
            "received_at": now,
            "phone": phone[:32],
            "destination": message.destination[:32],
            "text": message.text.replace("\0", "\ufffd"),
            "text_sha256": text_sha256,
            "provider": message.provider[:16],
            "raw": message.raw,
            "raw_sha256": raw_sha256,
            "opt_out": int(keyword is not None),
            "record_id": record.id,
        }
        opt_out = None
        if keyword is not None:
            opt_out = {
                "tenant_id": sms.tenant_id,
                "phone": phone[:32],
                "opted_out_at": now,
                "keyword": keyword,
                "sms_id": sms.id,
                "reply_id": reply_id,
            }
        self.repo.store(row, record, opt_out)
        log.info("sms.reply_received", sms=sms.id, opt_out=keyword is not None)

    def replies(self, tenant_id: str, sms_id: str) -> list[SmsReply]:
        return self.repo.replies(tenant_id, sms_id)

    def opt_outs(self, tenant_id: str, limit: int, after: str | None = None) -> list[OptOut]:
        return self.repo.opt_outs(tenant_id, limit, after)

    def opted_out(self, tenant_id: str, phone: str) -> bool:
        return self.repo.opted_out(tenant_id, phone)
