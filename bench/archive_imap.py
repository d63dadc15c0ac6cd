"""The archive's IMAP pull: messages/s of one sync of a mailbox, against a local Dovecot.

    .venv/bin/python bench/archive_imap.py                     # SQLite (WAL), 2,000 messages
    .venv/bin/python bench/archive_imap.py --messages 10000 --size 20000
    .venv/bin/python bench/archive_imap.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test

A Dovecot of its own (``tests/support/dovecot.py``: 127.0.0.1, a free port, Maildir in a
temporary directory) gets ``--messages`` distinct messages of about ``--size`` bytes each
(MULTIAPPEND-free: one APPEND each, not timed).  Then one Sealpost built as ``sealpost serve``
builds it (on PostgreSQL in a fresh schema, dropped after) reads the mailbox once through the
real worker (``ImapWorker.run_once``: LOGIN, SELECT, UID SEARCH, FETCH RFC822.SIZE then
BODY.PEEK[] in chunks of 100, each message ingested: blob, MIME scan, one transaction with
its Archived record, then the folder's cursor).  Printed: messages/s and MB/s of that sync,
and the process's peak RSS during it (reset before through ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sms import _schema_url

from sealpost.app import build
from sealpost.archive.imap import ImapPuller, ImapWorker
from sealpost.archive.tables import archive_messages
from sealpost.config import Settings
from sealpost.logging import configure_logging
from tests.support.dovecot import DovecotServer, message


def _peak_rss_mb() -> float:
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> None:
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=4000, help="approximate bytes per message")
    parser.add_argument("--database", default=None, help="a PostgreSQL URL (default SQLite)")
    parser.add_argument(
        "--ingest-threads", type=int, default=4, help="messages of a chunk ingested at once"
    )
    args = parser.parse_args()
    configure_logging("WARNING")

    server = DovecotServer()
    schema = None
    workdir = Path(tempfile.mkdtemp(prefix="sealpost-bench-imap-"))
    try:
        server.add_user("agent", "secret-1")
        server.start()
        filler = ("Lorem ipsum dolor sit amet, garantía y devolución. " * 200)[: args.size]
        started = time.perf_counter()
        with server.client("agent") as c:
            for i in range(args.messages):
                c.append("INBOX", message(f"Consulta {i}", body=f"{i}\n{filler}\n"))
        appended = time.perf_counter() - started
        print(f"appended {args.messages} messages in {appended:.1f} s (not timed below)")

        url = f"sqlite:///{workdir / 'bench.db'}"
        if args.database:
            url, schema = _schema_url(args.database, "bench_imap")
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=workdir,
            database_url=url,
            smtp_enabled=False,
            delivery_enabled=False,
            certificates_enabled=False,
            archive_imap_allow_private_networks=True,
        )
        sp = build(settings)
        try:
            tenant = sp.tenants.create("bench")
            sp.archive_mailboxes.create(
                tenant.id,
                name="bench",
                host="127.0.0.1",
                port=server.port,
                tls="none",
                username="agent",
                auth="password",
                secret="secret-1",  # noqa: S106  (the bench Dovecot's own user)
            )
            puller = ImapPuller(
                sp.archive_mailboxes,
                sp.archive,
                idle_seconds=0,
                allow_private_networks=True,
                ingest_threads=args.ingest_threads,
            )
            worker = ImapWorker(puller, concurrency=1)
            _reset_peak_rss()
            started = time.perf_counter()
            assert worker.run_once() == 1
            elapsed = time.perf_counter() - started
            with sp.engine.connect() as conn:
                count, total = conn.execute(
                    select(func.count(), func.coalesce(func.sum(archive_messages.c.size), 0))
                ).one()
            size = int(total)  # a Decimal on PostgreSQL
            mailbox = sp.archive_mailboxes.repo.all(tenant.id)[0]
            if mailbox.state != "ok" or count != args.messages:
                raise SystemExit(f"sync incomplete: {count} archived, {mailbox.last_error}")
            database = "PostgreSQL" if args.database else "SQLite"
            print(
                f"IMAP sync ({database}, {args.ingest_threads} ingest threads): {count} "
                f"messages, {size / 1e6:.1f} MB in "
                f"{elapsed:.2f} s: {count / elapsed:.0f} messages/s, "
                f"{size / 1e6 / elapsed:.1f} MB/s; peak RSS {_peak_rss_mb():.0f} MB"
            )
        finally:
            sp.stop_background()
            sp.engine.dispose()
    finally:
        server.close()
        if schema and args.database:
            engine = create_engine(args.database)
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            engine.dispose()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
