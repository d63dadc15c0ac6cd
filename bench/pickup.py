"""Registered-pickup benchmark: what a recipient waits for on the pickup page.

    .venv/bin/python bench/pickup.py                          # SQLite, 200 pickups
    .venv/bin/python bench/pickup.py --backend postgresql --pickups 500 --threads 4

One Sealpost process (SQLite or the real PostgreSQL), its HTTP app driven in-process (the
page's JSON API, as pickup.js calls it).  Pickups are submitted like any certified email, their
notices are stored as certified emails (not delivered: no SMTP peer); each recipient then:

- **open**: spends the notice's link for a page session (NotificationAccessTracking);
- **code**: asks for an email code (a certified email of its own, durably accepted);
- **identify**: the right code (NotificationForAcceptance);
- **accept + handover**: ConsignmentAcceptance, then the content (ContentHandover);
- **total**: page open -> identified -> handed over, what the recipient waits for in all.

Each as ms p50/p99 over ``--pickups`` recipients, ``--threads`` at once; and recipients per
second.  The code is read back from the stored code email (not measured).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sealpost.api.app import create_app
from sealpost.app import Sealpost, build
from sealpost.communications.email.mime import build_message
from sealpost.communications.email.submission import SubmissionRequest
from sealpost.communications.ports import PickupRequest
from sealpost.config import Settings
from sealpost.logging import configure_logging
from sealpost.pickup.service import holder
from sealpost.pki.keys import init_keys

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
STEPS = ("open", "code", "identify", "accept + handover", "total")


def _submit(sp: Sealpost, tenant_id: str, n: int) -> str:
    raw = build_message(
        sender="claims@acme.example",
        to=[f"r{n}@customer.example"],
        subject=f"Claim {n}",
        text="Your refund is approved.\n" * 20,
        html=None,
        attachments=[("decision.pdf", "application/pdf", b"%PDF-1.4 " + b"x" * 40_000)],
        message_id=f"<bench-{n}-{uuid.uuid4().hex}@acme.example>",
    )
    accepted = sp.submissions.accept(
        SubmissionRequest(
            tenant_id=tenant_id,
            via="api",
            mail_from="claims@acme.example",
            recipients=(f"r{n}@customer.example",),
            raw=raw,
            identification={"method": "bench"},
            delivery="pickup",
            pickup=PickupRequest(identification="email_otp", consent="consent", policy="es"),
        )
    )
    return accepted.communication_ids[0]


def _stored_text(sp: Sealpost, communication_id: str) -> str:
    found = sp.communications.get(communication_id)
    assert found is not None
    return sp.contents.get(found.content_sha256).decode("utf-8", "replace")


def _walk(sp: Sealpost, client: TestClient, cid: str) -> dict[str, float]:
    p = sp.pickup.repo.get(cid)
    assert p is not None and p.notice_communication_id is not None
    notice = _stored_text(sp, p.notice_communication_id)
    found = re.search(r"/pickup/([A-Za-z0-9_-]+)", notice)
    assert found, notice
    took: dict[str, float] = {}
    t0 = time.perf_counter()
    opened = client.post("/pickup/api/open", json={"link": found.group(1)})
    assert opened.status_code == 200, opened.text
    took["open"] = time.perf_counter() - t0
    headers = {"X-Pickup-Session": opened.json()["session_token"]}
    t1 = time.perf_counter()
    assert client.post("/pickup/api/code", headers=headers).status_code == 200
    took["code"] = time.perf_counter() - t1
    challenge = sp.access.challenge(holder(p))
    assert challenge is not None and challenge.communication_id is not None
    code = re.search(r"Su código: (\d{6})", _stored_text(sp, challenge.communication_id))
    assert code
    t2 = time.perf_counter()
    identified = client.post(
        "/pickup/api/identify", json={"answer": code.group(1)}, headers=headers
    )
    assert identified.status_code == 200, identified.text
    took["identify"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    assert client.post("/pickup/api/accept", headers=headers).status_code == 200
    assert client.get("/pickup/api/content", headers=headers).status_code == 200
    took["accept + handover"] = time.perf_counter() - t3
    took["total"] = sum(took[k] for k in STEPS[:-1])
    return took


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pickups", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    configure_logging("WARNING")
    work = Path(tempfile.mkdtemp(prefix="sealpost-bench-pickup-"))
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
        delivery_enabled=False,
        certificates_enabled=False,
        pickup_worker_enabled=False,
        signing_worker_enabled=False,
        rate_limit_codes_per_ip=None,
        rate_limit_api_per_ip=None,
        rate_limit_api_per_tenant=None,
    )
    sp = build(settings)
    sp.start_background()
    try:
        tenant = sp.tenants.create("Bench")
        ids = [_submit(sp, tenant.id, n) for n in range(args.pickups)]
        while sp.pickup.run_due():  # 100 notices a round
            pass
        with TestClient(create_app(sp, start_background=False)) as client:
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.threads) as pool:
                results = list(pool.map(lambda cid: _walk(sp, client, cid), ids))
            wall = time.perf_counter() - t0
        print(f"pickup bench: {args.backend}, {args.pickups} recipients, {args.threads} threads")
        for step in STEPS:
            values = [r[step] for r in results]
            print(
                f"  {step:18} p50 {_ms(values, 0.5):7.1f} ms   p99 {_ms(values, 0.99):7.1f} ms"
                f"   mean {statistics.fmean(values) * 1000:7.1f} ms"
            )
        print(f"  recipients/s      {args.pickups / wall:7.1f}")
    finally:
        sp.stop_background()
        sp.engine.dispose()
        if schema is not None:
            with create_engine(POSTGRES).begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
