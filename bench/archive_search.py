"""Archive search on PostgreSQL: load rate, index size per message, query latency p50/p95.

    .venv/bin/python bench/archive_search.py                       # 100,000 messages
    .venv/bin/python bench/archive_search.py --messages 1000000    # the issue's target:
                                                                   # p95 < 200 ms (~15 GB free)

In a fresh schema of ``--database`` (dropped after unless ``--keep``), migrated as ``sealpost
serve`` does, it writes ``--messages`` archived messages straight into ``archive_messages``
(two tenants, 95 % / 5 %; threads of ~4 messages, a fifth of them owned by one of 20 agents)
and their index rows into ``archive_search`` (subject, body text of 40-250 words, attachment
names), with ``COPY`` in batches: the generated ``tsvector`` and the GIN index are computed as
the indexer's inserts compute them.  The words are Spanish and English call-centre vocabulary
with their accents, plus ~30,000 rarer invented words, drawn from a Zipf distribution (a few
words in most messages, most words in a few).  Then ``ANALYZE`` and, per kind, ``--queries``
searches through :meth:`ArchiveSearch.search` (the code of ``GET /v1/archive/search``, a page
of 50, newest first) by the big tenant's administrator:

* ``selective``: one rare word (in ~0.01 %-0.1 % of messages);
* ``common``: one of the most frequent words (in half of the messages or more);
* ``mid``: a call-centre word ("reclamación", "transferencia": ~1-5 % of messages);
* ``prefix``: a 5-letter prefix, no accent, of a mid-frequency accented word ("notif");
* ``two-words``: a common and a mid-frequency word;
* ``filtered``: a common word, ``direction=inbound`` and a 90-day window;
* ``agent``: a common word as an agent sees it (its threads and the unassigned ones);
* ``matching-ids``: ``matching_ids`` of a selective word (what a legal hold by query reads).

Prints load rates, sizes and a table of p50/p95 ms per kind.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import figure
from bench.sms import _schema_url

from sealpost.archive.model import Agent, Viewer
from sealpost.archive.search import ArchiveSearch, SearchQuery
from sealpost.db import migrate
from sealpost.db.blobs import BlobStore
from sealpost.db.engine import make_engine
from sealpost.logging import configure_logging

COMMON = """
de la que el en y a los se del las un por con no una su para es al lo como más pero sus le ya
o este sí porque esta entre cuando muy sin sobre también me hasta hay donde quien desde todo
nos durante todos uno les ni contra otros ese eso ante ellos e esto mí antes algunos qué unos
yo otro otras otra él tanto esa estos mucho quienes nada muchos cual poco ella estar estas
algunas algo nosotros hola gracias saludos buenos días tardes cordialmente atentamente un
saludo the of and to in is you that it he was for on are as with his they at be this have from
or one had by but not what all were we when your can said there use an each which she do how
their if will up other about out many then them these so some her would make like him into
time has look
""".split()  # noqa: SIM905
DOMAIN = """
pedido factura garantía reclamación devolución reembolso envío entrega cliente cuenta contrato
notificación notificaciones pago cobro tarjeta transferencia domiciliación recibo importe
plazo incidencia avería técnico visita cita teléfono móvil línea fibra router instalación baja
alta tarifa descuento promoción oferta presupuesto seguro póliza siniestro indemnización
préstamo hipoteca interés comisión saldo extracto movimiento cargo abono dirección código
postal número referencia expediente solicitud consulta queja urgente respuesta atención
servicio calidad order invoice warranty claim refund shipping delivery customer account
contract notification payment charge card transfer receipt amount deadline issue repair
technician appointment phone mobile line installation cancellation rate discount offer quote
insurance policy loan mortgage balance statement address reference request complaint urgent
reply support service quality
""".split()  # noqa: SIM905
SYLLABLES = """
ba be bi bo bu ca ce ci co cu da de di do du fa fe fi fo ga go gu la le li lo lu ma me mi mo
mu na ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu va ve vi vo za
zo tra tre tri bra bre bla ble cla cle pla ple gra gre fra fre
""".split()  # noqa: SIM905


def vocabulary(rng: random.Random, rare: int) -> list[str]:
    """Common words first (Zipf rank 1...), then domain words, then invented rare ones."""
    invented: set[str] = set()
    while len(invented) < rare:
        invented.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(3, 5))))
    return COMMON + DOMAIN + sorted(invented)


class Words:
    """Zipf(s=1.1) over the vocabulary, drawn from a precomputed cumulative table."""

    def __init__(self, words: list[str], rng: random.Random) -> None:
        self.words = words
        self.rng = rng
        weights = [1.0 / (rank**1.1) for rank in range(1, len(words) + 1)]
        total = 0.0
        self.cumulative = []
        for w in weights:
            total += w
            self.cumulative.append(total)

    def draw(self, k: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cumulative, k=k)


def rows(
    n: int, tenants: list[str], threads: list[tuple[str, str]], words: Words, rng: random.Random
) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    span = 700 * 86400
    for i in range(n):
        message_id = str(uuid.uuid4())
        tenant_id, thread_id = threads[i // 4 % len(threads)]
        archived = start + timedelta(seconds=span * i / n)
        sent = archived - timedelta(seconds=rng.randint(1, 600))
        subject = " ".join(words.draw(rng.randint(2, 7))).capitalize()
        body = " ".join(words.draw(rng.randint(40, 250)))
        files = ""
        if rng.random() < 0.2:
            files = f"{rng.choice(DOMAIN)}-{rng.randint(1, 99999)}.pdf"
        direction = rng.choice(("inbound", "inbound", "outbound", "internal"))
        sender = f"cliente{rng.randint(1, 20000)}@example.com"
        yield (
            (
                message_id,
                tenant_id,
                uuid.uuid4().hex + uuid.uuid4().hex,
                2000 + len(body),
                subject,
                sender,
                '["soporte@acme.es"]',
                sent,
                archived,
                direction,
                thread_id,
                bool(files),
                f'["{files}"]' if files else "[]",
                str(uuid.uuid4()),
                "journal",
                "indexed",
            ),
            (message_id, tenant_id, subject, body, files),
        )


MESSAGE_COLUMNS = (
    "id, tenant_id, sha256, size, subject, from_address, to_addresses, sent_at, archived_at,"
    " direction, thread_id, has_attachments, attachment_names, record_id, source_kind, index_state"
)


def load(url: str, n: int, batch: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    words = Words(vocabulary(rng, 30_000), rng)
    engine = make_engine(url)
    migrate.upgrade(engine)
    now = datetime.now(UTC)
    tenants = [str(uuid.uuid4()), str(uuid.uuid4())]
    agents = [str(uuid.uuid4()) for _ in range(20)]
    threads: list[tuple[str, str]] = []
    thread_rows = []
    for i in range(max(1, n // 4)):
        tenant = tenants[0] if i % 20 else tenants[1]
        thread_id = str(uuid.uuid4())
        threads.append((tenant, thread_id))
        owner = agents[i % 20] if tenant == tenants[0] and i % 5 == 0 else None
        thread_rows.append((thread_id, tenant, "", owner, "us", 4, now, now))
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for i, tenant in enumerate(tenants):
            cur.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (%s, %s, %s)",
                (tenant, f"bench-{i}-{tenant[:8]}", now),
            )
        for agent in agents:
            cur.execute(
                "INSERT INTO archive_agents (id, tenant_id, email, name, role, created_at)"
                " VALUES (%s, %s, %s, %s, 'agent', %s)",
                (agent, tenants[0], f"{agent[:8]}@acme.es", agent[:8], now),
            )
        with cur.copy(
            "COPY archive_threads (id, tenant_id, subject, owner_agent_id, waiting_on,"
            " message_count, created_at, last_message_at) FROM STDIN"
        ) as copy:
            for row in thread_rows:
                copy.write_row(row)
        raw.commit()
        generated = rows(n, tenants, threads, words, rng)
        message_seconds = index_seconds = 0.0
        done = 0
        while done < n:
            chunk = [next(generated) for _ in range(min(batch, n - done))]
            started = time.perf_counter()
            with cur.copy(f"COPY archive_messages ({MESSAGE_COLUMNS}) FROM STDIN") as copy:
                for message, _ in chunk:
                    copy.write_row(message)
            raw.commit()
            middle = time.perf_counter()
            with cur.copy(
                "COPY archive_search (message_id, tenant_id, subject, body, files) FROM STDIN"
            ) as copy:
                for _, index in chunk:
                    copy.write_row(index)
            raw.commit()
            message_seconds += middle - started
            index_seconds += time.perf_counter() - middle
            done += len(chunk)
            print(f"  loaded {done:,} / {n:,}", file=sys.stderr, flush=True)
        started = time.perf_counter()
        cur.execute("ANALYZE archive_messages")
        cur.execute("ANALYZE archive_search")
        cur.execute("ANALYZE archive_threads")
        raw.commit()
        analyze_seconds = time.perf_counter() - started
        cur.execute(
            "SELECT pg_table_size('archive_search'),"
            " pg_relation_size('ix_archive_search_document'),"
            " pg_total_relation_size('archive_messages')"
        )
        table_bytes, gin_bytes, messages_bytes = cur.fetchone()  # type: ignore[misc]
    finally:
        raw.close()
    engine.dispose()
    return {
        "tenant": tenants[0],
        "agent": agents[0],
        "words": words,
        "message_rate": n / message_seconds,
        "index_rate": n / index_seconds,
        "analyze_seconds": analyze_seconds,
        "table_bytes": table_bytes,
        "gin_bytes": gin_bytes,
        "messages_bytes": messages_bytes,
    }


def reused(url: str, seed: int) -> dict[str, Any]:
    """What ``load`` returns, read back from a kept schema (the vocabulary from the seed)."""
    rng = random.Random(seed)
    words = Words(vocabulary(rng, 30_000), rng)
    engine = make_engine(url)
    with engine.connect() as conn:
        tenant, _count = conn.execute(
            text("SELECT tenant_id, count(*) FROM archive_messages GROUP BY 1 ORDER BY 2 DESC")
        ).first()  # type: ignore[misc]
        total = conn.execute(text("SELECT count(*) FROM archive_messages")).scalar()
        agent = conn.execute(text("SELECT min(id) FROM archive_agents")).scalar()
        sizes = conn.execute(
            text(
                "SELECT pg_table_size('archive_search'),"
                " pg_relation_size('ix_archive_search_document'),"
                " pg_total_relation_size('archive_messages')"
            )
        ).one()
    engine.dispose()
    nan = float("nan")
    return {
        "n": total,
        "tenant": tenant,
        "agent": agent,
        "words": words,
        "message_rate": nan,
        "index_rate": nan,
        "analyze_seconds": nan,
        "table_bytes": sizes[0],
        "gin_bytes": sizes[1],
        "messages_bytes": sizes[2],
    }


def timed(call: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=20_000, help="rows per COPY")
    parser.add_argument("--queries", type=int, default=40, help="searches per kind")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--keep", action="store_true", help="keep the schema (its name is printed)")
    parser.add_argument(
        "--reuse", metavar="SCHEMA", help="query a schema kept by --keep (same --seed), no load"
    )
    args = parser.parse_args()
    configure_logging("WARNING")
    if args.reuse:
        schema = args.reuse
        sep = "&" if "?" in args.database else "?"
        url = f"{args.database}{sep}options=-csearch_path%3D{schema}"
    else:
        url, schema = _schema_url(args.database, prefix="bench_archive_search")
    try:
        n = args.messages
        if args.reuse:
            info = reused(url, args.seed)
            n = info["n"]
        else:
            print(f"loading {n:,} messages into schema {schema}", file=sys.stderr)
            info = load(url, n, args.batch, args.seed)
        words: Words = info["words"]
        engine = make_engine(url, pool_size=2)
        search = ArchiveSearch(engine, BlobStore(Path("/nonexistent")))
        admin = Viewer(info["tenant"])
        agent = Viewer(
            info["tenant"],
            Agent(info["agent"], info["tenant"], "a@acme.es", "a", "agent", (), datetime.now(UTC)),
        )
        rng = random.Random(args.seed + 1)
        vocab = words.words
        common = vocab[:10] + DOMAIN[:5]
        mid = [w for w in DOMAIN if len(w) >= 6]
        rare = vocab[len(COMMON) + len(DOMAIN) + 3000 :]
        accented = [w for w in DOMAIN if any(c in w for c in "áéíóú")]
        window_start = datetime(2025, 6, 1, tzinfo=UTC)

        def run(query: Callable[[], SearchQuery], viewer: Viewer = admin) -> Callable[[], object]:
            return lambda: search.search(viewer, query(), limit=51)

        kinds: dict[str, Callable[[], object]] = {
            "selective": run(lambda: SearchQuery(rng.choice(rare))),
            "common": run(lambda: SearchQuery(rng.choice(common))),
            "mid": run(lambda: SearchQuery(rng.choice(mid))),
            "prefix": run(
                lambda: SearchQuery(
                    rng.choice(accented)[:5].translate(str.maketrans("áéíóú", "aeiou"))
                )
            ),
            "two-words": run(lambda: SearchQuery(f"{rng.choice(common)} {rng.choice(mid)}")),
            "filtered": run(
                lambda: SearchQuery(
                    rng.choice(common),
                    direction="inbound",
                    after=window_start,
                    before=window_start + timedelta(days=90),
                )
            ),
            "agent": run(lambda: SearchQuery(rng.choice(common)), agent),
            "matching-ids": lambda: search.matching_ids(
                info["tenant"], SearchQuery(rng.choice(rare))
            ),
        }
        for call in kinds.values():  # warm the cache once
            call()
        results = {kind: timed(call, args.queries) for kind, call in kinds.items()}
        with engine.connect() as conn:
            matches = {
                "common": conn.execute(
                    text(
                        "SELECT count(*) FROM archive_search WHERE document @@"
                        " to_tsquery('simple', :w)"
                    ),
                    {"w": common[0]},
                ).scalar(),
            }
        engine.dispose()

        print(f"\narchive search on PostgreSQL, {n:,} messages ({schema})")
        print(
            f"load: archive_messages {info['message_rate']:,.0f} rows/s, archive_search (tsvector"
            f" + GIN) {info['index_rate']:,.0f} rows/s, ANALYZE {info['analyze_seconds']:.1f} s"
        )
        print(
            f"index size: table {info['table_bytes'] / 2**20:,.1f} MiB + GIN"
            f" {info['gin_bytes'] / 2**20:,.1f} MiB ="
            f" {(info['table_bytes'] + info['gin_bytes']) / n:,.0f} bytes per message"
            f" (GIN alone {info['gin_bytes'] / n:,.0f}); archive_messages"
            f" {info['messages_bytes'] / n:,.0f} bytes per message"
        )
        print(f"'{common[0]}' is in {matches['common']:,} messages\n")
        print(f"{'kind':<14}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
        for kind, values in results.items():
            print(
                f"{kind:<14}{statistics.median(values):>10.1f}{percentile(values, 95):>10.1f}"
                f"{max(values):>10.1f}"
            )
            figure(
                f"archive search ({n:,} messages): {kind} p95",
                percentile(values, 95),
                "ms",
                target=200.0,
                better="max",
            )
    finally:
        if not args.keep and not args.reuse:
            admin_engine = create_engine(args.database)
            with admin_engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin_engine.dispose()


if __name__ == "__main__":
    main()
