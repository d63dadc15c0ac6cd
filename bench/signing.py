"""Signatures benchmark: what a signer waits for, and how many signatures a process applies.

    .venv/bin/python bench/signing.py                       # SQLite, 40 processes, 4 threads
    .venv/bin/python bench/signing.py --backend postgresql --processes 100 --threads 8

One Sealpost process (SQLite or the real PostgreSQL, the embedded TSA), driven through the
signature service the API and the signing page call: each process has one PDF (``--pages``)
and two parallel signers identified by their link only (no code: the code's email is not what
is measured).  Invitations are stored as certified emails, not delivered (no SMTP peer).

- **create**: ``POST /v1/signatures``'s work: PDF intake, anchors, signature fields, the
  records, two invitations (certified emails) -> ms p50/p99;
- **page image**: the first render of page 1 (PDFium), then a cached one -> ms;
- **sign**: one signer's PAdES signature (appearance, CMS, RFC 3161 timestamp, DSS) committed
  with its evidence -> ms p50/p99;
- **last sign**: the second signer's, which also completes the process (document timestamp,
  B-LTA, the sealed audit trail, copies by certified email) -> ms p50/p99;
- **signatures/s**: ``--threads`` signers at once on different processes, wall time;
- peak RSS of the process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fpdf import FPDF
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sealpost.app import build
from sealpost.config import Settings
from sealpost.logging import configure_logging
from sealpost.pki.keys import init_keys
from sealpost.signatures.model import (
    DocumentRequest,
    FieldRequest,
    ProcessRequest,
    SignerRequest,
    SignInput,
    Visitor,
)

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
VISITOR = Visitor("127.0.0.1", "bench/1.0")


def contract(pages: int) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_font("helvetica", size=11)
    for number in range(pages):
        pdf.add_page()
        for line in range(40):
            pdf.cell(0, 6, f"Page {number + 1}, clause {line + 1}: the warranty covers the repair.")
            pdf.ln(6)
    pdf.cell(0, 6, "{{signature:1}}")
    pdf.ln(30)
    pdf.cell(0, 6, "{{signature:2}}")
    return bytes(pdf.output())


def request(document: bytes) -> ProcessRequest:
    signers = tuple(
        SignerRequest(
            name=f"Signer {n}",
            email=f"signer{n}@customer.example",
            phone=None,
            role="signer",
            order=1,
            identification="none",
            fields=(FieldRequest(0, anchor=str(n)),),
        )
        for n in (1, 2)
    )
    return ProcessRequest(
        title="Repair quote",
        documents=(DocumentRequest("quote.pdf", document),),
        signers=signers,
        signing_order="parallel",
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def line(name: str, values: list[float]) -> str:
    return (
        f"{name:<22} n={len(values):<4} p50 {statistics.median(values):7.1f} ms   "
        f"p99 {percentile(values, 99):7.1f} ms   max {max(values):7.1f} ms"
    )


def peak_rss_mib() -> float:
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--processes", type=int, default=40)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--pages", type=int, default=3)
    args = parser.parse_args()
    configure_logging("WARNING")
    work = Path(tempfile.mkdtemp(prefix="sealpost-bench-signing-"))
    init_keys(work / "keys")
    url = f"sqlite:///{work / 'sealpost.db'}"
    schema = None
    if args.backend == "postgresql":
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with create_engine(POSTGRES).begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=work / "data",
        keys_dir=work / "keys",
        database_url=url,
        batch_window_ms=50,
        signing_worker_enabled=False,
        delivery_enabled=False,
    )
    sp = build(settings)
    sp.start_background()
    try:
        tenant = sp.tenants.create("Bench")
        document = contract(args.pages)
        service = sp.signatures
        created: list[float] = []
        processes = []
        for _ in range(args.processes):
            t0 = time.perf_counter()
            process, _new = service.create(tenant, request(document))
            created.append((time.perf_counter() - t0) * 1000)
            processes.append(process)

        first = processes[0]
        t0 = time.perf_counter()
        service.page_png(first, 0, 1)
        page_first = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        service.page_png(first, 0, 1)
        page_cached = (time.perf_counter() - t0) * 1000

        def sign(process_id: str, number: int) -> float:
            process = service.get(tenant.id, process_id)
            signer = process.signers[number]
            token, _ = service.new_link(process, signer)
            _session, process, signer = service.open_link(token, VISITOR)
            started = time.perf_counter()
            outcome = service.sign(process, signer, SignInput(True, None, signer.name), VISITOR)
            assert outcome == "signed", outcome
            return (time.perf_counter() - started) * 1000

        ids = [p.id for p in processes]
        wall = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            firsts = list(pool.map(lambda pid: sign(pid, 0), ids))
            lasts = list(pool.map(lambda pid: sign(pid, 1), ids))
        wall = time.perf_counter() - wall
        done = [service.get(tenant.id, pid).status for pid in ids]
        assert done.count("completed") == len(ids), done
    finally:
        sp.stop_background()
        sp.engine.dispose()
        if schema is not None:
            with create_engine(POSTGRES).begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))

    print(
        f"# signing bench: backend={args.backend} processes={args.processes} "
        f"threads={args.threads} pages={args.pages} ({len(document)} bytes)"
    )
    print(line("create", created))
    print(f"{'page image':<22} first {page_first:7.1f} ms   cached {page_cached:7.2f} ms")
    print(line("sign", firsts))
    print(line("last sign (completes)", lasts))
    total = len(firsts) + len(lasts)
    rate = total / wall
    print(f"{'signatures/s':<22} {rate:7.1f}   ({total} in {wall:.1f} s, {args.threads} threads)")
    print(f"{'peak RSS':<22} {peak_rss_mib():7.1f} MiB")


if __name__ == "__main__":
    main()
