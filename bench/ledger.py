"""Ledger benchmark: records/s appended and sealed, proof verifications/s.

    .venv/bin/python bench/ledger.py                 # SQLite and PostgreSQL, 100k records
    .venv/bin/python bench/ledger.py --records 20000 --backend sqlite

For each backend and batch window (1, 10, 100 ms) an appender thread commits records in
batches of --append-batch while the sequencer thread seals them into signed, timestamped tree
heads (embedded TSA); the figure is records / (time from the first append to the last seal).
Then inclusion proofs are served from the database and verified: pure Merkle verification per
second, and whole-bundle verification (signatures, timestamp, chain) per second.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from sealpost.app import build
from sealpost.config import Settings
from sealpost.ledger import merkle
from sealpost.ledger.verify import verify_bundle
from sealpost.logging import configure_logging
from sealpost.pki.keys import init_keys
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.records import submission  # noqa: E402

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def run_window(settings: Settings, records: int, append_batch: int) -> dict[str, float]:
    sp = build(settings)
    tenant = sp.tenants.create(f"bench-{uuid.uuid4().hex[:6]}")
    start_size = sp.log_storage.state().tree_size
    batches = [
        [submission(tenant.id, i + j) for j in range(append_batch)]
        for i in range(0, records, append_batch)
    ]
    stop = threading.Event()
    sequencer = threading.Thread(
        target=sp.sequencer.run,
        args=(stop,),
        kwargs={"window_seconds": settings.batch_window_ms / 1000, "lease_seconds": 30},
    )
    append_latencies = []
    t0 = time.perf_counter()
    sequencer.start()
    for batch in batches:
        t = time.perf_counter()
        sp.log_storage.append(batch)
        append_latencies.append(time.perf_counter() - t)
    appended = time.perf_counter() - t0
    target = start_size + records
    while sp.log_storage.state().tree_size < target:
        time.sleep(0.0005)
    sealed = time.perf_counter() - t0
    stop.set()
    sequencer.join()
    heads = sp.log_storage.state().tree_size and _count_heads(sp)
    sp.engine.dispose()
    return {
        "append_rps": records / appended,
        "sealed_rps": records / sealed,
        "append_batch_p50_ms": statistics.median(append_latencies) * 1000,
        "heads": heads,
    }


def _count_heads(sp: object) -> int:
    from sqlalchemy import func, select

    from sealpost.store.tables import tree_heads

    with sp.engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(select(func.count()).select_from(tree_heads)).scalar_one())


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
    rounds = max(1, 200_000 // len(proofs))
    t = time.perf_counter()
    for _ in range(rounds):
        for i, proof in proofs:
            merkle.verify_inclusion(leaves[(0, i)], i, size, proof, head.root_hash)
    verified = rounds * len(proofs) / (time.perf_counter() - t)
    with sp.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id, tenant_id FROM evidence_records LIMIT 200"))]
        tenants = dict(conn.execute(text("SELECT id, tenant_id FROM evidence_records LIMIT 200")).all())
    bundles = [json.dumps(sp.ledger.bundle(i, tenants[i])) for i in ids]
    t = time.perf_counter()
    for b in bundles:
        assert verify_bundle(b).ok
    bundle_rate = len(bundles) / (time.perf_counter() - t)
    sp.engine.dispose()
    return {"tree_size": size, "proofs_served_ps": served, "proof_verify_ps": verified, "bundle_verify_ps": bundle_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--append-batch", type=int, default=500)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--windows", default="1,10,100")
    args = parser.parse_args()
    configure_logging("WARNING")
    work = Path(tempfile.mkdtemp(prefix="sealpost-bench-"))
    keys = work / "keys"
    init_keys(keys)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"records per run: {args.records}, appended in batches of {args.append_batch}")
    print(f"{'backend':<11}{'window':>8}{'appended/s':>13}{'sealed/s':>11}{'heads':>7}")
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
                settings = Settings(
                    _env_file=None,  # type: ignore[call-arg]
                    data_dir=work, database_url=url, keys_dir=keys, batch_window_ms=window,
                )
                r = run_window(settings, args.records, args.append_batch)
                print(f"{backend:<11}{window:>6}ms{r['append_rps']:>13,.0f}{r['sealed_rps']:>11,.0f}{r['heads']:>7}")
            v = verification(settings, 2000)
            print(
                f"{backend:<11} tree {v['tree_size']:,}: proofs served {v['proofs_served_ps']:,.0f}/s, "
                f"inclusion proofs verified {v['proof_verify_ps']:,.0f}/s, "
                f"whole bundles verified {v['bundle_verify_ps']:,.0f}/s"
            )
        finally:
            if backend == "postgresql":
                with admin.begin() as conn:
                    conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
