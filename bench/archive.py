"""The mail archive: ingest messages/s over the SMTP journal and through the service.

    .venv/bin/python bench/archive.py                       # SQLite (WAL, FULL), both parts
    .venv/bin/python bench/archive.py --part journal --messages 5000 --clients 16
    .venv/bin/python bench/archive.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test

Messages: ``--messages`` distinct ones generated before any timing (fixed seed), 10-50 KB
each: a plain-text body in Spanish-looking words, an HTML alternative for half of them, and a
PDF-like attachment (random bytes, base64) for ``--attachments`` of them; every one with its
own Message-ID, threads of up to five messages answering each other (In-Reply-To).

Parts (each in a fresh Sealpost process built as ``sealpost serve`` builds it: sequencer
running, SQLite or PostgreSQL in a fresh schema dropped after; one tenant per part, so no
message is a duplicate):

* ``journal``: Sealpost runs in a child process with its SMTP listeners; ``--clients``
  threads of this process each keep one SMTP connection to its **inbound port** and send
  their share to the tenant's journal address (``MAIL``, ``RCPT``, ``DATA``).  Per message:
  from ``MAIL`` to the ``250`` after ``DATA`` (which Sealpost sends only once the message is
  archived: blob fsync'ed, one transaction with its row, thread, sighting and Archived record).
* ``service``: ``ArchiveService.ingest`` called directly by ``--clients`` threads of the
  Sealpost process (no SMTP): the cost of the archive itself.  Per message: the call.

Peak RSS is the Sealpost process's high-water mark during the part (reset before it through
``/proc/self/clear_refs``).  Every part checks at the end that the archive holds exactly the
messages sent.  More parts (IMAP pull, search) plug into :data:`PARTS`: a function taking the
parsed arguments and returning a :class:`Result` for the final table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from multiprocessing.connection import Connection
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import figure
from bench.sms import _schema_url

from sealpost.app import Sealpost, build
from sealpost.archive.model import Source
from sealpost.archive.tables import archive_messages
from sealpost.config import Settings
from sealpost.logging import configure_logging

WORDS = tuple(
    " ".join(
        (
            "garantía pedido factura notificación cliente entrega plazo reclamación devolución",
            "contrato servicio atención incidencia número referencia importe pago dirección",
            "teléfono correo respuesta solicitud documento adjunto fecha semana mañana gracias",
        )
    ).split(" ")
)


@dataclass
class Result:
    part: str
    messages: int
    clients: int
    seconds: float
    latencies_ms: list[float]
    peak_rss_mib: float
    megabytes: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def make_messages(count: int, attachments: float, seed: int = 15) -> list[bytes]:
    """Distinct messages of 10-50 KB (see the module docstring)."""
    rng = random.Random(seed)
    out: list[bytes] = []
    thread_head: str | None = None
    for i in range(count):
        m = EmailMessage()
        customer = i % 3 == 0
        m["From"] = f"cliente{i % 500}@gmail.com" if customer else f"agente{i % 20}@acme.es"
        m["To"] = "soporte@acme.es" if customer else f"cliente{i % 500}@gmail.com"
        m["Subject"] = ("Re: " if thread_head else "") + f"Pedido {i // 5} {rng.choice(WORDS)}"
        m["Date"] = "Mon, 07 Dec 2026 09:00:00 +0100"
        m["Message-ID"] = f"<bench-{seed}-{i}@acme.es>"
        if thread_head is not None:
            m["In-Reply-To"] = thread_head
        thread_head = None if i % 5 == 4 else m["Message-ID"]
        target = rng.randint(9_000, 42_000)
        has_attachment = rng.random() < attachments
        body_size = target // 3 if has_attachment else target
        words = []
        size = 0
        while size < body_size:
            word = rng.choice(WORDS)
            words.append(word)
            size += len(word.encode()) + 1
        body = "\n".join(" ".join(words[j : j + 12]) for j in range(0, len(words), 12))
        m.set_content(body + "\n")
        if i % 2 == 0:
            m.add_alternative(f"<html><body><p>{body[:2000]}</p></body></html>", subtype="html")
        if has_attachment:
            blob = b"%PDF-1.4\n" + rng.randbytes(max(1000, (target - body_size) * 3 // 4))
            m.add_attachment(
                blob, maintype="application", subtype="pdf", filename=f"factura-{i}.pdf"
            )
        out.append(m.as_bytes(policy=SMTP_POLICY))
    return out


def _settings(workdir: Path, url: str | None) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=workdir,
        database_url=url,
        hostname="sealpost.bench",
        smtp_host="127.0.0.1",
        smtp_submission_port=0,
        smtp_tls_port=None,
        smtp_inbound_port=0,
        delivery_enabled=False,
        certificates_enabled=False,
        archive_worker_enabled=False,
    )


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _archived(sp: Sealpost, tenant_id: str) -> int:
    with sp.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(archive_messages.c.tenant_id == tenant_id)
            ).scalar()
            or 0
        )


# -- journal: real SMTP to the inbound port --------------------------------------------------


def _server(conn: Connection, workdir: Path, url: str | None) -> None:
    """Sealpost in its own process (as ``serve``): tells the port and journal address, then
    answers ``count`` and ``peak`` until ``stop``."""
    configure_logging("WARNING")
    sp = build(_settings(workdir, url))
    tenant = sp.tenants.create("bench-journal")
    token = sp.archive.settings(tenant.id).journal_token
    sp.start_background()
    ports = sp.start_smtp()
    conn.send((ports["inbound"], f"journal+{token}@{sp.settings.resolved_bounce_domain}"))
    try:
        while True:
            command = conn.recv()
            if command == "reset":
                _reset_peak()
                conn.send(None)
            elif command == "count":
                conn.send(_archived(sp, tenant.id))
            elif command == "peak":
                conn.send(_peak_mib())
            else:
                break
    finally:
        sp.stop_background()
        sp.engine.dispose()
        conn.send("stopped")


def journal(args: argparse.Namespace, messages: list[bytes], url: str | None) -> Result:
    mp = multiprocessing.get_context("spawn")
    conn, child = mp.Pipe()
    workdir = Path(tempfile.mkdtemp(prefix="sealpost-bench-archive-j-"))
    process = mp.Process(target=_server, args=(child, workdir, url), daemon=True)
    process.start()
    port, address = conn.recv()
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(share: list[bytes]) -> None:
        mine: list[float] = []
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
            smtp.ehlo("mx.acme.es")
            for raw in share:
                started = time.perf_counter()
                smtp.mail("journal@acme.es")
                smtp.rcpt(address)
                code, reply = smtp.data(raw)
                mine.append((time.perf_counter() - started) * 1000)
                if code != 250:
                    with lock:
                        failures.append(f"{code} {reply!r}")
        with lock:
            latencies.extend(mine)

    conn.send("reset")
    conn.recv()
    shares = [messages[i :: args.clients] for i in range(args.clients)]
    threads = [threading.Thread(target=client, args=(s,)) for s in shares]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    conn.send("peak")
    peak = conn.recv()
    conn.send("count")
    count = conn.recv()
    conn.send("stop")
    conn.recv()
    process.join(30)
    if failures or count != len(messages):
        raise SystemExit(f"journal: {count} archived of {len(messages)}; {failures[:3]}")
    return Result(
        "journal (SMTP)",
        len(messages),
        args.clients,
        seconds,
        latencies,
        peak,
        sum(map(len, messages)) / 1e6,
    )


# -- service: ArchiveService.ingest in-process -----------------------------------------------


def _service(conn: Connection, workdir: Path, url: str | None, clients: int) -> None:
    configure_logging("WARNING")
    messages: list[bytes] = conn.recv()
    sp = build(_settings(workdir, url))
    tenant = sp.tenants.create("bench-service")
    sp.start_background()
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(share: list[bytes]) -> None:
        mine = []
        for i, raw in enumerate(share):
            started = time.perf_counter()
            sp.archive.ingest(tenant.id, raw, Source("api", str(i)))
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)

    _reset_peak()
    threads = [
        threading.Thread(target=worker, args=(messages[i::clients],)) for i in range(clients)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    peak = _peak_mib()
    count = _archived(sp, tenant.id)
    sp.stop_background()
    sp.engine.dispose()
    conn.send((seconds, latencies, peak, count))


def service(args: argparse.Namespace, messages: list[bytes], url: str | None) -> Result:
    mp = multiprocessing.get_context("spawn")
    conn, child = mp.Pipe()
    workdir = Path(tempfile.mkdtemp(prefix="sealpost-bench-archive-s-"))
    process = mp.Process(target=_service, args=(child, workdir, url, args.clients), daemon=True)
    process.start()
    conn.send(messages)
    seconds, latencies, peak, count = conn.recv()
    process.join(30)
    if count != len(messages):
        raise SystemExit(f"service: {count} archived of {len(messages)}")
    return Result(
        "service (ingest)",
        len(messages),
        args.clients,
        seconds,
        latencies,
        peak,
        sum(map(len, messages)) / 1e6,
    )


PARTS: dict[str, Callable[[argparse.Namespace, list[bytes], str | None], Result]] = {
    "journal": journal,
    "service": service,
}
"""The parts ``--part all`` runs, in order (IMAP and search plug in here)."""


def table(results: list[Result], backend: str) -> None:
    print()
    print(f"archive ingest on {backend}")
    head = f"{'part':<18} {'msgs':>6} {'clients':>7} {'MB':>7} {'msgs/s':>8} "
    head += f"{'p50 ms':>8} {'p99 ms':>8} {'peak RSS MiB':>13}"
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.part:<18} {r.messages:>6} {r.clients:>7} {r.megabytes:>7.1f} {r.rate:>8.1f} "
            f"{r.p(0.5):>8.1f} {r.p(0.99):>8.1f} {r.peak_rss_mib:>13.0f}"
            + (f"  {r.note}" if r.note else "")
        )
        figure(f"archive ingest ({backend}): {r.part}", r.rate, "messages/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=8, help="SMTP connections / threads")
    parser.add_argument("--attachments", type=float, default=0.3, help="share with a PDF")
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default SQLite)")
    args = parser.parse_args()
    configure_logging("WARNING")
    messages = make_messages(args.messages, args.attachments)
    sizes = sorted(map(len, messages))
    print(
        f"{len(messages)} messages, {sizes[0] // 1024}-{sizes[-1] // 1024} KiB "
        f"(median {statistics.median(sizes) / 1024:.0f} KiB), "
        f"{sum(b'filename=' in m for m in messages)} with an attachment"
    )
    results = []
    for name in PARTS if args.part == "all" else [args.part]:
        url, schema = (None, None)
        if args.database:
            url, schema = _schema_url(args.database, "bench_archive")
        try:
            results.append(PARTS[name](args, messages, url))
            print(f"{name}: done", flush=True)
        finally:
            if schema and args.database:
                engine = create_engine(args.database)
                with engine.begin() as c:
                    c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
                engine.dispose()
    table(results, "PostgreSQL" if args.database else "SQLite")


if __name__ == "__main__":
    main()
