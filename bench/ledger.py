"""Ledger benchmark: records/s appended and sealed, sealing delay, proof verifications/s.

    .venv/bin/python bench/ledger.py                       # SQLite and PostgreSQL
    .venv/bin/python bench/ledger.py --records 20000 --backend sqlite

As deployed, appenders (API/SMTP processes) and the sequencer are different processes: here
--appenders processes (default 1) commit records in batches of --append-batch while this
process runs the sequencer, which seals them into signed tree heads with an RFC 3161 token from the
embedded TSA.  For each batch window (1, 10, 100 ms) it prints:

- appended/s: records committed per second by the appender(s);
- sealed/s: records / (first append -> signing of the head that contains the last record);
- seal delay p50/p99: from a record's append to the signing time of the head containing it;
- heads: how many tree heads were signed (one seal signature + one timestamp each).

Then "sequencer alone": a backlog of committed records sealed by one thread, the single
writer's own throughput on one core.  Last, proofs served from the database (2,000 random
leaves with the process's node cache cold, then 2,000 others with it warm), inclusion proofs
verified per second (pure RFC 9162 maths, one core) and whole bundles verified per second
(seal signature, RFC 3161 token, certificate chains, record hash, proof).
"""

from __future__ import annotations

import argparse
import bisect
import json
import multiprocessing as mp
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sealpost.app import build
from sealpost.config import Settings
from sealpost.ledger import merkle
from sealpost.ledger.tables import evidence_records, tree_heads
from sealpost.ledger.tiles import read_tile
from sealpost.ledger.verify import HeadVerifications, verify_bundle
from sealpost.logging import configure_logging
from sealpost.pki.keys import init_keys
from tests.support.records import submission

sys.path.insert(0, str(Path(__file__).parent))
from _report import figure

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def appender(settings: Settings, tenant_id: str, records: int, batch: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """Child process: build ``records`` records, say ready, wait for go, commit them in batches."""
    configure_logging("WARNING")
    sp = build(settings, prepare=False)
    batches = [
        [submission(tenant_id, i + j) for j in range(batch)] for i in range(0, records, batch)
    ]
    out.put("ready")
    for chunk in batches:
        sp.log_storage.append(chunk)
    out.put("done")


def _settings(work: Path, url: str, keys: Path, window_ms: int) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=work,
        database_url=url,
        keys_dir=keys,
        batch_window_ms=window_ms,
    )


