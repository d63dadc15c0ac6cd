"""Reminder sequences: enrolment rate, and the delay from a step's due time to its send.

    .venv/bin/python bench/sequences.py                  # SQLite (WAL, FULL), 100,000 enrolments
    .venv/bin/python bench/sequences.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/sequences.py --enrolments 20000 --dispatch 5000 --schedulers 2

One Sealpost built as ``sealpost serve`` builds it (on PostgreSQL in a fresh schema, dropped
after), a sequence of one plain ``sms`` step.

1. **Enrolment**: ``--enrolments`` people in requests of 10,000 JSON lines, each request as
   ``POST /v1/sequences/{id}/enrolments:bulk`` handles it without HTTP (the endpoint's row
   parser, then ``SequenceService.enrol_many``: one transaction with the enrolments, their
   first steps and their SequenceEnrolled evidence); then ``--single`` people one at a time
   (``enrol``, what ``POST /v1/sequences/{id}/enrolments`` calls).  The step's delay is one
   day, so nothing is due yet.
2. **Dispatch**: the first ``--dispatch`` of those steps get due times written straight into
   ``sequence_steps`` (``due_at`` = start + i / ``--rate``: a steady ``--rate`` due steps/s,
   starting ``--lead`` seconds ahead); then ``--schedulers`` processes each run the real
   ``Scheduler`` loop as ``sealpost serve`` configures it (batch 100, 8 threads, poll 0.5 s)
   until every step is sent.  The first scheduler shares its process with the SMS senders,
   bound to the test SMSC (``tests/support/smsc.py``) in a process of its own, so each step's
   SMS goes out and its receipt comes back while the next steps are due (``--no-delivery``:
   no SMS senders, no SMSC).  Per step, **dispatch delay** = the commit of the step's send
   (the SMS's accept group commit, with the guard inside: step marked sent, evidence written;
   taken when ``SequenceService.send`` returns) minus ``due_at``; also ``sent_at - due_at``
   (the guard's clock inside that transaction) and, with delivery, due -> the SMS's delivery
   evidence committed.  Peak RSS is each scheduler process's high-water mark during the
   dispatch (reset before it through ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import bindparam, create_engine, func, select, text, update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import figure
from bench.sms import _schema_url

from sealpost.app import Sealpost, build
from sealpost.config import Settings
from sealpost.logging import configure_logging
from sealpost.sequences.endpoints import _rows
from sealpost.sequences.model import StepState
from sealpost.sequences.schemas import EnrolmentIn
from sealpost.sequences.service import MAX_BULK, SequenceService
from sealpost.sequences.tables import sequence_steps
from sealpost.sequences.tasks import Scheduler
from sealpost.sms.tables import sms_messages
from tests.support.smsc import SmscPeer

TARGET_P99_MS = 1000.0

DEFINITION: dict[str, Any] = {
    "name": "Bench reminder",
    "payment_link_base": "https://pay.bench.test/p/",
    "steps": [
        {
            "channel": "sms",
            "delay": {"amount": 1, "unit": "natural_days"},
            "template": {
                "fallback_language": "es",
                "languages": {
                    "es": {"text": "Hola {{ name }}, debe {{ amount }} EUR: {{ payment_link }}"}
                },
            },
        }
    ],
}


def _line(i: int) -> str:
    return json.dumps(
        {
            "person": {"name": f"Persona {i}", "phone": f"+3461{i % 10_000_000:07d}"},
            "language": "es",
            "time_zone": "Europe/Madrid",
            "variables": {"amount": f"{100 + i % 900}.50", "reference": f"F-{i}"},
        }
    )


def _smsc_process(conn: Connection) -> None:
    smsc = SmscPeer().start()
    conn.send((smsc.port, smsc.system_id, smsc.password))
    conn.recv()
    taken = len(smsc.submissions)
    smsc.stop()
    conn.send(taken)


def _peak_reset() -> None:
    with contextlib.suppress(OSError):  # not Linux: the peak since the start
        Path("/proc/self/clear_refs").write_text("5")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _Timed:
    """The service as the Scheduler sees it, noting when each step's send returned."""

    def __init__(self, service: SequenceService) -> None:
        self.inner = service
        self.done: dict[str, tuple[float, str]] = {}

    def claim(self, limit: int = 100, lease_seconds: float = 120.0) -> list[StepState]:
        return self.inner.claim(limit, lease_seconds)

    def send(self, step: StepState) -> str:
        outcome = self.inner.send(step)
        self.done[step.id] = (time.time(), outcome)
        return outcome


