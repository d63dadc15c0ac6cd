"""SMTP acceptance latency: an asyncio client that times each message's "250" after DATA.

smtp-source (bench/smtp_accept.sh's load) reports no latencies, so this client replays the same
shape of load against a running server and times every message:

- data latency: from the moment the terminating ``<CRLF>.<CRLF>`` has been handed to the
  kernel to the server's reply: for Sealpost, parse + fsync + commit (the group commit);
- session latency: connect, greeting, EHLO, MAIL, RCPT, DATA, reply, QUIT;

with ``-c`` concurrent sessions, one message per connection (smtp-source's default), bodies of
``--size`` bytes, each message with its own Message-ID so every blob is distinct.  It speaks
SMTP directly on asyncio streams (no aiosmtplib), so the timing point is exact and the
client's own CPU cost stays small: it shares the machine with the server.

    .venv/bin/python bench/smtp_latency.py --port 2528 -n 5000 -c 20 --size 10240
    .venv/bin/python bench/smtp_latency.py --port 2528 --attachment-mb 25   # one big message

Prints one line, ``LATENCY key=value ...``; exit status 1 if any message was not accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import math
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate

HELO = "bench-latency.example"
MAIL_FROM = "sender@bench-client.example"
RCPT_TO = "rcpt@sink.example"


class SmtpError(Exception):
    pass


@dataclass
class Stats:
    data_ms: list[float] = field(default_factory=list)
    session_ms: list[float] = field(default_factory=list)
    failures: int = 0
    first_error: str = ""


def text_message(size: int) -> bytes:
    """Headers + ``size`` payload bytes in 78-character lines, like smtp-source -l."""
    headers = (
        f"From: <{MAIL_FROM}>\r\nTo: <{RCPT_TO}>\r\nDate: {formatdate()}\r\n"
        f"Message-ID: <{uuid.uuid4()}@bench-latency.example>\r\nSubject: latency probe\r\n\r\n"
    ).encode()
    full, rest = divmod(size, 78)
    body = b"X" * 78 + b"\r\n"
    return headers + body * full + (b"X" * rest + b"\r\n" if rest else b"")


def attachment_message(megabytes: float) -> bytes:
    """multipart/mixed with a text part and a random binary attachment of ``megabytes`` MiB."""
    payload = os.urandom(int(megabytes * 1024 * 1024))
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    boundary = f"=_bench_{uuid.uuid4().hex}"
    head = (
        f"From: <{MAIL_FROM}>\r\nTo: <{RCPT_TO}>\r\nDate: {formatdate()}\r\n"
        f"Message-ID: <{uuid.uuid4()}@bench-latency.example>\r\nSubject: attachment probe\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"A {megabytes:g} MiB attachment follows.\r\n"
        f"--{boundary}\r\nContent-Type: application/octet-stream; name=blob.bin\r\n"
        f'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="blob.bin"'
        f"\r\n\r\n"
    ).encode()
    return head + encoded + f"--{boundary}--\r\n".encode()


def dot_stuff(data: bytes) -> bytes:
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..")


async def reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpError("connection closed by the server")
        lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        if line[3:4] != b"-":
            return int(line[:3]), "\n".join(lines)


async def command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str, expect: int
) -> None:
    writer.write(line.encode() + b"\r\n")
    await writer.drain()
    code, text = await reply(reader)
    if code != expect:
        raise SmtpError(f"{line.split(':')[0]} -> {text}")


async def one_session(host: str, port: int, message: bytes, stats: Stats, timeout: float) -> None:
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        async with asyncio.timeout(timeout):
            code, text = await reply(reader)
            if code != 220:
                raise SmtpError(f"greeting -> {text}")
            await command(reader, writer, f"EHLO {HELO}", 250)
            await command(reader, writer, f"MAIL FROM:<{MAIL_FROM}>", 250)
            await command(reader, writer, f"RCPT TO:<{RCPT_TO}>", 250)
            await command(reader, writer, "DATA", 354)
            writer.write(message)
            writer.write(b".\r\n")
            await writer.drain()
            t_end_of_data = time.perf_counter()
            code, text = await reply(reader)
            t_reply = time.perf_counter()
            if code != 250:
                raise SmtpError(f"end of DATA -> {text}")
            await command(reader, writer, "QUIT", 221)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    stats.data_ms.append((t_reply - t_end_of_data) * 1000)
    stats.session_ms.append((time.perf_counter() - t0) * 1000)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def run(args: argparse.Namespace) -> Stats:
    stats = Stats()
    remaining = args.messages

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            if args.attachment_mb:
                message = dot_stuff(attachment_message(args.attachment_mb))
            else:
                message = dot_stuff(text_message(args.size))
            try:
                await one_session(args.host, args.port, message, stats, args.timeout)
            except (OSError, SmtpError, TimeoutError, ValueError) as exc:
                stats.failures += 1
                stats.first_error = stats.first_error or repr(exc)

    await asyncio.gather(*(worker() for _ in range(min(args.concurrency, args.messages))))
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("-n", "--messages", type=int, help="default 5000; 1 with --attachment-mb")
    parser.add_argument("-c", "--concurrency", type=int, default=20)
    parser.add_argument("--size", type=int, default=10240, help="payload bytes per message")
    parser.add_argument(
        "--attachment-mb", type=float, default=0, help="send MIME messages with an attachment"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per session")
    args = parser.parse_args()
    if args.messages is None:
        args.messages = 1 if args.attachment_mb else 5000

    t0 = time.perf_counter()
    stats = asyncio.run(run(args))
    wall = time.perf_counter() - t0
    ok = len(stats.data_ms)
    fields = {
        "n": args.messages,
        "c": args.concurrency,
        "size": int(args.attachment_mb * 1024 * 1024) if args.attachment_mb else args.size,
        "ok": ok,
        "failed": stats.failures,
        "wall_s": f"{wall:.3f}",
        "mps": f"{ok / wall:.1f}" if wall > 0 else "inf",
        "data_p50_ms": f"{percentile(stats.data_ms, 50):.1f}",
        "data_p99_ms": f"{percentile(stats.data_ms, 99):.1f}",
        "data_max_ms": f"{max(stats.data_ms, default=float('nan')):.1f}",
        "session_p50_ms": f"{percentile(stats.session_ms, 50):.1f}",
        "session_p99_ms": f"{percentile(stats.session_ms, 99):.1f}",
    }
    print("LATENCY " + " ".join(f"{k}={v}" for k, v in fields.items()))
    if stats.failures:
        print(f"first error: {stats.first_error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
