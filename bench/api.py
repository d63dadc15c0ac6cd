"""The REST API at a million communications (issue 16, section 6): req/s and p50/p99 latency.

    .venv/bin/python bench/api.py                        # 1,000,000 + 100,000 rows, 2 workers
    .venv/bin/python bench/api.py --quick                # 20,000 + 2,000 rows, seconds
    .venv/bin/python bench/api.py --fill-only            # fill a schema, print its name, keep it
    .venv/bin/python bench/api.py --schema bench_api_x   # measure a filled schema again

A fresh PostgreSQL schema is migrated, two tenants are created with an API key each, then the
``communications`` table is filled by SQL (``generate_series``): the first tenant's rows
spread over 180 days (newest now), statuses 80 % delivered, 10 % relayed, 5 % failed, 3 %
pickup, 2 % queued, 50,000 distinct recipients (about 20 communications each); the second
tenant's rows interleave in the same window.  A sample of 2,000 of the first tenant's
communications gets a SubmissionAcceptance evidence record each (what ``GET .../{id}``'s
timeline reads); the others have none.  Then ``VACUUM ANALYZE``.

``sealpost serve --role api`` (``--workers N`` when N > 1) is started on that schema, and a
load generator in this process (asyncio, HTTP/1.1 keep-alive over raw streams: cheaper than an
HTTP client library, it still shares the 2 CPUs) keeps ``--clients`` requests in flight for
``--seconds`` per endpoint: GET by id, list by status, list by date window (one day), list by
recipient, and a page reached through the cursor 85 days back.  For each it prints req/s,
p50/p99 and the server's CPU per request (utime + stime of the server's processes, from
/proc), then the ``EXPLAIN (ANALYZE, BUFFERS)`` of the endpoint's main statement as the
repository builds it (captured from SQLAlchemy, so before and after a change show the code's
own SQL).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import create_engine, event, text

sys.path.insert(0, str(Path(__file__).parent))

from _report import figure
from sealpost.api import cursors
from sealpost.app import build
from sealpost.communications.repository import CommunicationRepository
from sealpost.config import Settings
from sealpost.logging import configure_logging

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DAY = 86400.0
SPAN_DAYS = 180
RECIPIENTS = 50_000
SAMPLE = 2_000
P99_TARGET_MS = 20.0
BY_ID_TARGET_RPS = 1000.0

FILL = """
INSERT INTO communications (
    id, tenant_id, submission_id, channel, via, status, sender, recipient, subject,
    message_id, content_sha256, content_size, submitted_at, updated_at, delivered_at,
    next_attempt_at, attempts, last_reply, warn_at, expires_at, delay_warned,
    certificate_version, certificate_due, certificate_auto)
SELECT
    md5(:salt || i)::uuid::text, :tenant, md5('s' || :salt || i)::uuid::text, 'email',
    CASE WHEN i % 3 = 0 THEN 'smtp' ELSE 'api' END,
    CASE WHEN i % 100 < 80 THEN 'delivered' WHEN i % 100 < 90 THEN 'relayed'
         WHEN i % 100 < 95 THEN 'failed' WHEN i % 100 < 98 THEN 'pickup' ELSE 'queued' END,
    'care@acme.example',
    CASE WHEN i % 7 = 0 THEN 'User' ELSE 'user' END || (i % :recipients) || '@customer.example',
    'Notice ' || i, '<' || i || '.' || :salt || '@sealpost.example>',
    encode(sha256(convert_to(i::text, 'UTF8')), 'hex'), 10240 + i % 1000,
    t, t + interval '3 seconds',
    CASE WHEN i % 100 < 90 THEN t + interval '3 seconds' END,
    CASE WHEN i % 100 >= 98 THEN t + interval '1 year' END,
    1, CASE WHEN i % 100 < 90 THEN '250 2.0.0 Ok: queued' END,
    t + interval '4 hours', t + interval '5 days', 0,
    CASE WHEN i % 100 < 95 THEN 1 ELSE 0 END, 0, 1
