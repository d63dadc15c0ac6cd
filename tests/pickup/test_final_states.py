"""Acceptance, rejection and expiry are mutually exclusive (ETSI EN 319 522-3 group C): raced
from threads on the same pickup, exactly one wins and exactly one final record is written."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from sealpost.errors import Conflict
from sealpost.pickup.model import Visitor
from tests.pickup.flow import events_of, notify, send_pickup
from tests.support.mail import MailEnv

FINAL = ("ConsignmentAcceptance", "ConsignmentRejection", "AcceptanceRejectionExpiry")


@pytest.mark.parametrize("round_", range(4))
def test_accept_reject_and_expiry_racing_leave_one_final_state(
    mail_env: MailEnv, client: TestClient, key: dict[str, str], round_: int
) -> None:
    sp = mail_env.sp
    cid = send_pickup(client, key, f"race{round_}")
    notify(mail_env)
    with sp.pickup.repo.transaction() as conn:  # identified in page session "s"
        sp.pickup.repo.set_in(
            conn, cid, identified_at=sp.clock(), identified_session="s", offered_at=sp.clock()
        )
    p = sp.pickup.repo.get(cid)
    assert p is not None and p.expires_at is not None
    page = sp.pickup_parts.page
    visitor = Visitor("127.0.0.1", "race")
    barrier = threading.Barrier(3)
    outcomes: dict[str, str] = {}

    def run(name: str, action: object) -> None:
        barrier.wait()
        try:
            result = action()  # type: ignore[operator]
            outcomes[name] = "won" if result not in (0, None) else "lost"
        except Conflict:
            outcomes[name] = "lost"

    threads = [
        threading.Thread(target=run, args=("accept", lambda: page.accept(p, "s", visitor))),
        threading.Thread(target=run, args=("reject", lambda: page.reject(p, "s", visitor, "no"))),
        threading.Thread(
            target=run,
            args=("expire", lambda: sp.pickup.expire(p, p.expires_at + timedelta(seconds=1))),
        ),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes.values()) == ["lost", "lost", "won"], outcomes
    finals = [e for e in events_of(mail_env, cid) if e in FINAL]
    assert len(finals) == 1
    winner = next(name for name, outcome in outcomes.items() if outcome == "won")
    assert finals[0] == dict(zip(("accept", "reject", "expire"), FINAL, strict=True))[winner]
    status = client.get(f"/v1/communications/{cid}", headers=key).json()["status"]
    assert status == {"accept": "accepted", "reject": "rejected", "expire": "unclaimed"}[winner]
