"""The SMPP 3.4 operator adapter (client side, on ``smpplib``; LGPL-2.1-or-later).

One ``bind_transceiver`` (SMPP 3.4 §4.1.5) carries submissions and receipts both ways.  A
reader thread takes every PDU the SMSC sends: ``submit_sm_resp`` resolves the submitter
waiting on its sequence number; ``deliver_sm`` with esm_class bit 2 set is a delivery
receipt (§5.2.12; its text per Appendix B: ``id: sub: dlvrd: submit date: done date: stat:
err:``), handed to the :class:`~sealpost.sms.providers.ReportSink` *before* the
``deliver_sm_resp`` is sent, so a report the sink could not store is redelivered (answered
ESME_RX_T_APPN).  A ``deliver_sm`` whose esm_class message type (bits 5-2) is the default
(0) and whose text is no receipt is a mobile-originated message (an answer from a handset):
handed to the :class:`~sealpost.sms.providers.InboundSink` the same way.  An idle link is
kept with ``enquire_link`` (§4.11); a lost link is bound
again by a keeper thread with backoff, so receipts keep flowing after an SMSC restart.

A multi-part message is sent as concatenated SMS (3GPP TS 23.040 §9.2.3.24.1: a UDH of
``05 00 03 <ref> <total> <seq>``, esm_class 0x40), one ``submit_sm`` and one operator message
id per segment.  The reference is the message's own (``OutboundSms.reference``, the same on
every attempt) and segments already taken (``OutboundSms.taken``) are skipped, so a message
resumed after a failure sends only its missing parts and the handset still reassembles them.
Throttling (ESME_RTHROTTLED 0x58, ESME_RMSGQFUL 0x14), a lost link or no answer raise
:class:`TemporaryFailure` carrying the segments taken so far (after retrying in place for
``partial_retry_seconds`` once some were) and those sent without an answer (the one
at-least-once window).  Any other error status is a :class:`PermanentFailure` carrying it.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from smpplib import consts, exceptions, smpp
from smpplib.client import Client

from sealpost.logging import get_logger
from sealpost.sms.model import GSM7_BASIC, GSM7_EXTENSION, encode
from sealpost.sms.providers import (
    DeliveryReport,
    InboundSink,
    InboundSms,
    OutboundSms,
    PermanentFailure,
    ReportSink,
    ReportState,
    Submitted,
    TemporaryFailure,
)

log = get_logger(__name__)

THROTTLED = (0x58, 0x14)  # ESME_RTHROTTLED, ESME_RMSGQFUL: try again later
ESME_RX_T_APPN = 0x64
"""§5.1.3: ESME receiver temporary app error: the SMSC keeps the receipt and retries it."""
ESM_RECEIPT = 0x04
ESM_TYPE = 0x3C
"""§5.2.12: bits 5-2 of esm_class in a deliver_sm: 0 default (mobile originated), 1 SMSC
delivery receipt, 2 SME delivery ack, 4 manual/user ack, 6 conversation abort, 8
intermediate delivery notification."""
ESM_UDHI = 0x40

_STATES: dict[str, ReportState] = {
    "DELIVRD": "delivered",
    "EXPIRED": "expired",
    "DELETED": "deleted",
    "UNDELIV": "undelivered",
    "ACCEPTD": "accepted",
    "UNKNOWN": "unknown",
    "REJECTD": "rejected",
    "ENROUTE": "enroute",
}
_RECEIPT = re.compile(
    rb"id:(?P<id>\S+).*?done date:(?P<done>\d{10,12}).*?stat:(?P<stat>[A-Z]+)"
    rb"(?:.*?err:(?P<err>\S+))?",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class SmppConfig:
    host: str
    port: int
    system_id: str
    password: str
    system_type: str = ""
    source_address: str = "Sealpost"
    """Default originator: alphanumeric (TON 5) or a number (TON 1, international)."""
    timeout_seconds: float = 10.0
    """How long a submit waits for its ``submit_sm_resp``."""
    enquire_link_seconds: float = 30.0
    partial_retry_seconds: float = 2.0
    """Once a segment was taken, how long a later one is retried in place before the message
    waits (and resumes with only the missing segments)."""
    reconnect_max_seconds: float = 10.0


def parse_receipt(text: bytes) -> tuple[str, ReportState, datetime | None, str] | None:
    """(message id, state, done date, err) of an Appendix B receipt text, or None.

    The done date is YYMMDDhhmm[ss] in the SMSC's time, which this adapter takes as UTC."""
    found = _RECEIPT.search(text)
    if found is None:
        return None
    state = _STATES.get(found["stat"].decode("ascii").upper())
    if state is None:
        return None
    done = found["done"].decode("ascii")
    try:
        at = datetime.strptime(done, "%y%m%d%H%M%S" if len(done) == 12 else "%y%m%d%H%M")
    except ValueError:
        at = None
    err = (found["err"] or b"").decode("ascii", "replace")
    return found["id"].decode("ascii", "replace"), state, at and at.replace(tzinfo=UTC), err


