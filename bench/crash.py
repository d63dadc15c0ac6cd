"""Crash campaign: kill -9 of the smtp and worker roles under a 5,000-message load.

    .venv/bin/python bench/crash.py                      # 5,000 messages, three kills
    .venv/bin/python bench/crash.py --messages 20000 --senders 16 --peer-delay 0.2

The heavier variant of ``tests/communications/email/test_kill_roles_under_load.py``:
``sealpost serve --role smtp`` and ``--role worker`` as subprocesses over one PostgreSQL
schema (created here, dropped after), SMTP clients that resend what they got no 250 for, and
a slow recipient server.  The worker is killed with SIGKILL at 25 % of the 250s, the SMTP
process at 50 %, both at 75 %; each is started again at once.  Prints:

- sent, 250s, refusals and DATA without reply (the clients' side);
- delivered copies, distinct Message-IDs, duplicates: redelivered (a delivery in flight at a
  worker's kill) and resubmitted (a DATA reply swallowed by an SMTP process's kill);
- records sealed (each exactly once), tree heads, consistency proofs verified between every
  pair of heads a monitor saw and between consecutive stored heads, bundles verified;
- per kill: deliveries in flight, which role held the sequencer lease, how long the restart
  took, and the time from the kill to the first 250, delivery and tree head after it
  (time to recover);
- the total, and how long after the last 250 everything was delivered and sealed.

Then it checks what the test checks (nothing lost, duplicates only where a kill cut a
delivery or a reply, evidence once per step, one log) and exits 1 if anything fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

from cryptography import x509
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sealpost.logging import configure_logging
from sealpost.pki.keys import init_keys
from tests.support import role_kills
from tests.support.role_kills import Kill

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--senders", type=int, default=8, help="SMTP clients")
    parser.add_argument("--rate", type=float, default=None, help="messages/s (default: all out)")
    parser.add_argument("--peer-delay", type=float, default=0.05, help="recipient's think time")
    parser.add_argument(
        "--lease", type=float, default=10.0, help="SEALPOST_SEQUENCER_LEASE_SECONDS"
    )
    parser.add_argument("--database", default=POSTGRES, help="a PostgreSQL URL")
    parser.add_argument("--deadline", type=float, default=1800.0, help="seconds, in all")
    args = parser.parse_args()
    configure_logging("WARNING")

    schema = f"bench_crash_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.database)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{args.database}?options=-csearch_path%3D{schema}"
    try:
        with tempfile.TemporaryDirectory(prefix="sealpost-crash-") as work:
            keys = Path(work) / "keys"
            init_keys(keys)
            root = x509.load_pem_x509_certificate((keys / "root-ca.pem").read_bytes())
            outcome = role_kills.run(
                Path(work),
                keys,
                url,
                [root],
                messages=args.messages,
                kills=[
                    Kill(0.25, ("worker",)),
                    Kill(0.5, ("smtp",)),
                    Kill(0.75, ("smtp", "worker")),
                ],
                senders=args.senders,
                rate=args.rate,
                peer_delay=args.peer_delay,
                sequencer_lease_seconds=args.lease,
                deadline_seconds=args.deadline,
                watch_interval=0.5,
            )
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    print(outcome.report())
    try:
        outcome.check()
    except AssertionError as exc:
        print(f"FAILED: {exc}")
        sys.exit(1)
    print("checks: nothing lost, duplicates only where a kill cut in, one log: OK")


if __name__ == "__main__":
    main()