def _run_scheduler(
    sp: Sealpost, stop: threading.Event, concurrency: int | None
) -> tuple[_Timed, threading.Thread]:
    made = sp.sequence_scheduler  # as `sealpost serve` configures it
    timed = _Timed(sp.sequences)
    scheduler = Scheduler(
        timed,  # type: ignore[arg-type]
        batch=made.batch,
        concurrency=concurrency or made.concurrency,
        poll_seconds=made.poll_seconds,
    )
    thread = threading.Thread(target=scheduler.run, args=(stop,), name="bench-scheduler")
    thread.start()
    return timed, thread


def _scheduler_process(settings: Settings, concurrency: int | None, conn: Connection) -> None:
    """Another scheduler process (``sealpost serve --role worker`` with SMS senders off)."""
    configure_logging("WARNING")
    sp = build(settings, prepare=False)
    sp.sequences.get(None, conn.recv())  # warm: the definition parsed once, as in a server
    conn.send("ready")
    conn.recv()  # go
    _peak_reset()
    stop = threading.Event()
    timed, thread = _run_scheduler(sp, stop, concurrency)
    conn.recv()  # stop
    stop.set()
    thread.join()
    conn.send((timed.done, _peak_mib()))
    sp.stop_background()
    sp.engine.dispose()


def _q(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    q = statistics.quantiles(values, n=100)
    return q[49], q[98]


def _at(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def enrol(sp: Sealpost, tenant_id: str, sequence_id: str, total: int, single: int) -> None:
    started = time.perf_counter()
    in_service = 0.0
    done = 0
    while done < total:
        n = min(MAX_BULK, total - done)
        body = "\n".join(_line(done + i) for i in range(n)).encode()
        rows = _rows(body, "application/x-ndjson")  # the endpoint's parser
        t1 = time.perf_counter()
        results = sp.sequences.enrol_many(tenant_id, sequence_id, rows)
        in_service += time.perf_counter() - t1
        assert all(r.enrolment is not None for r in results), "a row was refused"
        done += n
    bulk = time.perf_counter() - started
    print(
        f"enrol_many, {MAX_BULK:,} per request: {total:,} enrolments in {bulk:.1f} s = "
        f"{total / bulk:,.0f} enrolments/s (parse + enrol_many + commit; "
        f"enrol_many alone {total / in_service:,.0f}/s)"
    )
    started = time.perf_counter()
    for i in range(single):
        sp.sequences.enrol(tenant_id, sequence_id, EnrolmentIn.model_validate_json(_line(i)))
    one = time.perf_counter() - started
    print(
        f"enrol, one per request: {single:,} enrolments in {one:.1f} s = "
        f"{single / one:,.0f} enrolments/s"
    )


def dispatch(sp: Sealpost, settings: Settings, sequence_id: str, args: argparse.Namespace) -> bool:
    c = sequence_steps.c
    with sp.engine.connect() as conn:
        ids = list(
            conn.execute(select(c.id).order_by(c.planned_at, c.id).limit(args.dispatch)).scalars()
        )
    # the children start (imports, build) before the due times are set
    ctx = multiprocessing.get_context("spawn")
    children = []
    for _ in range(args.schedulers - 1):
        here, there = ctx.Pipe()
        process = ctx.Process(
            target=_scheduler_process, args=(settings, args.concurrency, there), daemon=True
        )
        process.start()
        here.send(sequence_id)
        children.append((process, here))
    for _, here in children:
        assert here.recv() == "ready"
    start = datetime.now(UTC) + timedelta(seconds=args.lead)
    spacing = 1.0 / args.rate
    due = {step_id: start + timedelta(seconds=i * spacing) for i, step_id in enumerate(ids)}
    statement = (
        update(sequence_steps)
        .where(c.id == bindparam("b_id"))
        .values(due_at=bindparam("b_due"), planned_at=bindparam("b_due"))
    )
    with sp.engine.begin() as conn:
        conn.execute(statement, [{"b_id": k, "b_due": v} for k, v in due.items()])
    if datetime.now(UTC) > start - timedelta(seconds=0.5):
        print("warning: setting the due times took longer than --lead")
    if not args.no_delivery:
        sp.start_sms()
    sp.sequences.get(None, sequence_id)
    _peak_reset()
    cpu0 = _cpu()
    stop = threading.Event()
    timed, thread = _run_scheduler(sp, stop, args.concurrency)
    for _, here in children:
        here.send("go")
    deadline = time.monotonic() + args.lead + len(ids) * spacing + args.deadline
    wanted = set(ids)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        with sp.engine.connect() as conn:
            sent = conn.execute(
                select(func.count()).where(c.status == "sent", c.due_at >= start)
            ).scalar_one()
        if sent >= len(ids):
            break
    stop.set()
    cpu = _cpu() - cpu0
    done = dict(timed.done)
    peaks = [_peak_mib()]
    for process, here in children:
        here.send("stop")
        theirs, peak = here.recv()
        done.update(theirs)
        peaks.append(peak)
        process.join(10)
    thread.join()
    with sp.engine.connect() as conn:
        rows = conn.execute(
            select(c.id, c.due_at, c.sent_at, c.status, c.message_id).where(c.id.in_(wanted))
        ).all()
    sent_rows = [r for r in rows if r.status == "sent"]
    delivered: dict[str, float] = {}
    if not args.no_delivery:
        s = sms_messages.c
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with sp.engine.connect() as conn:
                n = conn.execute(select(func.count()).where(s.status == "delivered")).scalar_one()
            if n >= len(sent_rows):
                break
            time.sleep(0.25)
        with sp.engine.connect() as conn:
            for r in conn.execute(select(s.id, s.updated_at).where(s.status == "delivered")):
                delivered[r.id] = _at(r.updated_at)
    commit_ms = [(done[r.id][0] - _at(r.due_at)) * 1000 for r in sent_rows if r.id in done]
    guard_ms = [(_at(r.sent_at) - _at(r.due_at)) * 1000 for r in sent_rows]
    delivery_ms = [
        (delivered[r.message_id] - _at(r.due_at)) * 1000
        for r in sent_rows
        if r.message_id in delivered
    ]
    first_due = min(_at(r.due_at) for r in rows)
    last_commit = max((done[r.id][0] for r in sent_rows if r.id in done), default=first_due)
    span = last_commit - first_due
    p50, p99 = _q(commit_ms)
    g50, g99 = _q(guard_ms)
    outcomes: dict[str, int] = {}
    for _, outcome in done.values():
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(
        f"dispatch: {len(ids):,} due steps at {args.rate:,.0f}/s; {args.schedulers} scheduler "
        f"process(es) x {args.concurrency or sp.sequence_scheduler.concurrency} threads, batch "
        f"{sp.sequence_scheduler.batch}; "
        + ("no SMS senders" if args.no_delivery else "SMS senders on, SMSC in its own process")
    )
    print(f"  sent: {len(sent_rows):,}/{len(ids):,}  (send outcomes: {outcomes})")
    print(
        f"  achieved: {len(sent_rows) / span if span > 0 else float('nan'):,.0f} steps/s "
        f"(first due -> last send committed, {span:.1f} s; offered {args.rate:,.0f}/s over "
        f"{len(ids) * spacing:.1f} s)"
    )
    verdict = "met" if p99 < TARGET_P99_MS else "NOT met"
    print(
        f"  due -> send committed: p50 {p50:,.0f} ms, p99 {p99:,.0f} ms "
        f"(target p99 < {TARGET_P99_MS:,.0f} ms on PostgreSQL: {verdict})"
    )
    backend = "postgresql" if args.database and "postgresql" in args.database else "sqlite"
    figure(
        f"sequences ({backend}): due -> send committed p99",
        p99,
        "ms",
        target=TARGET_P99_MS if backend == "postgresql" else None,
        better="max",
    )
    if span > 0:
        figure(f"sequences ({backend}): due steps sent", len(sent_rows) / span, "steps/s")
    print(f"  due -> sent_at (guard's clock, in the commit): p50 {g50:,.0f} ms, p99 {g99:,.0f} ms")
    if delivery_ms:
        d50, d99 = _q(delivery_ms)
        print(
            f"  due -> SMS delivery evidence committed: p50 {d50:,.0f} ms, p99 {d99:,.0f} ms "
            f"({len(delivery_ms):,} delivered)"
        )
    print(
        f"  CPU of the first scheduler process: {cpu * 1000 / max(1, len(sent_rows)):.1f} ms "
        f"per step sent ({cpu:.1f} s; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs)"
    )
    print("  peak RSS during dispatch: " + ", ".join(f"{p:.0f} MiB" for p in peaks))
    return len(sent_rows) == len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--enrolments", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=1_000, help="one-at-a-time enrolments")
    parser.add_argument("--dispatch", type=int, default=20_000, help="due steps to send")
    parser.add_argument("--rate", type=float, default=1_000.0, help="due steps per second")
    parser.add_argument("--lead", type=float, default=3.0, help="seconds before the first due")
    parser.add_argument("--schedulers", type=int, default=1, help="scheduler processes")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="send threads per scheduler (default: serve's)",
    )
    parser.add_argument("--no-delivery", action="store_true", help="no SMS senders, no SMSC")
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default SQLite)")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds after last due")
    args = parser.parse_args()
    args.dispatch = min(args.dispatch, args.enrolments)
    configure_logging("WARNING")

    smsc_process = None
    values: dict[str, Any] = {}
    if not args.no_delivery:
        mp = multiprocessing.get_context("fork")
        conn, child = mp.Pipe()
        smsc_process = mp.Process(target=_smsc_process, args=(child,), daemon=True)
        smsc_process.start()
        port, system_id, password = conn.recv()
        values = {
            "sms_provider": "smpp",
            "smpp_port": port,
            "smpp_system_id": system_id,
            "smpp_password": SecretStr(password),
        }
    workdir = Path(tempfile.mkdtemp(prefix="sealpost-bench-seq-"))
    url, schema = (None, None)
    if args.database:
        url, schema = _schema_url(args.database, "bench_seq")
    settings = Settings(
        _env_file=None,
        data_dir=workdir,
        database_url=url,
        smtp_enabled=False,
        delivery_enabled=False,
        certificates_enabled=False,  # no sequencer here: nothing would be sealed to certify
        **values,
    )
    sp = build(settings)
    ok = False
    try:
        tenant = sp.tenants.create("bench")
        sequence = sp.sequences.create(tenant.id, DEFINITION)
        print(
            f"database: {sp.engine.url.get_backend_name()}; one `sms` step; "
            f"{args.enrolments:,} enrolments"
        )
        enrol(sp, tenant.id, sequence.id, args.enrolments, args.single)
        ok = dispatch(sp, settings, sequence.id, args)
    finally:
        sp.stop_background()
        sp.engine.dispose()
        if smsc_process is not None:
            conn.send("stop")
            conn.recv()
            smsc_process.join(10)
        if schema and args.database:
            engine = create_engine(args.database)
            with engine.begin() as c:
                c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            engine.dispose()
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
