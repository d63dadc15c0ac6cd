"""Events benchmark: state change -> AMQP consumer and -> webhook receiver, latency and rate.

    .venv/bin/python bench/events.py                          # SQLite and PostgreSQL, 1,000/s
    .venv/bin/python bench/events.py --rate 500 --seconds 20 --backend sqlite
    .venv/bin/python bench/events.py --drain --count 20000    # a backlog: how fast it drains

The system under test is one Sealpost process, as ``sealpost serve`` runs it: the events
dispatcher, the webhook sender and the ledger sequencer, plus ``--threads`` threads standing
for the SMTP/API handlers, each accepting communications through ``SubmissionService`` (the
path every submission takes, group commit included), paced to ``--rate`` per second in all.
Each accepted communication is one ``sealpost.communication.accepted`` event.  The real
RabbitMQ on 127.0.0.1 and the receivers (an aio-pika consumer with manual acks; a keep-alive
HTTP receiver that checks every signature with ``standardwebhooks`` and answers 204) run in
this process.

- **latency** of an event: from the moment ``accept()`` returned (the change is committed) to
  the moment the consumer or the receiver has it (CLOCK_MONOTONIC is system-wide on Linux);
  p50 / p99 / max;
- **events/s**: events received / (last received - first committed);
- ``--drain``: the changes are committed first with the events machinery stopped, then it
  starts: events/s is then the pipeline's own rate (first to last received), latency the time
  from its start;
- **SUT**: the Sealpost process's peak RSS and CPU seconds per 1,000 events (generation
  included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import aio_pika
from sqlalchemy import create_engine, text
from standardwebhooks.webhooks import Webhook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sealpost.app import build
from sealpost.communications.email.submission import SubmissionRequest
from sealpost.config import Settings
from sealpost.logging import configure_logging
from sealpost.pki.keys import init_keys

sys.path.insert(0, str(Path(__file__).parent))
from _report import figure

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # noqa: S105 - a bench-only key
MESSAGE = (
    b"From: Acme <care@acme.example>\r\nTo: jane@customer.example\r\n"
    b"Subject: Notice\r\nMessage-ID: <bench@acme.example>\r\n\r\nYour warranty.\r\n"
)


class Receipts:
    """Arrival times (monotonic) of the first copy of each event, by communication id."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.copies = 0
        self.lock = threading.Lock()

    def got(self, event: dict[str, object]) -> None:
        now = time.monotonic()
        cid = str(event["subject"]).split("/", 1)[1]
        with self.lock:
            self.copies += 1
            self.at.setdefault(cid, now)


async def http_receiver(receipts: Receipts, ready: threading.Event, port: list[int]) -> None:
    """A minimal keep-alive HTTP/1.1 server: verify the signature, answer 204."""
    webhook = Webhook(SECRET)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode().split("\r\n")[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                receipts.got(webhook.verify(body, headers))
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port.append(server.sockets[0].getsockname()[1])
    ready.set()
    async with server:
        await server.serve_forever()


async def amqp_consumer(receipts: Receipts, queue_name: str, stop: threading.Event) -> None:
    connection = await aio_pika.connect(AMQP)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=500)
        queue = await channel.declare_queue(
            queue_name,
            durable=True,
            arguments={"x-single-active-consumer": True, "x-queue-type": "quorum"},
        )

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            receipts.got(json.loads(message.body))
            await message.ack()

        await queue.consume(on_message)
        while not stop.is_set():
            await asyncio.sleep(0.05)


