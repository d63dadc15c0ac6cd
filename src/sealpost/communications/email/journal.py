"""The journal address on the inbound port: ``journal+<token>@<bounce domain>``.

A company's mail server journals (or BCCs, e.g. Postfix ``always_bcc``, Exchange journal
rules) every message it handles to its tenant's journal address; Sealpost archives each one
byte-exact through the :class:`~sealpost.communications.ports.JournalSink` port.

* ``RCPT`` to an unknown token: ``550 5.1.1`` at once, before any data is sent.
* ``DATA`` is streamed to a spool file (in memory up to :data:`SPOOL_IN_MEMORY`, on disk past
  it), never held whole in memory: aiosmtpd's own ``DATA`` keeps every line of the message in
  a list and joins it (twice its size), fine for bounces and certified mail but not for a
  journal of 100 MB messages.  The spool holds exactly the message's bytes: what RFC 5321
  §4.5.2 transparency restores (a leading dot of a line removed), every CRLF kept, the final
  ``.CRLF`` not part of it.  A line longer than RFC 5321's 1000 octets is kept whole as well
  (malformed mail is archived and listed, never dropped).
* ``250`` only once the sink returns (the archive committed the message, its sighting and
  its Archived record); any failure is ``451 4.3.0`` (``452 4.3.1`` when the storage is full)
  and the sending server keeps the message and retries (RFC 5321 §4.5.4.1).  Archiving the
  same bytes again only adds a sighting, so a retry after a lost ``250`` loses nothing and
  stores nothing twice.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any, BinaryIO, cast

from aiosmtpd.smtp import SMTP

from sealpost.communications.email.addresses import AddressError, split_address

JOURNAL_LOCAL = "journal+"
SPOOL_IN_MEMORY = 1024 * 1024
"""Bytes of a journaled message kept in memory before its spool moves to a temporary file."""
UNKNOWN_JOURNAL_ADDRESS = "550 5.1.1 No such journal address"
JOURNAL_FAILED = "451 4.3.0 The message could not be archived; please try again later"


def journal_token(address: str, domain: str) -> str | None:
    """The token of ``journal+<token>@<domain>``; None for any other address."""
    try:
        local, found = split_address(address)
    except AddressError:
        return None
    if found.lower().rstrip(".") != domain.lower() or not local.lower().startswith(JOURNAL_LOCAL):
        return None
    token = local[len(JOURNAL_LOCAL) :]
    if not token or len(token) > 64 or not token.isalnum():
        return None
    return token.lower()


class SpooledData:
    """A message received by :func:`read_data`: its spool (rewound) and its size, or why it
    was refused (then nothing of it was kept)."""

    def __init__(self, spool: BinaryIO | None, size: int, refusal: str | None) -> None:
        self.spool = spool
        self.size = size
        self.refusal = refusal

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()


def keep_alive(server: SMTP) -> None:
    """Restart aiosmtpd's idle timer (``SMTP._reset_timeout``, 1.4.6), which it restarts only
    per command: a large message on a slow link must not be cut off because DATA as a whole
    outlasts the timeout (RFC 5321 §4.5.3.2 times each data block, 3 minutes)."""
    if server.transport is not None:  # after a disconnect its callback would fail
        server._reset_timeout()


async def read_data(server: SMTP, limit: int, max_seconds: float = 3600.0) -> SpooledData:
    """Read the DATA lines after ``354`` up to the lone dot into a spool (see the module).

    Mirrors aiosmtpd 1.4.6's own loop (``SMTP.smtp_DATA``) except where the bytes go: an
    over-long line is drained in pieces and kept; past ``limit`` bytes the rest is drained
    and discarded, then ``552`` (RFC 5321 §4.2.5: the reply waits for the end of the data).
    Each chunk received restarts the idle timer (:func:`keep_alive`) during the first
    ``max_seconds`` of the DATA; past them it runs out and closes the connection (a client
    trickling a message forever holds a connection and a spool no longer).
    """
    reader: asyncio.StreamReader = server._reader
    loop = asyncio.get_running_loop()
    cap = loop.time() + max_seconds
    spool = cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY))  # noqa: SIM115
    size = 0
    at_line_start = True
    too_much = False
    try:
        while server.transport is not None:
            try:
                chunk = await reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:  # a line longer than the reader's limit
                chunk = await reader.read(exc.consumed)
            if not chunk:  # the connection closed mid-message
                raise ConnectionResetError("the client closed the connection during DATA")
            if loop.time() < cap:
                keep_alive(server)
            if at_line_start and chunk.startswith(b"."):
                if chunk == b".\r\n":
                    break
                chunk = chunk[1:]  # RFC 5321 §4.5.2: the sender doubled a leading dot
            at_line_start = chunk.endswith(b"\r\n")
            size += len(chunk)
            if too_much:
                continue
            if size > limit:
                too_much = True
                spool.close()
                continue
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    if too_much:
        return SpooledData(None, size, f"552 5.3.4 Message too big: the limit is {limit} bytes")
    spool.seek(0)
    return SpooledData(spool, size, None)


def envelope_options(envelope: Any) -> tuple[str, ...]:
    """MAIL parameters (BODY=8BITMIME, SMTPUTF8, SIZE=...) as the client gave them."""
    return tuple(str(o) for o in (envelope.mail_options or ()))[:20]
