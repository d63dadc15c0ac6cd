"""The pickup window to the second: es (10 natural days, date to date on Madrid's clock) and
fr (15 days from the day after the notice, Paris) across the DST changes, the closing instant
stated exactly in the notice and the expiry record, acceptance one second before it and not
at it (AcceptanceRejectionExpiry once, whoever sees the window closed first), and a reminder
sent once by two workers racing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from sealpost.pickup.model import policy
from tests.pickup.flow import (
    Recipient,
    code_in,
    events_of,
    link_in,
    mails_to,
    notify,
    records_of,
    send_pickup,
    token_of,
    wait_mail,
)
from tests.support.mail import MailEnv

NOTICE = "certified message is waiting"


@pytest.mark.parametrize(
    ("name", "notice", "closes"),
    [
        # es, spring: 25 March 10:00 CET -> 4 April 10:00 CEST (239 hours)
        ("es", datetime(2026, 3, 25, 9, 0, tzinfo=UTC), datetime(2026, 4, 4, 8, 0, tzinfo=UTC)),
        # es, autumn: 20 October 10:00 CEST -> 30 October 10:00 CET (241 hours)
        ("es", datetime(2026, 10, 20, 8, 0, tzinfo=UTC), datetime(2026, 10, 30, 9, 0, tzinfo=UTC)),
        # es, a fraction of a second is rounded up, never down
        (
            "es",
            datetime(2026, 5, 4, 9, 0, 0, 250_000, tzinfo=UTC),
            datetime(2026, 5, 14, 9, 0, 1, tzinfo=UTC),
        ),
        # fr, spring: from 21 March 00:00 CET, closes 5 April 00:00 CEST
        ("fr", datetime(2026, 3, 20, 12, 0, tzinfo=UTC), datetime(2026, 4, 4, 22, 0, tzinfo=UTC)),
        # fr, autumn: from 21 October 00:00 CEST, closes 5 November 00:00 CET
        ("fr", datetime(2026, 10, 20, 12, 0, tzinfo=UTC), datetime(2026, 11, 4, 23, 0, tzinfo=UTC)),
        # fr: 23:30 in Paris on 31 October is still 31 October (22:30 UTC, CET)
        (
            "fr",
            datetime(2026, 10, 31, 22, 30, tzinfo=UTC),
            datetime(2026, 11, 15, 23, 0, tzinfo=UTC),
        ),
        # default: 24-hour days in UTC, the DST change does not matter
        (
            "default",
            datetime(2026, 3, 25, 9, 0, tzinfo=UTC),
            datetime(2026, 4, 9, 9, 0, tzinfo=UTC),
        ),
    ],
)
def test_windows_count_days_on_the_legal_clock_across_dst(
    name: str, notice: datetime, closes: datetime
) -> None:
    assert policy(name).expires_at(notice, 15) == closes


def test_the_closing_instant_is_stated_exactly_in_utc_and_on_the_legal_clock() -> None:
    closes = datetime(2026, 4, 4, 8, 0, 1, tzinfo=UTC)
    assert policy("es").until_text(closes) == (
        "2026-04-04 08:00:01 UTC (2026-04-04 10:00:01 CEST Europe/Madrid)"
    )
    assert policy("default").until_text(closes) == "2026-04-04 08:00:01 UTC"


@pytest.fixture
def clock(mail_env: MailEnv) -> Iterator[list[datetime]]:
    """The pickup's clock (page and worker), moved by the test."""
    # 24 March of next year: after this machine's now (notices are due from their
    # submission), before the last Sunday of March (the DST change is inside the window)
    moment = [datetime(datetime.now(UTC).year + 1, 3, 24, 9, 0, 0, 400_000, tzinfo=UTC)]
    service = mail_env.sp.pickup
    before = service.clock
    service.clock = lambda: moment[0]
    yield moment
    service.clock = before


@pytest.mark.parametrize("policy_name", ["es", "fr"])
def test_accept_one_second_before_the_close_works_and_at_the_close_is_refused(
    mail_env: MailEnv,
    client: TestClient,
    key: dict[str, str],
    clock: list[datetime],
    policy_name: str,
) -> None:
    on_time = send_pickup(client, key, f"on-{policy_name}", policy=policy_name)
    late = send_pickup(client, key, f"late-{policy_name}", policy=policy_name)
    notify(mail_env, clock[0])
    expected = policy(policy_name).expires_at(clock[0], 15)
    stored = mail_env.sp.pickup.repo.get(on_time)
    assert stored is not None and stored.expires_at == expected  # through the database
    assert stored.notified_at is not None
    assert expected - stored.notified_at not in (timedelta(days=10), timedelta(days=15))  # DST
    notice = wait_mail(mail_env, f"on-{policy_name}", NOTICE)
    assert policy(policy_name).until_text(expected) in notice
    recipients = {}
    clock[0] = expected - timedelta(minutes=5)
    for cid, local in ((on_time, f"on-{policy_name}"), (late, f"late-{policy_name}")):
        recipient = Recipient(client)
        recipient.open(token_of(link_in(wait_mail(mail_env, local, NOTICE))))
        assert recipient.call("POST", "/code").status_code == 200
        code = code_in(wait_mail(mail_env, local, "Su código"))
        assert recipient.call("POST", "/identify", {"answer": code}).status_code == 200
        recipients[cid] = recipient

    clock[0] = expected - timedelta(seconds=1)
    assert recipients[on_time].call("POST", "/accept").status_code == 200
    clock[0] = expected
    refused = recipients[late].call("POST", "/accept")
    assert refused.status_code == 409 and "expired" in refused.json()["detail"]
    assert recipients[late].call("POST", "/accept").status_code == 409
    notify(mail_env, expected + timedelta(seconds=1))  # the worker comes by too
    expiry = records_of(mail_env, late, "AcceptanceRejectionExpiry")
    assert len(expiry) == 1
    assert policy(policy_name).until_text(expected) in expiry[0]["reasons"][0]["text"]
    assert "ConsignmentAcceptance" not in events_of(mail_env, late)
    assert client.get(f"/v1/communications/{late}", headers=key).json()["status"] == "unclaimed"
    assert "AcceptanceRejectionExpiry" not in events_of(mail_env, on_time)
    assert client.get(f"/v1/communications/{on_time}", headers=key).json()["status"] == ("accepted")


def test_two_workers_send_a_reminder_once(
    mail_env: MailEnv, client: TestClient, key: dict[str, str]
) -> None:
    cid = send_pickup(client, key, "rex")
    notify(mail_env)
    pickup = mail_env.sp.pickup.repo.get(cid)
    assert pickup is not None and pickup.next_reminder_at is not None
    due = pickup.next_reminder_at + timedelta(seconds=1)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            for n in range(5):
                mail_env.sp.pickup.run_due(due + timedelta(milliseconds=n))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    sent = records_of(mail_env, cid, "ConsignmentNotification")
    assert [r["details"]["reminder"] for r in sent] == [False, True]
    wait_mail(mail_env, "rex", "Reminder: a certified message")
    reminders = [m for m in mails_to(mail_env, "rex") if "Reminder: a certified message" in m]
    assert len(reminders) == 1