FROM (
    SELECT i, CAST(:now AS timestamptz) - make_interval(secs => (i * :step) + :offset) AS t
    FROM generate_series(1, :n) AS i
) AS g
"""

EVIDENCE = """
INSERT INTO evidence_records (
    id, tenant_id, subject_type, subject_id, event, event_time, canonical, leaf_hash,
    leaf_index, created_at)
SELECT md5('r' || c.id)::uuid::text, c.tenant_id, 'communication', c.id,
       'SubmissionAcceptance', c.submitted_at,
       convert_to('{"event":"SubmissionAcceptance","subject":{"id":"' || c.id
                  || '","type":"communication"},"details":{"via":"' || c.via || '"}}', 'UTF8'),
       sha256(convert_to(c.id, 'UTF8')), NULL, c.submitted_at
FROM communications c WHERE c.id = ANY(:ids)
"""


@dataclass
class Setup:
    url: str
    schema: str
    work: Path
    key_a: str
    tenant_a: str
    now: datetime
    sample_ids: list[str]
    rows: int


def _settings(work: Path, url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=work,
        database_url=url,
        sequencer_enabled=False,
    )


def fill(rows: int, other: int) -> Setup:
    """A migrated schema with two tenants and ``rows`` + ``other`` communications."""
    schema = f"bench_api_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    work = Path(tempfile.mkdtemp(prefix="sealpost-bench-api-"))
    sp = build(_settings(work, url))
    a = sp.tenants.create("bench-a")
    b = sp.tenants.create("bench-b")
    key_a = sp.tenants.issue_api_key(a.id, "bench").secret
    (work / "tenant").write_text(f"{a.id}\n{key_a}\n")
    now = datetime.now(UTC).replace(microsecond=0)
    (work / "now").write_text(now.isoformat())
    started = time.perf_counter()
    with sp.engine.begin() as conn:
        for tenant, n, salt, offset in ((a.id, rows, "a", 0.0), (b.id, other, "b", 0.5)):
            conn.execute(
                text(FILL),
                {
                    "salt": salt,
                    "tenant": tenant,
                    "recipients": RECIPIENTS,
                    "now": now,
                    "step": SPAN_DAYS * DAY / n,
                    "offset": offset,
                    "n": n,
                },
            )
        sample = [
            str(uuid.UUID(_md5(f"a{i}")))
            for i in random.Random(16).sample(range(1, rows + 1), min(SAMPLE, rows))
        ]
        conn.execute(text(EVIDENCE), {"ids": sample})
    print(f"filled {rows:,} + {other:,} rows in {time.perf_counter() - started:.1f} s")
    (work / "sample").write_text("\n".join(sample))
    sp.engine.dispose()
    vacuum(url)
    (work / "rows").write_text(str(rows))
    return Setup(url, schema, work, key_a, a.id, now, sample, rows)


def _md5(value: str) -> str:
    """PostgreSQL's md5() of the fill, to name the sampled ids (not a security use)."""
    return hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()


def vacuum(url: str) -> None:
    started = time.perf_counter()
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE communications"))
        conn.execute(text("VACUUM ANALYZE evidence_records"))
    engine.dispose()
    print(f"VACUUM ANALYZE in {time.perf_counter() - started:.1f} s")


def reuse(schema: str) -> Setup:
    url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    engine = create_engine(url)
    with engine.connect() as conn:
        work = Path(conn.execute(text("SELECT value FROM bench_meta")).scalar_one())
    engine.dispose()
    tenant, key = (work / "tenant").read_text().split()
    now = datetime.fromisoformat((work / "now").read_text())
    sample = (work / "sample").read_text().split()
    return Setup(url, schema, work, key, tenant, now, sample, int((work / "rows").read_text()))


