"""The inbound port: bounces coming back, replies, and mail asking to be certified by its address.

Three kinds of mail are accepted here, nothing else (no open relay):

* **bounces** to the VERP return path ``bounces+<communication id>@<bounce domain>``: an RFC
  3464 DSN whose recipient failed becomes NonDelivery evidence for that communication, even
  after an earlier RelayToNonERDS (the recipient's server accepted, then bounced); a
  "delayed" DSN is noted, not final.  A bounce with no usable VERP is matched by the returned
  message's Message-ID.
* **certify addresses**: ``alice@example.com.<certify domain>`` from an ordinary mail client,
  or ``certify@<certify domain>`` in Bcc, which certifies the message for its To and Cc.
  It is accepted only if it carries a valid DKIM signature (RFC 6376) of a domain a tenant
  registered; the signature is then the sender's identification in the evidence, and the
  message is submitted for ``alice@example.com``.  Anything else is refused, with
  SubmissionRejection evidence when the From domain names a tenant.
* **replies** to ``replies+<communication id>.<tag>@<bounce domain>`` (the Reply-To of a
  direct email with reply capture on), or to ``replies@`` matched by In-Reply-To/References
  (:mod:`~sealpost.communications.email.reply_intake`).
* **journal** mail to a tenant's ``journal+<token>@<bounce domain>``, archived byte-exact
  (:mod:`~sealpost.communications.email.journal`).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parsedate_to_datetime
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from sealpost.communications.email.addresses import (
    AddressError,
    domain_of,
    split_address,
    unwrap_certify_address,
)
from sealpost.communications.email.client_limits import SmtpClientLimits
from sealpost.communications.email.dkim import (
    KeyLookup,
    dns_key_lookup,
    pinned_key_lookup,
    verify_message,
)
from sealpost.communications.email.dsn import DeliveryReport, RecipientStatus, parse_dsn
from sealpost.communications.email.journal import (
    JOURNAL_FAILED,
    UNKNOWN_JOURNAL_ADDRESS,
    SpooledData,
    envelope_options,
    journal_token,
    keep_alive,
    read_data,
)
from sealpost.communications.email.mime import MessageFacts, describe_message
from sealpost.communications.email.refusals import (
    ContentRefused,
    SubmissionRefused,
    check_content,
)
from sealpost.communications.email.reply_intake import ReplyIntake
from sealpost.communications.email.smtp_server import (
    STORAGE_FULL,
    SealpostSMTP,
    accepted_reply,
    client_ip,
    tls_details,
)
from sealpost.communications.email.submission import SubmissionRequest, SubmissionService
from sealpost.communications.email.verp import BounceAddresses
from sealpost.communications.ports import JournalEnvelope, JournalSink
from sealpost.communications.repository import (
    DELIVERED,
    FAILED,
    QUEUED,
    RELAYED,
    Communication,
    CommunicationRepository,
)
from sealpost.config import Settings
from sealpost.db.full import StorageFull, is_storage_full
from sealpost.ledger.records import Party, Reason, Subject, new_record
from sealpost.logging import get_logger
from sealpost.tenants.senders import SenderRepository

log = get_logger(__name__)

NOT_HERE = (
    "550 5.7.1 Relaying denied: this server only takes bounces, replies and certify addresses"
)
UNKNOWN_REPLY_ADDRESS = "550 5.1.1 No such reply address: it names no communication"


class BounceProcessor:
    """Turns a DSN into NonDelivery evidence for the communication it is about.

    Which communication: the signed VERP return path names it; without one (a bounce sent to
    the plain bounce address) the returned Message-ID *and* the failed recipient must match,
    within a single tenant, or nothing is changed.  A bounce after the recipient's server
    accepted the message (RelayToNonERDS) contradicts that evidence, so it counts only
    when it comes from the very server that accepted it: the recipient, who also sees the
    return path, cannot forge a non-delivery from elsewhere.
    """

    def __init__(self, repository: CommunicationRepository) -> None:
        self.repository = repository

    def process(self, raw: bytes, verp_ids: list[str], client_ip: str | None = None) -> list[str]:
        """Returns the ids of the communications that got NonDelivery evidence."""
        report = parse_dsn(raw)
        if report is None:
            log.info("bounce.not_a_dsn", verp=verp_ids)
            return []
        failed: list[str] = []
        for communication, status in self._targets(report, verp_ids):
            if communication.status == FAILED:
                continue
            if communication.status == DELIVERED and not self._from_consignee(
                communication, client_ip
            ):
                log.warning(
                    "bounce.unauthenticated_after_delivery",
                    communication=communication.id,
                    client_ip=client_ip,
                )
                continue
            text = status.diagnostic_code or f"DSN status {status.status}"
            record = new_record(
                tenant_id=communication.tenant_id,
                event="NonDelivery",
                subject=Subject("communication", communication.id),
                submission_time=communication.submitted_at,
                sender=Party(communication.sender),
                recipient=Party(communication.recipient),
                application_identifier=communication.message_id,
                reasons=(Reason(f"dsn-{status.status}", text),),
                details={
                    "dsn": {
                        "reporting_mta": report.reporting_mta,
                        "final_recipient": status.final_recipient,
                        "action": status.action,
                        "status": status.status,
                        "diagnostic_code": status.diagnostic_code,
                        "remote_mta": status.remote_mta,
                    },
                    "received_from": client_ip,
                    "after_status": communication.status,
                },
            )
            moved = self.repository.mark_final(
                communication.id,
                FAILED,
                text,
                [record],
                only_if_status=[QUEUED, DELIVERED, RELAYED],
            )
            if moved:
                failed.append(communication.id)
        return failed

    def _from_consignee(self, communication: Communication, client_ip: str | None) -> bool:
        accepted_by = {
            a["remote_ip"]
            for a in self.repository.attempts(communication.id)
            if a["outcome"] == DELIVERED
        }
        return client_ip is not None and client_ip in accepted_by

    def _targets(
        self, report: DeliveryReport, verp_ids: list[str]
    ) -> list[tuple[Communication, RecipientStatus]]:
        failures = [r for r in report.recipients if r.action == "failed"]
        if not failures:
            return []
        signed = [c for c in (self.repository.get(i) for i in verp_ids) if c is not None]
        if signed:  # the return path names the communication; forwarding may rename the rcpt
            return [(c, _status_for(c, failures) or failures[0]) for c in signed]
        if not report.original_message_id:
            return []
        matched = [
            (c, status)
            for c in self.repository.find_by_message_id(report.original_message_id)
            if (status := _status_for(c, failures)) is not None
        ]
        if len({c.tenant_id for c, _ in matched}) > 1:
            log.warning("bounce.ambiguous", message_id=report.original_message_id)
            return []
        return matched


def _status_for(
    communication: Communication, failures: list[RecipientStatus]
) -> RecipientStatus | None:
    wanted = communication.recipient.lower()
    for status in failures:
        if wanted in (status.final_recipient.lower(), (status.original_recipient or "").lower()):
            return status
    return None


class InboundHandler:
    """aiosmtpd handler of the inbound port."""

    def __init__(
        self,
        service: SubmissionService,
        senders: SenderRepository,
        bounces: BounceProcessor,
        settings: Settings,
        return_paths: BounceAddresses,
        *,
        key_lookup: KeyLookup | None = None,
        replies: ReplyIntake | None = None,
        journal: JournalSink | None = None,
        journal_max_bytes: int | None = None,
    ) -> None:
        self.journal = journal
        """The archive's journal (None: journal addresses are not taken here)."""
        self.journal_max_bytes = journal_max_bytes or settings.smtp_max_message_bytes
        self.replies = replies
        """Reply capture (None: replies are not taken here)."""
        self.service = service
        self.senders = senders
        self.bounces = bounces
        self.settings = settings
        self.return_paths = return_paths
        self.dns_lookup = key_lookup or dns_key_lookup()

    def _verp(self, address: str) -> str | None:
        return self.return_paths.communication(address)

    def _is_bounce(self, address: str) -> bool:
        """A signed return path, or the plain bounce address (matched by Message-ID then)."""
        return self._verp(address) is not None or self.return_paths.is_plain(address)

    def _unwrap(self, address: str) -> str | None:
        if not self.settings.certify_domain:
            return None
        return unwrap_certify_address(address, self.settings.certify_domain)

    def _is_bcc_certify(self, address: str) -> bool:
        """``certify@<certify domain>`` in Bcc: certify the message for its To and Cc."""
        if not self.settings.certify_domain:
            return False
        try:
            local, domain = split_address(address)
        except AddressError:
            return False
        return local.lower() == "certify" and domain.lower() == self.settings.certify_domain

    def _recipients(self, envelope: Envelope, facts: MessageFacts) -> list[str]:
        """Unwrapped certify addresses, plus To and Cc when the Bcc form was used."""
        found = [r for r in (self._unwrap(a) for a in envelope.rcpt_tos) if r]
        if any(self._is_bcc_certify(a) for a in envelope.rcpt_tos):
            for address in (*facts.to, *facts.cc):
                unwrapped = self._unwrap(address)
                if unwrapped is not None:
                    found.append(unwrapped)
                elif not self._is_bcc_certify(address):
                    found.append(address)
        unique: dict[str, str] = {}
        for address in found:
            unique.setdefault(address.lower(), address)
        return list(unique.values())

    def _is_reply(self, address: str) -> bool:
        return self.replies is not None and self.replies.addresses.is_reply_address(address)

    def _journal_token(self, address: str) -> str | None:
        if self.journal is None:
            return None
        return journal_token(address, self.return_paths.domain)

    def journal_limit(self, envelope: Envelope) -> int | None:
        """The size limit of this transaction's DATA when it goes to the journal (streamed to
        a spool, see :class:`InboundSMTP`); None: an ordinary inbound transaction."""
        if envelope.rcpt_tos and self._kind(envelope.rcpt_tos[0]) == "journal":
            return self.journal_max_bytes
        return None

    async def handle_RCPT(
        self, _server: SMTP, _session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        token = self._journal_token(address)
        tenant_id = None
        if token is not None:
            assert self.journal is not None
            tenant_id = await asyncio.to_thread(self.journal.tenant_for_token, token)
            if tenant_id is None:
                return UNKNOWN_JOURNAL_ADDRESS
        if self.replies is not None and self._is_reply(address):
            known = await asyncio.to_thread(self.replies.known, address)
            if known is False:
                return UNKNOWN_REPLY_ADDRESS
        kind = (
            "journal"
            if token is not None
            else "reply"
            if self._is_reply(address)
            else "bounce"
            if self._is_bounce(address)
            else "certify"
            if self._unwrap(address) or self._is_bcc_certify(address)
            else None
        )
        if kind is None:
            return NOT_HERE
        kinds = {self._kind(a) for a in envelope.rcpt_tos}
        if kinds and kind not in kinds:
            return (
                "452 4.5.3 Send bounces, replies, journal and certified mail in separate "
                "transactions"
            )
        if len(envelope.rcpt_tos) >= self.settings.smtp_max_recipients:
            return "452 4.5.3 Too many recipients"
        if tenant_id is not None:  # only an accepted RCPT is archived at DATA
            tenants: dict[str, str] = getattr(envelope, "journal_tenants", {})
            tenants[address] = tenant_id
            envelope.journal_tenants = tenants  # type: ignore[attr-defined]  # for DATA
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Recipient OK"

    def _kind(self, address: str) -> str:
        if self._journal_token(address) is not None:
            return "journal"
        if self._is_reply(address):
            return "reply"
        return "bounce" if self._is_bounce(address) else "certify"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if envelope.rcpt_tos and self._kind(envelope.rcpt_tos[0]) == "reply":
            return await self._reply(server, session, envelope, raw)
        if envelope.rcpt_tos and self._kind(envelope.rcpt_tos[0]) == "bounce":
            ids = [i for i in (self._verp(a) for a in envelope.rcpt_tos) if i]
            try:
                done = await asyncio.to_thread(self.bounces.process, raw, ids, client_ip(session))
            except Exception as exc:
                log.error("bounce.failed", error=repr(exc))
                if is_storage_full(exc):
                    return STORAGE_FULL
                return "451 4.3.0 The bounce could not be processed; try again later"
            log.info("bounce.processed", verp=ids, non_delivery=done)
            return "250 2.0.0 Bounce received"
        return await asyncio.to_thread(self._certify, server, session, envelope, raw)

    async def handle_journal(
        self, server: SMTP, session: Session, envelope: Envelope, data: SpooledData
    ) -> str:
        """Archive the spooled message for each tenant whose journal address was named;
        ``250`` only once every one is committed (a retry after a failure archives nothing
        twice: the same bytes only add a sighting)."""
        assert self.journal is not None and data.spool is not None
        tenants: dict[str, str] = getattr(envelope, "journal_tenants", {})
        journal = JournalEnvelope(
            transaction_id=str(uuid.uuid4()),
            mail_from=envelope.mail_from or "",
            rcpt_to=tuple(envelope.rcpt_tos),
            mail_options=envelope_options(envelope),
            client_ip=client_ip(session),
            helo=session.host_name,
            received_at=datetime.now(UTC),
            tls=tls_details(server),
        )
        archived = []
        try:
            for tenant_id in dict.fromkeys(tenants.values()):
                data.spool.seek(0)
                archived.append(
                    await asyncio.to_thread(self.journal.archive, tenant_id, data.spool, journal)
                )
        except Exception as exc:
            log.error("journal.failed", error=repr(exc), size=data.size)
            if is_storage_full(exc):
                return STORAGE_FULL
            return JOURNAL_FAILED
        log.info("journal.archived", messages=archived, size=data.size)
        return f"250 2.0.0 Archived as {' '.join(archived)}"

    async def _reply(self, server: SMTP, session: Session, envelope: Envelope, raw: bytes) -> str:
        assert self.replies is not None
        smtp = {
            "client_ip": client_ip(session),
            "helo": session.host_name,
            "server": self.settings.hostname,
            **({"tls": tls} if (tls := tls_details(server)) else {}),
        }
        try:
            return await asyncio.to_thread(
                self.replies.receive, raw, list(envelope.rcpt_tos), envelope.mail_from or "", smtp
            )
        except Exception as exc:
            log.error("reply.failed", error=repr(exc))
            if is_storage_full(exc):
                return STORAGE_FULL
            return "451 4.3.0 The reply could not be stored; try again later"

    def _replay_problem(
        self, raw: bytes, facts: MessageFacts, envelope: Envelope, domain: str
    ) -> str | None:
        """Why this signed message may be a replay of one the tenant sent elsewhere, or None.

        A valid signature proves the tenant's server sent *a* message, not that it sent it to
        Sealpost: the signature must cover To, Cc and Date, a rewritten recipient must be in
        the signed To or Cc, and the Date must be recent.
        """
        signed = _signed_headers(raw, domain)
        needed = {"from", "to", "date"} | ({"cc"} if facts.cc else set())
        if not needed <= signed:
            return "550 5.7.20 The DKIM signature must cover " + ", ".join(sorted(needed))
        written = {a.lower() for a in (*facts.to, *facts.cc)}
        for address in envelope.rcpt_tos:
            if self._unwrap(address) and address.lower() not in written:
                return f"550 5.7.20 {address} is not among the signed To/Cc recipients"
        try:
            sent = parsedate_to_datetime(facts.date or "")
        except (TypeError, ValueError):
            return "550 5.7.20 The message needs a valid Date header"
        if sent.tzinfo is None or abs(datetime.now(UTC) - sent) > MAX_SIGNATURE_AGE:
            return "550 5.7.20 The signed Date is not recent: a replayed message is not certified"
        return None

    def _certify(self, server: SMTP, session: Session, envelope: Envelope, raw: bytes) -> str:
        facts = describe_message(raw)
        from_domain = None
        if facts.from_address:
            try:
                from_domain = domain_of(facts.from_address)
            except AddressError:
                from_domain = None
        registered = self.senders.find_domain(from_domain) if from_domain else None
        pins: dict[tuple[str, str], str] = {}
        if registered is not None:
            pins = {(sel, registered.domain): txt for sel, txt in registered.pinned_keys.items()}
        result = verify_message(raw, key_lookup=pinned_key_lookup(pins, self.dns_lookup))
        details: dict[str, Any] = {
            "smtp": {
                "client_ip": client_ip(session),
                "helo": session.host_name,
                **({"tls": tls} if (tls := tls_details(server)) else {}),
            },
            "dkim": {"valid": result.valid, "domain": result.domain, "reason": result.reason},
        }
        recipients = self._recipients(envelope, facts)

        def refuse(tenant_id: str, code: str, reply: str, *, valid: bool) -> None:
            """SubmissionRejection evidence: the From domain names the tenant."""
            self.service.reject(
                tenant_id=tenant_id,
                mail_from=envelope.mail_from or "",
                recipients=recipients,
                identification={"method": "dkim", "domain": result.domain, "valid": valid},
                code=code,
                text=reply,
                raw=raw,
                details=details,
            )

        if registered is not None and not result.valid and result.temporary:
            return f"451 4.7.5 DKIM key lookup failed, try again later ({result.reason})"
        if registered is None or registered.domain not in result.valid_domains:
            reply = (
                "550 5.7.20 No valid DKIM signature of a registered sender domain "
                f"({result.reason})"
            )
            if registered is not None:
                refuse(registered.tenant_id, "dkim", reply, valid=False)
            return reply
        if not recipients:
            return "550 5.5.1 Nothing to certify: the message names no To or Cc recipient"
        replay = self._replay_problem(raw, facts, envelope, registered.domain)
        if replay is not None:
            refuse(registered.tenant_id, "dkim-replay", replay, valid=True)
            return replay
        try:  # before the Message-ID is looked up: it may be unfit for the database
            check_content(raw, facts)
        except ContentRefused as exc:
            refuse(registered.tenant_id, exc.reason_code, exc.smtp_reply(), valid=True)
            return exc.smtp_reply()
        earlier = [
            c
            for c in self.bounces.repository.find_by_message_id(facts.message_id or "")
            if c.tenant_id == registered.tenant_id
            and c.recipient.lower() in {r.lower() for r in recipients}
        ]
        if earlier:  # the same signed message again: already certified, not twice
            return f"250 2.0.0 Already certified: {' '.join(c.id for c in earlier)}"
        request = SubmissionRequest(
            tenant_id=registered.tenant_id,
            via="rewrite",
            mail_from=envelope.mail_from or "",
            recipients=tuple(recipients),
            raw=raw,
            identification={
                "method": "dkim",
                "domain": result.domain,
                "selector": result.selector,
            },
            details=details,
        )
        try:
            accepted = self.service.accept(request)
        except SubmissionRefused as exc:  # permanent; its evidence is committed
            return exc.smtp_reply()
        except StorageFull:
            return STORAGE_FULL
        except Exception as exc:
            log.error("certify.store_failed", error=repr(exc))
            return "451 4.3.0 The message could not be stored; please try again later"
        return accepted_reply(accepted)


MAX_SIGNATURE_AGE = timedelta(days=3)


def _signed_headers(raw: bytes, domain: str) -> set[str]:
    """Header names (lower case) covered by the message's DKIM signatures of ``domain``."""
    signed: set[str] = set()
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    except Exception:
        return signed
    for value in headers.get_all("DKIM-Signature") or []:
        tags = {}
        for item in re.sub(r"\s+", "", str(value)).split(";"):
            name, _, text = item.partition("=")
            tags[name.lower()] = text
        if tags.get("d", "").lower().rstrip(".") == domain:
            signed |= {h.lower() for h in tags.get("h", "").split(":") if h}
    return signed


class InboundSMTP(SealpostSMTP):
    """The inbound port's server: a journal transaction's DATA is streamed to a spool with the
    journal's own size limit (:func:`~sealpost.communications.email.journal.read_data`);
    every other transaction is aiosmtpd's own DATA with the ordinary limit.

    ``data_size_limit`` (what EHLO announces as SIZE, RFC 1870, and MAIL's ``SIZE=`` is
    checked against) is the larger of the two: MAIL comes before RCPT says which it is."""

    def __init__(self, handler: Any, *, message_limit: int, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.message_limit = message_limit

    async def smtp_DATA(self, arg: str) -> None:
        handler = self.event_handler
        envelope = self.envelope
        limit = None
        if isinstance(handler, InboundHandler) and envelope is not None:
            limit = handler.journal_limit(envelope)
        if limit is None:
            announced, self.data_size_limit = self.data_size_limit, self.message_limit
            try:
                await super().smtp_DATA(arg)
            finally:
                self.data_size_limit = announced
            return
        if await self.check_helo_needed():
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        assert isinstance(handler, InboundHandler) and envelope is not None
        assert self.session is not None
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        data = await read_data(self, limit, handler.settings.archive_journal_data_max_seconds)
        try:
            if data.refusal is not None:
                status = data.refusal
            else:
                keep_alive(self)  # the ingest gets a whole timeout of its own
                status = await handler.handle_journal(self, self.session, envelope, data)
        finally:
            data.close()
        self._set_post_data_state()  # type: ignore[no-untyped-call]  # aiosmtpd's own
        keep_alive(self)
        await self.push(status)


def inbound_factory(
    handler: InboundHandler,
    settings: Settings,
    tls: ssl.SSLContext | None = None,
    client_limits: SmtpClientLimits | None = None,
) -> Callable[[], SMTP]:
    """The inbound port offers STARTTLS (RFC 3207) so that mail from the internet can be
    encrypted; it never requires it (a bounce from a plaintext MTA must still arrive)."""
    limit = settings.smtp_max_message_bytes
    announced = max(limit, handler.journal_max_bytes) if handler.journal else limit

    def make() -> SMTP:
        return InboundSMTP(
            handler,
            client_limits=client_limits,
            hostname=settings.hostname,
            ident="Sealpost ESMTP",
            tls_context=tls,
            require_starttls=False,
            data_size_limit=announced,
            message_limit=limit,
            enable_SMTPUTF8=True,
            decode_data=False,
            auth_required=False,
            auth_require_tls=True,
            timeout=settings.smtp_inbound_idle_timeout_seconds,
        )

    return make
