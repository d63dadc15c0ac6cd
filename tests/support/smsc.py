"""A real SMSC for tests: an asyncio SMPP 3.4 server on 127.0.0.1, in a thread of its own.

Written on ``struct`` from the specification (not on the client's library), so the adapter's
PDUs are checked by an independent reading of SMPP 3.4.  Outcomes are scripted by
destination number (``script[number] = Outcome(...)``; default: delivered):

- ``delivered`` / ``undelivered`` / ``expired`` / ``rejected``: a final receipt per segment;
- ``throttled``: the first ``throttle`` submits answer ESME_RTHROTTLED, then delivered;
- ``silent``: taken, but no receipt ever (the operator never answers);
- ``invalid``: ``submit_sm_resp`` with ESME_RINVDSTADR (0x0B);
- ``duplicate``: each receipt twice, then an ENROUTE after it (out of order);
- ``part``: with ``throttled``, only that part of a concatenated message is throttled;
  ``lose_response``: that part is taken once, then the link drops before its answer.

Receipts wait in ``pending`` until a bound ESME acknowledges them (``deliver_sm_resp`` 0), so
they survive a :meth:`restart` like a real SMSC's store.  :meth:`send_mo` sends a
mobile-originated message (an answer from a handset: ``deliver_sm`` with the default
esm_class) the same way; ``mo_answers`` records each ``deliver_sm_resp`` status it got.
``submissions`` records every segment taken, to check that nothing was sent twice.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

BIND_TRANSCEIVER, BIND_TRANSCEIVER_RESP = 0x00000009, 0x80000009
SUBMIT_SM, SUBMIT_SM_RESP = 0x00000004, 0x80000004
DELIVER_SM, DELIVER_SM_RESP = 0x00000005, 0x80000005
ENQUIRE_LINK, ENQUIRE_LINK_RESP = 0x00000015, 0x80000015
UNBIND, UNBIND_RESP = 0x00000006, 0x80000006
GENERIC_NACK = 0x80000000


@dataclass
class Outcome:
    kind: str = "delivered"
    throttle: int = 0
    err: str = "000"
    part: int = 0
    """With ``throttled``: only this part (UDH sequence number, 1-based) is throttled."""
    lose_response: int = 0
    """This part (1-based; 1 for a single SMS) is taken the first time, but the link drops
    before its ``submit_sm_resp`` goes out (the response lost with the link)."""


@dataclass(frozen=True)
class Taken:
    destination: str
    message_id: str
    data_coding: int
    esm_class: int
    udh: bytes
    text: bytes
    source: str
    validity: str = ""

    @property
    def part(self) -> tuple[int, int, int] | None:
        """(reference, total, number) of a concatenated segment."""
        if self.esm_class & 0x40 and self.udh[:3] == b"\x05\x00\x03":
            return self.udh[3], self.udh[4], self.udh[5]
        return None


def _cstr(body: bytes, at: int) -> tuple[str, int]:
    end = body.index(b"\0", at)
    return body[at:end].decode("latin-1"), end + 1


def _pdu(command: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    return struct.pack(">LLLL", 16 + len(body), command, status, sequence) + body


@dataclass
class SmscPeer:
    system_id: str = "sealpost"
    password: str = "secret"
    receipt_delay: float = 0.01
    script: dict[str, Outcome] = field(default_factory=dict)
    submissions: list[Taken] = field(default_factory=list)
    pending: dict[str, bytes] = field(default_factory=dict)
    """Receipt text by receipt key, until acknowledged."""
    binds: int = 0
    enquire_links: int = 0
    refused_receipts: int = 0
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _sessions: set[asyncio.StreamWriter] = field(default_factory=set)
    _throttled: Counter[str] = field(default_factory=Counter)
    _next_id: int = 0x1000
    _sequence: int = 1
    _thread: threading.Thread | None = None
    _acks: dict[int, str] = field(default_factory=dict)
    _destinations: dict[str, str] = field(default_factory=dict)
    _lost: set[tuple[str, int]] = field(default_factory=set)
    _connections: set[asyncio.StreamWriter] = field(default_factory=set)
    _down_now: bool = False
    mo_pending: dict[str, bytes] = field(default_factory=dict)
    """Mobile-originated deliver_sm bodies by key, until acknowledged."""
    mo_answers: list[tuple[str, int]] = field(default_factory=list)
    """(key, deliver_sm_resp command_status) of every answer to an MO message."""

    # -- life -------------------------------------------------------------------------------

    def start(self) -> SmscPeer:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            loop.run_until_complete(self._listen())
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="smsc-peer", daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    async def _listen(self) -> None:
        self._down_now = False
        self._server = await asyncio.start_server(self._session, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def _call(self, coro: object) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    def restart(self, down_seconds: float = 0.5) -> None:
        """Stop listening, unbind every session (as an SMSC going down does), come back."""
        self.down()
        time.sleep(down_seconds)
        self.up()

    def down(self) -> None:
        self._call(self._down())

    def up(self) -> None:
        self._call(self._listen())

    async def _down(self) -> None:
        assert self._server is not None
        self._down_now = True
        self._server.close()
        for writer in list(self._sessions):
            writer.write(_pdu(UNBIND, 0, self._seq()))
            writer.close()
        self._sessions.clear()
        for writer in list(self._connections):  # connected but not bound yet: gone too
            writer.close()
        self._connections.clear()
        await self._server.wait_closed()

    def stop(self) -> None:
        if self._loop is None:
            return
        self._call(self._down())
        loop, self._loop = self._loop, None
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    # -- sessions ---------------------------------------------------------------------------

    def _seq(self) -> int:
        self._sequence += 1
        return self._sequence

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        bound = False
        if self._down_now:  # accepted as the server went down
            writer.close()
            return
        self._connections.add(writer)
        try:
            while not writer.is_closing():  # a closed session takes nothing it cannot answer
                header = await reader.readexactly(16)
                length, command, status, sequence = struct.unpack(">LLLL", header)
                body = await reader.readexactly(length - 16)
                if writer.is_closing():
                    break
                if command == BIND_TRANSCEIVER:
                    system_id, at = _cstr(body, 0)
                    password, at = _cstr(body, at)
                    ok = system_id == self.system_id and password == self.password
                    writer.write(
                        _pdu(BIND_TRANSCEIVER_RESP, 0 if ok else 0x0E, sequence, b"smsc\0")
                    )
                    if ok:
                        bound = True
                        self.binds += 1
                        self._sessions.add(writer)
                        for key in list(self.pending):
                            self._send_receipt(writer, key)
                        for key in list(self.mo_pending):
                            self._send_mo(writer, key)
                elif command == ENQUIRE_LINK:
                    self.enquire_links += 1
                    writer.write(_pdu(ENQUIRE_LINK_RESP, 0, sequence))
                elif command == UNBIND:
                    writer.write(_pdu(UNBIND_RESP, 0, sequence))
                    break
                elif command == SUBMIT_SM and bound:
                    self._submit(writer, sequence, body)
                elif command == DELIVER_SM_RESP and self._acks.get(sequence, "") in self.mo_pending:
                    key = self._acks.pop(sequence)
                    self.mo_answers.append((key, status))
                    if status == 0:
                        self.mo_pending.pop(key, None)
                    else:  # the ESME could not store it: send it again soon
                        assert self._loop is not None
                        self._loop.call_later(0.1, self._resend_mo, writer, key)
                elif command == DELIVER_SM_RESP:
                    key = self._acks.pop(sequence, None)
                    if key is not None and status == 0:
                        self.pending.pop(key, None)
                    elif key is not None:  # the ESME could not take it: send it again soon
                        self.refused_receipts += 1
                        assert self._loop is not None
                        self._loop.call_later(0.1, self._resend, writer, key)
                elif command in (ENQUIRE_LINK_RESP, UNBIND_RESP):
                    pass
                else:
                    writer.write(_pdu(GENERIC_NACK, 0x03, sequence))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._sessions.discard(writer)
            self._connections.discard(writer)
            writer.close()

    def _submit(self, writer: asyncio.StreamWriter, sequence: int, body: bytes) -> None:
        _service, at = _cstr(body, 0)
        at += 2
        source, at = _cstr(body, at)
        at += 2
        destination, at = _cstr(body, at)
        esm_class, _pid, _prio = body[at], body[at + 1], body[at + 2]
        at += 3
        _sched, at = _cstr(body, at)
        validity, at = _cstr(body, at)
        _registered, _replace, data_coding, _default, sm_length = body[at : at + 5]
        at += 5
        message = body[at : at + sm_length]
        udh = message[: message[0] + 1] if esm_class & 0x40 else b""
        outcome = self.script.get(destination, Outcome())
        if outcome.kind == "invalid":
            writer.write(_pdu(SUBMIT_SM_RESP, 0x0B, sequence, b"\0"))
            return
        number = udh[5] if len(udh) >= 6 else 1
        if (
            outcome.kind == "throttled"
            and outcome.part in (0, number)
            and self._throttled[destination] < outcome.throttle
        ):
            self._throttled[destination] += 1
            writer.write(_pdu(SUBMIT_SM_RESP, 0x58, sequence, b"\0"))
            return
        self._next_id += 1
        message_id = f"{self._next_id:x}"
        self.submissions.append(
            Taken(
                destination,
                message_id,
                data_coding,
                esm_class,
                udh,
                message[len(udh) :],
                source,
                validity,
            )
        )
        if outcome.lose_response == number and (destination, number) not in self._lost:
            self._lost.add((destination, number))
            writer.close()  # taken, but the answer is lost with the link
        else:
            writer.write(_pdu(SUBMIT_SM_RESP, 0, sequence, message_id.encode() + b"\0"))
        if outcome.kind == "silent":
            return
        assert self._loop is not None
        self._loop.call_later(self.receipt_delay, self._receipts, destination, message_id, outcome)

    def _receipts(self, destination: str, message_id: str, outcome: Outcome) -> None:
        stat = {
            "delivered": "DELIVRD",
            "throttled": "DELIVRD",
            "duplicate": "DELIVRD",
            "undelivered": "UNDELIV",
            "expired": "EXPIRED",
            "rejected": "REJECTD",
        }[outcome.kind]
        done = datetime.now(UTC).strftime("%y%m%d%H%M%S")
        texts = [
            f"id:{message_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
            f"submit date:{done[:10]} done date:{done} stat:{stat} err:{outcome.err} text:"
        ]
        if outcome.kind == "duplicate":
            texts += [texts[0], texts[0].replace("stat:DELIVRD", "stat:ENROUTE")]
        for n, text in enumerate(texts):
            key = f"{message_id}/{n}"
            self.pending[key] = text.encode()
            self._destinations[key] = destination
            for writer in list(self._sessions)[:1]:
                self._send_receipt(writer, key)

    def _resend(self, writer: asyncio.StreamWriter, key: str) -> None:
        if key in self.pending and not writer.is_closing():
            self._send_receipt(writer, key)

    def _send_receipt(self, writer: asyncio.StreamWriter, key: str) -> None:
        text = self.pending[key]
        destination = self._destinations.get(key, "")
        body = (
            b"\0"  # service_type
            + bytes((1, 1))
            + destination.encode()
            + b"\0"
            + bytes((5, 0))
            + b"Sealpost\0"
            + bytes((0x04, 0, 0))  # esm_class: SMSC delivery receipt
            + b"\0\0"
            + bytes((0, 0, 0, 0, len(text)))
            + text
        )
        sequence = self._seq()
        self._acks[sequence] = key
        writer.write(_pdu(DELIVER_SM, 0, sequence, body))

    # -- mobile-originated messages ---------------------------------------------------------

    def send_mo(
        self,
        source: str,
        destination: str,
        text: str | bytes,
        *,
        data_coding: int = 0x00,
        esm_class: int = 0x00,
    ) -> str:
        """Send an answer from handset ``source`` (E.164 with ``+``: TON 1) to ``destination``
        (a number, or an alphanumeric sender id: TON 5) to the bound ESME; its key.

        ``text`` as str is sent as ASCII (GSM-7 unpacked, for plain letters) or UTF-16BE with
        ``data_coding=0x08``; bytes are sent as they are."""
        if isinstance(text, str):
            text = text.encode("utf-16-be" if data_coding == 0x08 else "ascii")
        src_ton, src = (1, source[1:]) if source.startswith("+") else (0, source)
        if destination.startswith("+"):
            dst_ton, dst_npi, dst = 1, 1, destination[1:]
        elif destination.isdigit():
            dst_ton, dst_npi, dst = 0, 1, destination
        else:
            dst_ton, dst_npi, dst = 5, 0, destination
        body = (
            b"\0"  # service_type
            + bytes((src_ton, 1))
            + src.encode()
            + b"\0"
            + bytes((dst_ton, dst_npi))
            + dst.encode()
            + b"\0"
            + bytes((esm_class, 0, 0))
            + b"\0\0"
            + bytes((0, 0, data_coding, 0, len(text)))
            + text
        )
        self._next_id += 1
        key = f"mo-{self._next_id:x}"
        self.mo_pending[key] = body

        def send() -> None:
            for writer in list(self._sessions)[:1]:
                self._send_mo(writer, key)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(send)
        return key

    def _send_mo(self, writer: asyncio.StreamWriter, key: str) -> None:
        sequence = self._seq()
        self._acks[sequence] = key
        writer.write(_pdu(DELIVER_SM, 0, sequence, self.mo_pending[key]))

    def _resend_mo(self, writer: asyncio.StreamWriter, key: str) -> None:
        if key in self.mo_pending and not writer.is_closing():
            self._send_mo(writer, key)

    # -- what the tests look at -------------------------------------------------------------

    def taken(self, destination: str) -> list[Taken]:
        return [t for t in self.submissions if t.destination == destination]
