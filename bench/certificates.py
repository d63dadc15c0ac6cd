"""Evidence certificates benchmark: one certificate's cost, and how a burst's certificates keep up.

    .venv/bin/python bench/certificates.py                       # SQLite, 100 + 1,000
    .venv/bin/python bench/certificates.py --quick               # seconds: 10 + 50
    .venv/bin/python bench/certificates.py --backend postgresql  # a fresh schema, dropped after

Two measurements (issue 16, section 1):

- **per certificate** (in this process, SQLite, local keys and the embedded TSA): ``--single``
  certified emails are delivered to a local aiosmtpd sink and sealed in the ledger; then
  ``CertificateService.issue`` (the issuer's own step: gather the timeline and bundles,
  render the PDF, seal it PAdES B-LTA with two RFC 3161 timestamps, store the blob, commit the
  CertificateIssued record) runs for each in turn -> ms p50/p99;
- **burst**: a real ``sealpost serve`` (``--role``, default ``all``) with its SQLite or a fresh
  PostgreSQL schema; ``--burst`` certified emails POSTed to ``/v1/communications`` by 8
  clients, delivered to a local aiosmtpd sink on 127.0.0.1.  From the database: certificates/s
  (burst size / (last CertificateIssued record - first POST)), delivered -> certificate p50/p99
  (``communications.delivered_at`` to the CertificateIssued record's ``event_time``); POST p50/
  p99 during the burst; the peak RSS of the server and of its child processes (VmHWM).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from _report import figure  # noqa: E402
from sealpost.app import build  # noqa: E402
from sealpost.communications.email.mime import build_message  # noqa: E402
from sealpost.communications.email.submission import SubmissionRequest  # noqa: E402
from sealpost.communications.tables import communications  # noqa: E402
from sealpost.config import Settings  # noqa: E402
from sealpost.ledger.tables import evidence_records  # noqa: E402
from sealpost.logging import configure_logging  # noqa: E402
from sealpost.pki.keys import init_keys  # noqa: E402
from tests.support.serve import SealpostProcess, serve_env  # noqa: E402
from tests.support.smtp_peer import RecipientServer, free_port  # noqa: E402

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DOMAIN = "customer.example"
CLIENTS = 8


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _family(pid: int) -> list[int]:
    """``pid`` and its live descendants, whichever thread started them (a process pool's
    workers are children of the thread that first submitted)."""
    found, todo = [], [pid]
    while todo:
        one = todo.pop()
        found.append(one)
        for task in Path(f"/proc/{one}/task").glob("*/children"):
            try:
                todo += [int(p) for p in task.read_text().split()]
            except OSError:
                continue
    return found


def _peak_rss_mib(pid: int) -> float:
    """VmHWM of ``pid`` plus that of each of its live descendants (the pool's workers)."""
    total = 0
    for one in _family(pid):
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid``, of its live children and of its reaped ones."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for one in _family(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:13])  # utime, stime
        if one == pid:
            total += sum(int(f) for f in fields[13:15])  # cutime, cstime
    return total / tick


def _message(n: int) -> bytes:
    return build_message(
        sender="claims@acme.example",
        to=[f"r{n}@{DOMAIN}"],
        subject=f"Notice {n}",
        text="Your contract ends on the date below.\n" * 20,
        html=None,
        attachments=[("notice.pdf", "application/pdf", b"%PDF-1.4 " + b"x" * 20_000)],
        message_id=f"<bench-{n}-{uuid.uuid4().hex}@acme.example>",
    )


def per_certificate(count: int) -> tuple[list[float], list[float]]:
    """ms of ``CertificateService.issue`` for ``count`` delivered, sealed communications:
    wall time, and the CPU time of the issuing thread (less sensitive to a busy machine)."""
    work = Path(tempfile.mkdtemp(prefix="sealpost-bench-certs-"))
    init_keys(work / "keys")
    with RecipientServer() as peer:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=work / "data",
            keys_dir=work / "keys",
            database_url=f"sqlite:///{work / 'sealpost.db'}",
            batch_window_ms=20,
            delivery_routes={DOMAIN: f"127.0.0.1:{peer.port}"},
            archive_outgoing=False,
            certificates_enabled=False,
            pickup_worker_enabled=False,
            signing_worker_enabled=False,
        )
        sp = build(settings)
        sp.start_background()
        sp.supervisor.start(sp.communications_loops())  # delivery only (issuer off)
        try:
            tenant = sp.tenants.create("Bench")
            ids = []
            for n in range(count):
                accepted = sp.submissions.accept(
                    SubmissionRequest(
                        tenant_id=tenant.id,
                        via="api",
                        mail_from="claims@acme.example",
                        recipients=(f"r{n}@{DOMAIN}",),
                        raw=_message(n),
                        identification={"method": "bench"},
                    )
                )
                ids.extend(accepted.communication_ids)
            deadline = time.monotonic() + 120
            timings, cpu = [], []
            for cid in ids:
                while True:  # delivered, and every record sealed (not timed)
                    c = sp.communications.get(cid)
                    assert c is not None
                    timeline = sp.communications.timeline(c.tenant_id, cid)
                    if c.status == "delivered" and all(e.sealed for e in timeline):
                        break
                    assert time.monotonic() < deadline, f"{cid} not delivered and sealed"
                    time.sleep(0.05)
                t0, c0 = time.perf_counter(), time.thread_time()
                issued = sp.certificates.issue(c)
                timings.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.thread_time() - c0) * 1000)
                assert issued is not None, cid
            return timings, cpu
        finally:
            sp.stop_background()
            sp.engine.dispose()