def system_under_test(
    settings: Settings,
    tenant_id: str,
    total: int,
    rate: int,
    threads: int,
    drain: bool,
    out: mp.Queue,  # type: ignore[type-arg]
    done: mp.Event,  # type: ignore[type-arg]
) -> None:
    """Child process: a Sealpost (sequencer, dispatcher, webhook sender unless disabled in
    ``settings``) whose threads accept ``total`` communications; reports commit times, then
    runs until ``done``."""
    configure_logging("WARNING")
    sp = build(settings, prepare=False)
    sp.start_background()
    if not drain:
        sp.start_events()
    committed: dict[str, float] = {}
    lock = threading.Lock()
    start = time.monotonic() + 0.2

    def accept(index: int) -> None:
        for n, _ in enumerate(range(index, total, threads)):
            if rate and not drain:
                pause = start + (n * threads + index) / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            accepted = sp.submissions.accept(
                SubmissionRequest(
                    tenant_id=tenant_id,
                    via="api",
                    mail_from="care@acme.example",
                    recipients=("jane@customer.example",),
                    raw=MESSAGE,
                    identification={"method": "bench"},
                )
            )
            with lock:
                committed[accepted.communication_ids[0]] = time.monotonic()

    handlers = [threading.Thread(target=accept, args=(i,)) for i in range(threads)]
    cpu = time.process_time()
    for h in handlers:
        h.start()
    for h in handlers:
        h.join()
    generated = time.monotonic() - start
    started = time.monotonic()
    if drain:
        sp.start_events()
    out.put((committed, generated, started))
    done.wait(600)
    cpu = time.process_time() - cpu
    out.put((cpu, _peak_rss_mib()))
    sp.stop_background()
    sp.engine.dispose()