def _number(value: Any, ton: Any) -> str:
    """An SMPP address as text: ``+`` and the digits when international (TON 1)."""
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value or "")
    return f"+{text}" if int(ton or 0) == 1 and not text.startswith("+") else text


_GSM7 = dict(enumerate(GSM7_BASIC))
_GSM7_EXTENSION = {v: k for k, v in GSM7_EXTENSION.items()}


def decode(body: bytes, data_coding: int) -> str:
    """An MO message's text: UCS-2 (0x08, read as UTF-16BE), Latin-1 (0x03), else the GSM-7
    default alphabet unpacked one septet per octet (0x00, SMPP's usual; TS 23.038)."""
    if data_coding == 0x08:
        return body.decode("utf-16-be", "replace")
    if data_coding == 0x03:
        return body.decode("latin-1")
    out, escape = [], False
    for octet in body:
        if escape:
            out.append(_GSM7_EXTENSION.get(octet, " "))
            escape = False
        elif octet == 0x1B:
            escape = True
        else:
            out.append(_GSM7.get(octet & 0x7F, "?"))
    return "".join(out)


def _address(value: str) -> tuple[int, int, str]:
    """(TON, NPI, address) of an originator or destination (§5.2.5, §5.2.6)."""
    if value.startswith("+"):
        return 1, 1, value[1:]  # international, ISDN (E.164)
    if value.isdigit():
        return 0, 1, value
    return 5, 0, value  # alphanumeric sender id


