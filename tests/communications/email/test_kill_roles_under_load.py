"""Kill -9 of the ``smtp`` and ``worker`` processes under load, on PostgreSQL (issue 12).

``sealpost serve --role smtp`` and ``--role worker`` run as real subprocesses on the real
PostgreSQL; SMTP clients submit 400 distinct messages to a real (slow) recipient server.
Both processes are killed with SIGKILL at 30 % of the 250s, then the worker alone at 60 %;
each is started again at once (``bench/crash.py`` also kills the SMTP process alone).
Then:

* every message answered 250 reached the recipient, and each 250 named a stored communication;
* extra copies only for deliveries in flight at a worker's kill (redelivery) or for a DATA
  whose reply the kill swallowed (resubmission), counted and printed (``pytest -s``);
* each communication's evidence is SubmissionAcceptance then RelayToNonERDS, once;
* every record is sealed exactly once, every head is a prefix of the one log (consistency
  proofs across the kills), and each head is signed and timestamped.

``bench/crash.py`` runs the same with 5,000 messages and prints the figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from tests.support import role_kills
from tests.support.role_kills import Kill

MESSAGES = 400
RATE = 20.0
"""Messages per second: slow enough that the load outlasts the kills and restarts (a start
takes seconds on a busy 2-core machine), so each kill lands mid-load."""
PEER_DELAY = 0.5
"""The recipient thinks this long before its 250: deliveries are in flight at any moment."""


@pytest.mark.slow
@pytest.mark.postgres
def test_kill_9_of_smtp_and_worker_under_load_loses_nothing_and_seals_once(
    postgres_schema_url: str, tmp_path: Path, keys_dir: Path, root: x509.Certificate
) -> None:
    outcome = role_kills.run(
        tmp_path,
        keys_dir,
        postgres_schema_url,
        [root],
        messages=MESSAGES,
        rate=RATE,
        peer_delay=PEER_DELAY,
        kills=[Kill(0.3, ("smtp", "worker")), Kill(0.6, ("worker",))],
        deadline_seconds=240.0,
    )
    print("\n" + outcome.report())
    outcome.check()
    worker_kills = [k for k in outcome.kills if "worker" in k.roles]
    assert sum(len(k.in_flight) for k in worker_kills) > 0, "no kill caught a delivery in flight"
    assert all(k.acknowledged < MESSAGES for k in outcome.kills), "a kill came after the load"
    assert outcome.ledger.observed_heads > 1