def _utc(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def run_window(settings: Settings, records: int, batch: int, appenders: int) -> dict[str, float]:
    sp = build(settings)
    tenant = sp.tenants.create(f"bench-{uuid.uuid4().hex[:6]}")
    base = sp.log_storage.state().tree_size
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    share = records // appenders
    children = [
        ctx.Process(target=appender, args=(settings, tenant.id, share, batch, queue))
        for _ in range(appenders)
    ]
    for child in children:
        child.start()
    for _ in children:
        assert queue.get(timeout=300) == "ready"
    stop = threading.Event()
    sequencer = threading.Thread(
        target=sp.sequencer.run,
        args=(stop,),
        kwargs={"window_seconds": settings.batch_window_ms / 1000, "lease_seconds": 30},
    )
    sequencer.start()
    for _ in children:
        assert queue.get(timeout=600) == "done"
    for child in children:
        child.join()
    total = share * appenders
    while sp.log_storage.state().tree_size < base + total:
        time.sleep(0.001)
    stop.set()
    sequencer.join()
    with sp.engine.connect() as conn:
        heads = conn.execute(
            select(tree_heads.c.tree_size, tree_heads.c.head_time)
            .where(tree_heads.c.tree_size > base)
            .order_by(tree_heads.c.tree_size)
        ).all()
        appended = conn.execute(
            select(evidence_records.c.leaf_index, evidence_records.c.created_at).where(
                evidence_records.c.tenant_id == tenant.id
            )
        ).all()
    sizes = [h.tree_size for h in heads]
    head_times = [_utc(h.head_time) for h in heads]
    created = [_utc(r.created_at) for r in appended]
    delays = sorted(
        max(0.0, head_times[bisect.bisect_right(sizes, r.leaf_index)] - c)
        for r, c in zip(appended, created, strict=True)
    )
    first, last_append = min(created), max(created)
    sp.engine.dispose()
    return {
        "append_rps": total / (last_append - first),
        "sealed_rps": total / (head_times[-1] - first),
        "p50_ms": statistics.median(delays) * 1000,
        "p99_ms": delays[int(len(delays) * 0.99) - 1] * 1000,
        "heads": len(heads),
    }


def sequencer_alone(settings: Settings, records: int) -> float:
    sp = build(settings)
    tenant = sp.tenants.create(f"alone-{uuid.uuid4().hex[:6]}")
    for i in range(0, records, 1000):
        sp.log_storage.append([submission(tenant.id, i + j) for j in range(1000)])
    started = time.perf_counter()
    sp.sequencer.seal_all()
    rate = records / (time.perf_counter() - started)
    sp.engine.dispose()
    return rate


def verification(settings: Settings, samples: int) -> dict[str, float]:
    sp = build(settings)
    head = sp.log_storage.head()
    assert head is not None
    size = head.tree_size
    indexes = random.sample(range(size), min(samples, size))
    leaves = sp.log_storage.nodes((0, i) for i in indexes)
    t = time.perf_counter()
    proofs = [(i, sp.ledger.inclusion_proof(i, size)) for i in indexes]
    served = len(proofs) / (time.perf_counter() - t)
    # again, over another random sample: the process's cache of immutable tile rows is warm,
    # as in a server that has been answering for a while
    again = random.sample(range(size), min(samples, size))
    t = time.perf_counter()
    for i in again:
        sp.ledger.inclusion_proof(i, size)
    served_warm = len(again) / (time.perf_counter() - t)
    rounds = max(1, 200_000 // len(proofs))
    t = time.perf_counter()
    for _ in range(rounds):
        for i, proof in proofs:
            merkle.verify_inclusion(leaves[(0, i)], i, size, proof, head.root_hash)
    verified = rounds * len(proofs) / (time.perf_counter() - t)
    full_tiles = [random.randrange(size // 256) for _ in range(200)] if size >= 256 else []
    t = time.perf_counter()
    for n in full_tiles:  # what /log/tile/0/<N> reads: 256 leaf hashes in one query
        read_tile(sp.log_storage, 0, n, 256, size)
    tiles = len(full_tiles) / (time.perf_counter() - t) if full_tiles else 0.0
    with sp.engine.connect() as conn:
        owners = conn.execute(text("SELECT id, tenant_id FROM evidence_records LIMIT 200")).all()
    bundles = [json.dumps(sp.ledger.bundle(rid, tenant)) for rid, tenant in owners]
    t = time.perf_counter()
    heads = HeadVerifications()  # one batch, as a certificate or an export verifies them
    for b in bundles:
        assert verify_bundle(b, heads=heads).ok
    bundle_rate = len(bundles) / (time.perf_counter() - t)
    sp.engine.dispose()
    return {
        "tree_size": size,
        "served": served,
        "served_warm": served_warm,
        "verified": verified,
        "bundles": bundle_rate,
        "tiles": tiles,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--append-batch", type=int, default=500)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--windows", default="1,10,100")
    parser.add_argument("--appenders", type=int, default=1, help="appender processes")
    args = parser.parse_args()
    configure_logging("WARNING")
    work = Path(tempfile.mkdtemp(prefix="sealpost-bench-"))
    keys = work / "keys"
    init_keys(keys)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(
        f"{args.records:,} records per run by {args.appenders} appender process(es), "
        f"in batches of {args.append_batch}"
    )
    print(
        f"{'backend':<11}{'window':>8}{'appended/s':>12}{'sealed/s':>10}"
        f"{'delay p50':>11}{'p99':>9}{'heads':>7}"
    )
    for backend in backends:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        if backend == "sqlite":
            url = f"sqlite:///{work / 'bench.db'}"
        else:
            admin = create_engine(POSTGRES)
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {schema}"))
            url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
        try:
            for window in [int(w) for w in args.windows.split(",")]:
                r = run_window(
                    _settings(work, url, keys, window),
                    args.records,
                    args.append_batch,
                    args.appenders,
                )
                print(
                    f"{backend:<11}{window:>6}ms{r['append_rps']:>12,.0f}{r['sealed_rps']:>10,.0f}"
                    f"{r['p50_ms']:>9.0f}ms{r['p99_ms']:>7.0f}ms{r['heads']:>7}"
                )
            alone = sequencer_alone(_settings(work, url, keys, 200), args.records)
            print(f"{backend:<11} sequencer alone: {alone:,.0f} records/s sealed (one thread)")
            if backend == "postgresql":
                figure(
                    "ledger sequencer alone, PostgreSQL",
                    alone,
                    "records/s",
                    target=20_000,
                    better="min",
                )
            v = verification(_settings(work, url, keys, 200), 2000)
            print(
                f"{backend:<11} tree of {v['tree_size']:,}: {v['served']:,.0f} proofs served/s "
                f"(cold cache; {v['served_warm']:,.0f}/s warm), "
                f"{v['verified']:,.0f} inclusion proofs verified/s, "
                f"{v['tiles']:,.0f} full level-0 tiles read/s, "
                f"{v['bundles']:,.0f} whole bundles verified/s"
            )
            figure(
                f"ledger proofs served, {backend}, cold cache (random leaves)",
                v["served"],
                "proofs/s",
                target=5_000,
                better="min",
            )
            figure(
                f"ledger proofs served, {backend}, warm cache",
                v["served_warm"],
                "proofs/s",
                target=5_000,
                better="min",
            )
            figure(
                f"ledger whole bundles verified, {backend}",
                v["bundles"],
                "bundles/s",
                target=3_000,
                better="min",
            )
        finally:
            if backend == "postgresql":
                with admin.begin() as conn:
                    conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the sequencer process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