class _Client(Client):  # type: ignore[misc]
    """smpplib's client with sends serialised (submitters and the reader share the socket)
    and each read PDU's raw body kept (the receipt's exact bytes for the evidence)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.send_lock = threading.RLock()

    def send_pdu(self, p: Any) -> bool:
        with self.send_lock:
            return bool(super().send_pdu(p))

    def read_pdu(self) -> Any:
        raw_len = self._recv_exact(4)
        (length,) = struct.unpack(">L", raw_len)
        if length < 16 or length > 64 * 1024:
            raise exceptions.PDUError("Broken PDU")
        raw = raw_len + self._recv_exact(length - 4)
        pdu = smpp.parse_pdu(raw, client=self, allow_unknown_opt_params=True)
        pdu.raw_body = raw[16:]
        if not pdu.is_error() and pdu.command in consts.STATE_SETTERS:
            self.state = consts.STATE_SETTERS[pdu.command]
        return pdu


class _Unanswered(exceptions.ConnectionError):  # type: ignore[misc]
    """A ``submit_sm`` went out but its ``submit_sm_resp`` never came: the SMSC may have
    taken it (SMPP 3.4 has no idempotency key to ask which)."""


def _validity(until: datetime | None) -> str:
    """SMPP 3.4 §7.1.1 absolute time ``YYMMDDhhmmsstnnp`` in UTC (offset 00, ``+``)."""
    if until is None:
        return ""
    return until.astimezone(UTC).strftime("%y%m%d%H%M%S") + "000+"


class _Link:
    """One bound connection and the submitters waiting on it."""

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.waiting: dict[int, Future[Any]] = {}
        self.dead = threading.Event()

    def fail_all(self) -> None:
        self.dead.set()
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(exceptions.ConnectionError("unbound"))


class SmppProvider:
    """The SMPP adapter; thread-safe: many submitters share one bind (a window of PDUs)."""

    name = "smpp"

    def __init__(
        self, config: SmppConfig, sink: ReportSink, inbound: InboundSink | None = None
    ) -> None:
        self.config = config
        self.sink = sink
        self.inbound = inbound
        """Where mobile-originated messages go (None: acknowledged and dropped, logged)."""
        self._lock = threading.Lock()
        self._link: _Link | None = None
        self._closed = threading.Event()
        self._ref = 0
        self._receipt_pool = ThreadPoolExecutor(64, thread_name_prefix="sealpost-smpp-receipt")
        self._keeper = threading.Thread(target=self._keep, name="sealpost-smpp-keeper", daemon=True)
        self._keeper.start()

    # -- the link ---------------------------------------------------------------------------

    def _connect(self) -> _Link:
        c = self.config
        client = _Client(c.host, c.port, timeout=c.timeout_seconds, allow_unknown_opt_params=True)
        try:
            client.connect()
            client.bind_transceiver(
                system_id=c.system_id,
                password=c.password,
                system_type=c.system_type,
                interface_version=0x34,
            )
        except (exceptions.ConnectionError, exceptions.PDUError, OSError) as exc:
            client.state = consts.SMPP_CLIENT_STATE_OPEN  # not bound: no "bound state" warning
            client.disconnect()
            raise TemporaryFailure(f"SMSC unreachable: {exc!r}", status="unbound") from None
        client._socket.settimeout(c.enquire_link_seconds)
        link = _Link(client)
        threading.Thread(
            target=self._read, args=(link,), name="sealpost-smpp-reader", daemon=True
        ).start()
        log.info("smpp.bound", host=c.host, port=c.port, system_id=c.system_id)
        return link

    def _current(self) -> _Link:
        with self._lock:
            if self._closed.is_set():
                raise TemporaryFailure("the SMPP adapter is closed", status="closed")
            if self._link is None or self._link.dead.is_set():
                self._link = self._connect()
            return self._link

    def _keep(self) -> None:
        """Bind again whenever the link is lost, so receipts flow without a submit."""
        backoff = 0.2
        while not self._closed.is_set():
            link = self._link
            if link is not None and not link.dead.is_set():
                link.dead.wait(1.0)
                backoff = 0.2
                continue
            try:
                self._current()
            except TemporaryFailure:
                self._closed.wait(backoff)
                backoff = min(backoff * 2, self.config.reconnect_max_seconds)

    def _read(self, link: _Link) -> None:
        client = link.client
        try:
            while not link.dead.is_set():
                try:
                    pdu = client.read_pdu()
                except TimeoutError:
                    client.send_pdu(smpp.make_pdu("enquire_link", client=client))
                    continue
                self._handle(link, pdu)
        except (exceptions.ConnectionError, exceptions.PDUError, OSError) as exc:
            if not self._closed.is_set():
                log.warning("smpp.link_lost", error=repr(exc))
        finally:
            link.fail_all()
            client.state = consts.SMPP_CLIENT_STATE_OPEN  # unbound: no "bound state" warning
            with contextlib.suppress(Exception):  # already gone
                client.disconnect()

    def _handle(self, link: _Link, pdu: Any) -> None:
        client = link.client
        if pdu.command == "submit_sm_resp":
            future = link.waiting.pop(pdu.sequence, None)
            if future is not None and not future.done():
                future.set_result(pdu)
        elif pdu.command == "deliver_sm":  # stored by the sink's group commit, many at once
            self._receipt_pool.submit(self._answer_receipt, link, pdu)
        elif pdu.command == "enquire_link":
            resp = smpp.make_pdu("enquire_link_resp", client=client)
            resp.sequence = pdu.sequence
            client.send_pdu(resp)
        elif pdu.command == "unbind":
            resp = smpp.make_pdu("unbind_resp", client=client)
            resp.sequence = pdu.sequence
            client.send_pdu(resp)
            raise exceptions.ConnectionError("the SMSC unbound")
        elif pdu.command == "generic_nack":
            future = link.waiting.pop(pdu.sequence, None)
            if future is not None and not future.done():
                future.set_result(pdu)

    def _answer_receipt(self, link: _Link, pdu: Any) -> None:
        status = self._receipt(pdu)
        client = link.client
        try:
            resp = smpp.make_pdu("deliver_sm_resp", client=client, status=status)
            resp.sequence = pdu.sequence
            client.send_pdu(resp)
        except (exceptions.ConnectionError, exceptions.PDUError, OSError):
            pass  # the link is gone: the SMSC sends the receipt again, a stored one is a no-op

    def _mobile_originated(self, pdu: Any, body: bytes) -> int:
        """Hand an MO message to the inbound sink; the status to answer the SMSC with."""
        if parse_receipt(body) is not None:  # a receipt without its esm_class: never an answer
            log.warning("smpp.receipt_without_esm_class", body=pdu.raw_body[:200].hex())
            return int(consts.SMPP_ESME_ROK)
        if self.inbound is None:
            log.info("smpp.mobile_originated_dropped")
            return int(consts.SMPP_ESME_ROK)
        if (pdu.esm_class or 0) & ESM_UDHI and body:
            body = body[body[0] + 1 :]  # the UDH (a concatenated answer's part header)
        message = InboundSms(
            provider=self.name,
            phone=_number(pdu.source_addr, pdu.source_addr_ton),
            destination=_number(pdu.destination_addr, pdu.dest_addr_ton),
            text=decode(body, int(pdu.data_coding or 0)),
            at=datetime.now(UTC),
            raw=bytes(pdu.raw_body),
        )
        try:
            self.inbound.inbound(message)
        except Exception as exc:  # not stored: the SMSC must keep it and send it again
            log.error("smpp.mobile_originated_not_stored", error=repr(exc))
            return ESME_RX_T_APPN
        return int(consts.SMPP_ESME_ROK)

    def _receipt(self, pdu: Any) -> int:
        """Hand a receipt (or an MO message) to its sink; the status to answer the SMSC with."""
        text = pdu.short_message or pdu.message_payload or b""
        body = text if isinstance(text, bytes) else str(text).encode()
        if not (pdu.esm_class or 0) & ESM_TYPE:
            return self._mobile_originated(pdu, body)
        if not (pdu.esm_class or 0) & ESM_RECEIPT:
            return int(consts.SMPP_ESME_ROK)  # an SME ack or an abort: nothing to keep
        parsed = parse_receipt(body)
        if parsed is None:
            log.warning("smpp.receipt_unreadable", body=pdu.raw_body[:200].hex())
            return int(consts.SMPP_ESME_ROK)
        message_id, state, done, err = parsed
        report = DeliveryReport(
            provider=self.name,
            message_id=message_id,
            state=state,
            at=done or datetime.now(UTC),
            status=err,
            raw=bytes(pdu.raw_body),
        )
        try:
            self.sink.report(report)
        except Exception as exc:  # not stored: the SMSC must keep it and send it again
            log.error("smpp.receipt_not_stored", message_id=message_id, error=repr(exc))
            return ESME_RX_T_APPN
        return int(consts.SMPP_ESME_ROK)

    # -- submitting -------------------------------------------------------------------------

    def _next_ref(self) -> int:
        with self._lock:
            self._ref = (self._ref + 1) % 256
            return self._ref

    def _send_one(self, link: _Link, params: dict[str, Any]) -> Any:
        client = link.client
        future: Future[Any] = Future()
        with client.send_lock:
            pdu = smpp.make_pdu("submit_sm", client=client, **params)
            link.waiting[pdu.sequence] = future
            if link.dead.is_set():
                raise exceptions.ConnectionError("unbound")
            client.send_pdu(pdu)
        try:  # from here the SMSC may have taken it: a failure is "unanswered", not "refused"
            return future.result(self.config.timeout_seconds)
        except FutureTimeout:
            link.waiting.pop(pdu.sequence, None)
            raise _Unanswered("no submit_sm_resp in time") from None
        except exceptions.ConnectionError as exc:
            raise _Unanswered(f"the link was lost before the submit_sm_resp: {exc}") from None

    def submit(self, sms: OutboundSms) -> Submitted:
        """Send every segment not in ``sms.taken``, each with the message's one concatenation
        reference; see the module docstring for what raises."""
        parts = list(sms.segments)
        total = len(parts)
        ref = sms.reference or self._next_ref()
        data_coding = 0x00 if sms.encoding == "gsm7" else 0x08
        src_ton, src_npi, src = _address(sms.sender or self.config.source_address)
        dst_ton, dst_npi, dst = _address(sms.to)
        taken: dict[int, str] = dict(sms.taken)
        fresh: dict[int, str] = {}
        unanswered: list[int] = []
        validity = _validity(sms.valid_until)
        for i, part in enumerate(parts):
            if i in taken:
                continue  # the operator has it: never sent twice knowingly
            body = encode(part, sms.encoding)
            esm = 0
            if total > 1:
                body = bytes((0x05, 0x00, 0x03, ref, total, i + 1)) + body
                esm = ESM_UDHI
            params = {
                "source_addr_ton": src_ton,
                "source_addr_npi": src_npi,
                "source_addr": src,
                "dest_addr_ton": dst_ton,
                "dest_addr_npi": dst_npi,
                "destination_addr": dst,
                "esm_class": esm,
                "data_coding": data_coding,
                "registered_delivery": 0x01,  # §5.2.17: a receipt on success and failure
                "short_message": body,
                **({"validity_period": validity} if validity else {}),
            }
            deadline = time.monotonic() + self.config.partial_retry_seconds
            while True:
                try:
                    resp = self._send_one(self._current(), params)
                except _Unanswered as exc:
                    status, reason = "no_response", f"SMSC did not answer: {exc}"
                    if i not in unanswered:
                        unanswered.append(i)
                except (exceptions.ConnectionError, OSError, TemporaryFailure) as exc:
                    status, reason = "unbound", f"SMSC link lost: {exc}"
                else:
                    if resp.command == "submit_sm_resp" and resp.status == consts.SMPP_ESME_ROK:
                        taken[i] = fresh[i] = str(
                            resp.message_id.decode()
                            if isinstance(resp.message_id, bytes)
                            else resp.message_id
                        )
                        break
                    code = int(resp.status)
                    status = f"0x{code:08X}"
                    reason = consts.DESCRIPTIONS.get(code, "unknown status")
                    if code not in THROTTLED:
                        raise PermanentFailure(
                            f"segment {i + 1}/{total}: {reason}", status=status, taken=fresh
                        )
                    reason = f"throttled: {reason}"
                if not fresh or time.monotonic() > deadline:
                    # The message waits; what was taken is recorded and not sent again.
                    raise TemporaryFailure(
                        f"segment {i + 1}/{total} not taken"
                        + (f" after {len(fresh)} were" if fresh else "")
                        + f": {reason}",
                        status=status,
                        retry_after=1.0 if not fresh else None,
                        taken=fresh,
                        unanswered=[u for u in unanswered if u not in taken],
                    )
                time.sleep(0.2)
        return Submitted(
            [taken[i] for i in range(total)],
            self.name,
            {"system_id": self.config.system_id},
            unanswered=unanswered,
        )

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            link, self._link = self._link, None
        if link is not None:
            with contextlib.suppress(Exception), link.client.send_lock:  # already gone
                link.client.send_pdu(smpp.make_pdu("unbind", client=link.client))
            link.dead.set()
            with contextlib.suppress(Exception):  # the reader ends on its socket's close
                link.client._socket.shutdown(socket.SHUT_RDWR)
        self._keeper.join(5)
        self._receipt_pool.shutdown(wait=True)
