"""Certified SMS throughput: accepted → submitted over SMPP → receipt evidence committed.

    .venv/bin/python bench/sms.py                         # 5,000 SMS, SQLite (WAL, FULL)
    .venv/bin/python bench/sms.py --messages 20000 --database postgresql+psycopg://postgres@127.0.0.1:5432/test

Sealpost with the SMPP adapter bound to the test SMSC (``tests/support/smsc.py``, on
127.0.0.1, a delivery receipt per segment 10 ms after each submit), which runs in a process of
its own as an operator's SMSC does (``--smsc-in-process`` shares Sealpost's interpreter with
it, as the first measurements did).  ``--clients`` threads
accept SMS through the service (what ``POST /v1/sms`` calls, without HTTP); the sender claims,
submits and records them; receipts come back and decide each one (DeliveryReported).  Prints
SMS/s from the first acceptance to the last decision, and per SMS the time from its
acceptance to the commit of its delivery evidence (p50, p99).  On PostgreSQL it works in a
fresh schema, dropped after.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.process
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import create_engine, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sealpost.app import build
from sealpost.config import Settings
from sealpost.logging import configure_logging
from sealpost.sms.tables import sms_messages
from tests.support.smsc import SmscPeer


def _schema_url(base: str, prefix: str = "bench_sms") -> tuple[str, str]:
    """A fresh PostgreSQL schema (dropped by the caller after) and the URL that works in it."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


def _smsc_process(conn: Connection) -> None:
    """The SMSC in its own process: sends its address, serves until told to stop, then sends
    how many segments it took."""
    smsc = SmscPeer().start()
    conn.send((smsc.port, smsc.system_id, smsc.password))
    conn.recv()
    taken = len(smsc.submissions)
    smsc.stop()
    conn.send(taken)


class _Smsc:
    """The SMSC peer, here or in a child process; ``taken()`` counts the segments it took."""

    def __init__(self, own_process: bool) -> None:
        self.process: multiprocessing.process.BaseProcess | None = None
        if own_process:
            self.conn, child = multiprocessing.get_context("fork").Pipe()
            self.process = multiprocessing.get_context("fork").Process(
                target=_smsc_process, args=(child,), daemon=True
            )
            self.process.start()
            self.port, self.system_id, self.password = self.conn.recv()
        else:
            self.peer = SmscPeer().start()
            self.port, self.system_id, self.password = (
                self.peer.port,
                self.peer.system_id,
                self.peer.password,
            )

    def stop(self) -> int:
        if self.process is None:
            here = len(self.peer.submissions)
            self.peer.stop()
            return here
        self.conn.send("stop")
        there: int = self.conn.recv()
        self.process.join(10)
        return there


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--clients", type=int, default=8, help="threads accepting SMS")
    parser.add_argument("--concurrency", type=int, default=16, help="SEALPOST_SMS_CONCURRENCY")
    parser.add_argument("--senders", type=int, default=4, help="SEALPOST_SMS_SENDERS")
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default SQLite)")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds, in all")
    parser.add_argument(
        "--smsc-in-process", action="store_true", help="run the SMSC peer in this process"
    )
    args = parser.parse_args()
    configure_logging("WARNING")

    smsc = _Smsc(own_process=not args.smsc_in_process)
    workdir = Path(tempfile.mkdtemp(prefix="sealpost-bench-sms-"))
    url, schema = (None, None)
    if args.database:
        url, schema = _schema_url(args.database)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=workdir,
        database_url=url,
        sms_provider="smpp",
        smpp_port=smsc.port,
        smpp_system_id=smsc.system_id,
        smpp_password=SecretStr(smsc.password),
        sms_concurrency=args.concurrency,
        sms_senders=args.senders,
        sms_confirm_interval_seconds=0.5,
        smtp_enabled=False,
        delivery_enabled=False,
        certificates_enabled=False,  # no sequencer here: nothing would be sealed to certify
    )
    sp = build(settings)
    tenant = sp.tenants.create("bench")
    sp.start_sms()
    accepted_at: dict[str, datetime] = {}
    lock = threading.Lock()

    def accept(i: int) -> None:
        sms_id = sp.sms.send(
            tenant.id, f"+3461{i % 10_000_000:07d}", f"Recordatorio {i}: su cita es mañana.", {}
        )
        with lock:
            accepted_at[sms_id] = datetime.now(UTC)

    started = time.monotonic()
    first = datetime.now(UTC)
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(accept, range(args.messages)))
    accept_seconds = time.monotonic() - started
    c = sms_messages.c
    deadline = started + args.deadline
    while True:
        with sp.engine.connect() as conn:
            done = conn.execute(select(func.count()).where(c.status == "delivered")).scalar_one()
        if done >= args.messages or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    with sp.engine.connect() as conn:
        rows = conn.execute(select(c.id, c.status, c.updated_at)).all()
    sp.stop_background()
    taken = smsc.stop()
    delivered = [r for r in rows if r.status == "delivered"]
    latencies = []
    last = first
    for r in delivered:
        at = r.updated_at if r.updated_at.tzinfo else r.updated_at.replace(tzinfo=UTC)
        last = max(last, at)
        latencies.append((at - accepted_at[r.id]).total_seconds() * 1000)
    span = (last - first).total_seconds()
    print(
        f"database: {sp.engine.url.get_backend_name()}; {args.messages} SMS, {args.clients} "
        f"accepting threads, {args.senders} senders x {args.concurrency}; SMSC "
        + ("in this process" if args.smsc_in_process else "in its own process")
    )
    print(f"accepted: {args.messages / accept_seconds:.0f} SMS/s ({accept_seconds:.1f} s)")
    print(
        f"delivered with evidence: {len(delivered)}/{args.messages} in {span:.1f} s "
        f"= {len(delivered) / span:.0f} SMS/s (first acceptance to last decision)"
    )
    if latencies:
        q = statistics.quantiles(latencies, n=100)
        print(f"accepted -> delivery evidence committed: p50 {q[49]:.0f} ms, p99 {q[98]:.0f} ms")
    print(f"segments taken by the SMSC: {taken} (duplicates: {taken - len(delivered)})")
    sp.engine.dispose()
    if schema and args.database:
        engine = create_engine(args.database)
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
    if len(delivered) < args.messages:
        sys.exit(1)


if __name__ == "__main__":
    main()