def _database(backend: str, work: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{work / 'sealpost.db'}", None
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with create_engine(POSTGRES).begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    return f"{POSTGRES}?options=-csearch_path%3D{schema}", schema


def burst(backend: str, role: str, count: int, timeout: float) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="sealpost-bench-burst-"))
    init_keys(work / "keys")
    url, schema = _database(backend, work)
    api_port, submission_port = free_port(), free_port()
    try:
        with RecipientServer() as peer:
            env = serve_env(
                work / "data",
                work / "keys",
                submission_port,
                SEALPOST_DATABASE_URL=url,
                SEALPOST_API_PORT=str(api_port),
                SEALPOST_HOSTNAME="sealpost.bench",
                SEALPOST_DELIVERY_ROUTES=f'{{"{DOMAIN}": "127.0.0.1:{peer.port}"}}',
                SEALPOST_ARCHIVE_OUTGOING="false",
                SEALPOST_RATE_LIMIT_API_PER_IP="",
                SEALPOST_RATE_LIMIT_API_PER_TENANT="",
            )
            server = SealpostProcess(work, env, submission_port)
            server.start_timeout = 90
            api_key = server.run("tenant", "create", "acme").strip().splitlines()[-1]
            pid = server.start(role)
            ready = time.monotonic() + 60
            while not server._answers_http():  # role all: ready on SMTP, the API follows
                assert time.monotonic() < ready, server.log_tail()
                time.sleep(0.1)
            engine = create_engine(url)
            try:
                return _drive(server, engine, api_port, api_key, count, timeout, pid)
            finally:
                server.stop()
                engine.dispose()
    finally:
        if schema is not None:
            with create_engine(POSTGRES).begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def _drive(
    server: SealpostProcess,
    engine: object,
    api_port: int,
    api_key: str,
    count: int,
    timeout: float,
    pid: int,
) -> dict[str, float]:
    from sqlalchemy.engine import Engine

    assert isinstance(engine, Engine)
    posts: list[float] = []
    lock = threading.Lock()
    base = f"http://127.0.0.1:{api_port}"
    headers = {"Authorization": f"Bearer {api_key}"}

    def send(client: httpx.Client, n: int) -> None:
        t0 = time.perf_counter()
        answer = client.post(
            f"{base}/v1/communications",
            headers=headers,
            json={
                "from": "claims@acme.example",
                "to": [f"r{n}@{DOMAIN}"],
                "subject": f"Notice {n}",
                "text": "Your contract ends on the date below.\n" * 20,
            },
        )
        assert answer.status_code == 201, answer.text
        with lock:
            posts.append((time.perf_counter() - t0) * 1000)

    def client_loop(index: int) -> None:
        with httpx.Client(timeout=60) as client:
            for n in range(index, count, CLIENTS):
                send(client, n)

    cpu0 = _cpu_seconds(pid)
    started = datetime.now(UTC)
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client_loop, range(CLIENTS)))
    accepted = datetime.now(UTC)
    c, r = communications.c, evidence_records.c
    issued_query = (
        select(r.subject_id, r.event_time)
        .where(r.event == "CertificateIssued", r.subject_type == "communication")
        .order_by(r.seq)
    )
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            first: dict[str, datetime] = {}
            for subject_id, at in conn.execute(issued_query):
                first.setdefault(subject_id, _utc(at))
        if len(first) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    rss = _peak_rss_mib(pid)
    cpu = _cpu_seconds(pid) - cpu0
    with engine.connect() as conn:
        delivered = {
            cid: _utc(at)
            for cid, at in conn.execute(
                select(c.id, c.delivered_at).where(c.delivered_at.isnot(None))
            )
        }
    now = datetime.now(UTC)
    if len(first) < count:  # reported, not hidden: a waiting one's lag is at least its wait
        print(f"  INCOMPLETE: {len(first)} of {count} certificates within {timeout:g} s")
    lags = [((first.get(cid) or now) - at).total_seconds() for cid, at in delivered.items()]
    last = max(first.values()) if len(first) >= count else now
    return {
        "accepted_s": (accepted - started).total_seconds(),
        "last_delivered_s": (max(delivered.values()) - started).total_seconds(),
        "last_certificate_s": (last - started).total_seconds(),
        "rate": len(first) / (last - started).total_seconds(),
        "lag_p50": percentile(lags, 0.5),
        "lag_p99": percentile(lags, 0.99),
        "post_p50": percentile(posts, 0.5),
        "post_p99": percentile(posts, 0.99),
        "rss": rss,
        "cpu_ms": cpu / max(len(first), 1) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--role", default="all", help="serve's role for the burst")
    parser.add_argument("--single", type=int, default=100, help="certificates timed one by one")
    parser.add_argument("--burst", type=int, default=1000, help="certified emails in the burst")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")
    parser.add_argument("--skip-single", action="store_true")
    parser.add_argument("--skip-burst", action="store_true")
    parser.add_argument("--quick", action="store_true", help="10 + 50: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.single, args.burst = 10, 50
    configure_logging("WARNING")
    command = "python " + " ".join(sys.argv)
    if not args.skip_single:
        timings, cpu = per_certificate(args.single)
        p50, p99 = percentile(timings, 0.5), percentile(timings, 0.99)
        print(
            f"per certificate (SQLite, {args.single}): p50 {p50:.1f} ms  p99 {p99:.1f} ms"
            f"  (CPU of the issuing thread: p50 {percentile(cpu, 0.5):.1f} ms)"
        )
        figure(
            "certificate render+seal+store p50",
            p50,
            "ms",
            target=150,
            better="max",
            command=command,
        )
        figure("certificate render+seal+store p99", p99, "ms", command=command)
    if not args.skip_burst:
        got = burst(args.backend, args.role, args.burst, args.timeout)
        print(
            f"burst ({args.backend}, role {args.role}, {args.burst} via REST, {CLIENTS} clients):"
            f" accepted in {got['accepted_s']:.1f} s, last delivered at "
            f"{got['last_delivered_s']:.1f} s, last certificate at {got['last_certificate_s']:.1f}"
            f" s\n  certificates/s {got['rate']:.1f}; delivered->certificate p50 "
            f"{got['lag_p50']:.1f} s p99 {got['lag_p99']:.1f} s; POST p50 {got['post_p50']:.0f} ms"
            f" p99 {got['post_p99']:.0f} ms; peak RSS {got['rss']:.0f} MiB\n"
            f"  server CPU per certified email (accept, deliver, seal, certificate; all its"
            f" processes): {got['cpu_ms']:.0f} ms -> at most {2000 / got['cpu_ms']:.1f}/s on 2"
            " CPUs"
        )
        label = f"({args.backend}, {args.burst})"
        figure(
            f"certificates/s {label}", got["rate"], "1/s", target=25, better="min", command=command
        )
        figure(
            f"delivered->certificate p99 {label}",
            got["lag_p99"],
            "s",
            target=60,
            better="max",
            command=command,
        )
        figure(f"delivered->certificate p50 {label}", got["lag_p50"], "s", command=command)
        figure(f"POST p99 during burst {label}", got["post_p99"], "ms", command=command)
        figure(f"peak RSS serve {label}", got["rss"], "MiB", command=command)
        figure(f"server CPU per certified email {label}", got["cpu_ms"], "ms", command=command)
    os.sys.stdout.flush()


if __name__ == "__main__":
    main()