def remember(setup: Setup) -> None:
    engine = create_engine(setup.url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS bench_meta (value text)"))
        conn.execute(text("INSERT INTO bench_meta VALUES (:v)"), {"v": str(setup.work)})
    engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(setup: Setup, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SEALPOST_DATA_DIR": str(setup.work),
        "SEALPOST_DATABASE_URL": setup.url,
        "SEALPOST_API_HOST": "127.0.0.1",
        "SEALPOST_API_PORT": str(port),
        "SEALPOST_SEQUENCER_ENABLED": "false",
        "SEALPOST_RATE_LIMIT_API_PER_TENANT": "",
        "SEALPOST_RATE_LIMIT_API_PER_IP": "",
        "SEALPOST_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "sealpost", "serve", "--role", "api"]
    if workers > 1:
        command += ["--workers", str(workers)]
    return subprocess.Popen(command, env=env, start_new_session=True)


def tree_cpu(pid: int) -> float:
    """utime + stime (s) of ``pid`` and its children (the API worker processes)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, headers: bytes
) -> int:
    writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\n" + headers)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def load(
    port: int, key: str, paths: list[str], clients: int, seconds: float
) -> tuple[int, list[float], int]:
    """``clients`` keep-alive connections, each sending the next path as soon as the last
    answer came: (requests, latencies in s, non-200 answers)."""
    headers = (
        f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\nAccept: */*\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(n: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = n
        try:
            while time.perf_counter() < deadline:
                path = paths[i % len(paths)]
                i += clients
                t0 = time.perf_counter()
                status = await _request(reader, writer, path, headers)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(client(n) for n in range(clients)))
    return len(latencies), latencies, errors


def wait_ready(port: int, key: str, path: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"sealpost serve exited with {proc.returncode}")
        try:
            count, _, errors = asyncio.run(load(port, key, [path], 1, 0.01))
            if count and not errors:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the API did not answer within 120 s")


def settle(pid: int) -> None:
    """Wait until the server's processes are idle: the API workers start after the first
    one answers (imports, app), and their start-up must not count as requests' CPU."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        before = tree_cpu(pid)
        time.sleep(1.0)
        if tree_cpu(pid) - before < 0.05:
            return


def scenarios(setup: Setup) -> dict[str, tuple[list[str], dict[str, Any]]]:
    """Per endpoint: the paths the clients cycle through, and the repository call whose
    main statement is EXPLAINed."""
    ids = setup.sample_ids
    rnd = random.Random(6)
    now = setup.now
    days = [rnd.randint(1, SPAN_DAYS - 2) for _ in range(200)]
    windows = [(now - timedelta(days=d), now - timedelta(days=d - 1)) for d in days]
    spread = min(RECIPIENTS, setup.rows)
    recipients = [f"user{rnd.randrange(spread)}@customer.example" for _ in range(200)]
    deep = [
        cursors.encode(now - timedelta(days=85, seconds=rnd.randint(0, 3600)), "f" * 32)
        for _ in range(200)
    ]

    def q(**params: str) -> str:
        return "/v1/communications?" + urlencode(params)

    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return {
        "GET by id": ([f"/v1/communications/{i}" for i in ids], {"get": ids[0]}),
        "list by status": (
            [q(status="failed")],
            {"search": {"status": ["failed"]}},
        ),
        "list by date window": (
            [q(**{"from": a.strftime(fmt), "to": b.strftime(fmt)}) for a, b in windows],
            {"search": {"submitted_from": windows[0][0], "submitted_to": windows[0][1]}},
        ),
        "list by recipient": (
            [q(recipient=r) for r in recipients],
            {"search": {"recipient": recipients[0]}},
        ),
        "deep cursor page (85 days)": (
            [q(cursor=c) for c in deep],
            {"search": {"after": cursors.decode(deep[0])}},
        ),
    }


def explain(setup: Setup, call: dict[str, Any]) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the first statement the repository call executes."""
    engine = create_engine(setup.url)
    seen: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _capture(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _m: bool) -> None:
        seen.append((statement, params))

    repo = CommunicationRepository(engine)
    if "get" in call:
        repo.get(call["get"], setup.tenant_a)
    else:
        repo.search(setup.tenant_a, limit=51, **call["search"])
    event.remove(engine, "before_cursor_execute", _capture)
    statement, params = next((s, p) for s, p in seen if "communications" in s)
    with engine.connect() as conn:
        conn.exec_driver_sql(statement, params)  # warm
        plan = conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params
        ).scalars()
        lines = list(plan)
    engine.dispose()
    where = statement.split("WHERE", 1)[1] if "WHERE" in statement else ""
    return "WHERE" + " ".join(where.split()) + "\n" + "\n".join(lines)


def measure(setup: Setup, args: argparse.Namespace) -> None:
    port = free_port()
    proc = start_server(setup, port, args.workers)
    plans = {}
    try:
        cases = scenarios(setup)
        wait_ready(port, setup.key_a, cases["GET by id"][0][0], proc)
        settle(proc.pid)
        warm = [p for paths, _ in cases.values() for p in paths[:20]]
        asyncio.run(load(port, setup.key_a, warm, args.clients, 2.0))
        print(
            f"\n{args.clients} concurrent clients, {args.seconds:.0f} s per endpoint, "
            f"sealpost serve --role api --workers {args.workers}"
        )
        print(f"{'endpoint':<28}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}")
        command = " ".join(["python", "bench/api.py", *sys.argv[1:]])
        for name, (paths, call) in cases.items():
            spy = None
            if args.profile and name == "GET by id":  # the first process's Python, only
                spy_command = [os.environ.get("PY_SPY", "py-spy"), "record", "-p", str(proc.pid)]
                spy_command += ["--gil", "--threads", "--rate", "200", "--format", "raw"]
                spy_command += ["-o", args.profile, "--duration", str(int(args.seconds))]
                spy = subprocess.Popen(
                    spy_command,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(0.5)
            cpu0 = tree_cpu(proc.pid)
            count, lat, errors = asyncio.run(
                load(port, setup.key_a, paths, args.clients, args.seconds)
            )
            cpu = tree_cpu(proc.pid) - cpu0
            if spy is not None:
                spy.wait()
            lat.sort()
            p50 = statistics.median(lat) * 1000
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
            rps = count / args.seconds
            print(
                f"{name:<28}{rps:>8.0f}{p50:>9.1f}{p99:>9.1f}{cpu / count * 1000:>12.2f}"
                + (f"  ({errors} non-200)" if errors else "")
            )
            slug = name.split(" (")[0].replace(" ", "_")
            figure(
                f"api {slug} p99", p99, "ms", target=P99_TARGET_MS, better="max", command=command
            )
            if name == "GET by id":
                figure(
                    f"api {slug} req/s",
                    rps,
                    "req/s",
                    target=BY_ID_TARGET_RPS,
                    better="min",
                    command=command,
                )
            plans[name] = explain(setup, call)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the parent stops its API workers
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    for name, plan in plans.items():
        print(f"\n-- EXPLAIN {name}\n{plan}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--other-rows", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="20,000 + 2,000 rows, 2 s each")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2, help="API worker processes")
    parser.add_argument("--schema", help="measure this already filled schema (kept)")
    parser.add_argument("--fill-only", action="store_true", help="fill, print the schema, keep")
    parser.add_argument("--profile", help="py-spy the first API process during GET by id")
    parser.add_argument("--keep", action="store_true", help="do not drop the schema")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.other_rows, args.seconds = 20_000, 2_000, 2.0
    configure_logging("WARNING")
    setup = reuse(args.schema) if args.schema else fill(args.rows, args.other_rows)
    if not args.schema:
        remember(setup)
    if args.fill_only:
        print(f"schema {setup.schema}")
        return
    try:
        measure(setup, args)
    finally:
        if not (args.schema or args.keep):
            admin = create_engine(POSTGRES)
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {setup.schema} CASCADE"))
            admin.dispose()


if __name__ == "__main__":
    main()