def background(coro_factory) -> threading.Thread:  # type: ignore[no-untyped-def]
    thread = threading.Thread(target=lambda: asyncio.run(coro_factory()), daemon=True)
    thread.start()
    return thread


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def run(
    backend: str, rate: int, seconds: float, count: int, threads: int, drain: bool, split: bool
) -> None:
    work = Path(tempfile.mkdtemp(prefix="sealpost-events-bench-"))
    keys = work / "keys"
    init_keys(keys)
    schema = None
    if backend == "sqlite":
        url = f"sqlite:///{work / 'sealpost.db'}"
    else:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with create_engine(POSTGRES).begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=work / "data",
        database_url=url,
        keys_dir=keys,
        delivery_enabled=False,
        certificates_enabled=False,
        smtp_enabled=False,
        amqp_url=AMQP,
        amqp_exchange=f"bench.{tag}.events",
        amqp_queue_prefix=f"bench.{tag}.events.",
        webhook_allow_private_networks=True,
    )
    sp = build(settings)
    tenant = sp.tenants.create("Bench")
    receipts_amqp, receipts_http = Receipts(), Receipts()
    stop, ready, port = threading.Event(), threading.Event(), []  # type: ignore[var-annotated]
    background(lambda: http_receiver(receipts_http, ready, port))
    ready.wait(5)
    sp.webhooks.create(
        tenant.id,
        url=f"http://127.0.0.1:{port[0]}/hook",
        description="bench",
        event_types=[],
        secret=SECRET,
    )
    background(lambda: amqp_consumer(receipts_amqp, settings.amqp_queue_prefix + tenant.id, stop))
    sp.engine.dispose()

    total = count if rate == 0 or drain else int(rate * seconds)
    spawn = mp.get_context("spawn")
    out, done = spawn.Queue(), spawn.Event()
    worker = None
    worker_settings = settings
    if split:  # the events machinery in its own process, as at scale: serve --role dispatcher
        if not drain:
            worker = _worker(worker_settings, work)
        settings = settings.model_copy(
            update={"events_dispatcher_enabled": False, "webhooks_enabled": False}
        )
    sut = spawn.Process(
        target=system_under_test,
        args=(settings, tenant.id, total, rate, threads, drain, out, done),
    )
    sut.start()
    committed, generated, started = out.get(timeout=900)
    if split and drain:  # the backlog is there: now the worker
        worker = _worker(worker_settings, work, settle=0.0)
        started = time.monotonic()
    deadline = time.monotonic() + 300
    while (len(receipts_amqp.at) < total or len(receipts_http.at) < total) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    done.set()
    cpu, rss = out.get(timeout=60)
    sut.join(30)
    stop.set()
    worker_figures = ""
    if worker is not None:
        worker_cpu, worker_rss = _cpu_of(worker.pid), _peak_rss_mib(worker.pid)
        worker.terminate()
        worker.wait(20)
        worker_figures = (
            f"; worker process: peak RSS {worker_rss:.0f} MiB, "
            f"CPU {worker_cpu / total * 1000:.2f} s per 1,000 events"
        )
    if schema:
        with create_engine(POSTGRES).begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))

    how = "committed first, then events started (drain)" if drain else f"offered at {rate}/s"
    print(
        f"\n{backend}: {total} state changes {how}; committed in {generated:.1f} s "
        f"({total / generated:.0f}/s), {threads} handler threads"
    )
    print(
        f"{'':18}{'events':>8}{'copies':>8}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    )
    layout = "worker process" if split else "one process"
    label = f"events {backend} {layout}"
    if not drain:  # issue 16 (P5): 1,000 state changes/s, AMQP p99 < 100 ms, webhook < 250 ms
        figure(
            f"{label}: state changes committed (offered {rate}/s)",
            total / generated,
            "/s",
            target=1000,
            better="min",
        )
    for name, receipts in (("AMQP consumer", receipts_amqp), ("webhook receiver", receipts_http)):
        latencies = [
            (receipts.at[c] - (started if drain else committed[c])) * 1000
            for c in committed
            if c in receipts.at
        ]
        if not latencies:
            print(f"{name:18}{0:>8}")
            continue
        first = min(receipts.at.values()) if drain else min(committed.values())
        span = max(receipts.at.values()) - first
        print(
            f"{name:18}{len(latencies):>8}{receipts.copies:>8}{len(latencies) / span:>10.0f}"
            f"{statistics.median(latencies):>9.1f}{percentile(latencies, 0.99):>9.1f}"
            f"{max(latencies):>9.1f}"
        )
        if not drain:
            figure(
                f"{label}: {name} p99 latency",
                percentile(latencies, 0.99),
                "ms",
                target=100 if receipts is receipts_amqp else 250,
                better="max",
            )
    print(
        f"SUT: peak RSS {rss:.0f} MiB, CPU {cpu / total * 1000:.2f} s per 1,000 events"
        + worker_figures
    )


def _worker(settings: Settings, work: Path, settle: float = 2.0) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALPOST_")}
    env.update(
        SEALPOST_DATABASE_URL=settings.resolved_database_url,
        SEALPOST_DATA_DIR=str(settings.data_dir),
        SEALPOST_KEYS_DIR=str(settings.resolved_keys_dir),
        SEALPOST_AMQP_URL=settings.amqp_url or "",
        SEALPOST_AMQP_EXCHANGE=settings.amqp_exchange,
        SEALPOST_AMQP_QUEUE_PREFIX=settings.amqp_queue_prefix,
        SEALPOST_DELIVERY_ENABLED="false",
        SEALPOST_CERTIFICATES_ENABLED="false",
        SEALPOST_SEQUENCER_ENABLED="false",
        SEALPOST_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
        SEALPOST_LOG_LEVEL="WARNING",
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "sealpost", "serve", "--role", "dispatcher"], env=env, cwd=work
    )
    time.sleep(settle)  # started and holding the dispatcher lease
    return worker


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rate", type=int, default=1000, help="state changes per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--count", type=int, default=10_000, help="with --drain")
    parser.add_argument("--threads", type=int, default=16, help="SMTP/API handler threads")
    parser.add_argument(
        "--worker-process",
        action="store_true",
        help="run the dispatcher and webhook sender in `sealpost serve --role dispatcher`",
    )
    parser.add_argument(
        "--drain",
        action="store_true",
        help="commit --count changes first, then start events: the pipeline's own rate",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke test: 2 s at 200/s")
    args = parser.parse_args()
    if args.quick:
        args.rate, args.seconds, args.count = 200, 2.0, 400
    configure_logging("WARNING")
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        run(
            backend,
            args.rate,
            args.seconds,
            args.count,
            args.threads,
            args.drain,
            args.worker_process,
        )


if __name__ == "__main__":
    main()
