"""The access kit on its own, on SQLite and PostgreSQL: links, sessions, codes, lockouts, keyed
by (tenant, subject type, subject id, party id) and knowing no domain."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from sealpost.access import codes
from sealpost.access.model import EMAIL, MAX_ATTEMPTS, MAX_SENDS, Holder, mask
from sealpost.access.repository import AccessRepository
from sealpost.access.service import AccessService, NewerCode
from sealpost.db import migrate
from sealpost.db.engine import make_engine
from sealpost.errors import InvalidInput, Locked, TooManyRequests
from sealpost.tenants.repository import TenantRepository

NOW = datetime.now(UTC).replace(microsecond=0)
PAGE = "session-of-the-page-that-asked"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def access(engine: Engine) -> AccessService:
    return AccessService(AccessRepository(engine), code_key=codes.derive_key(b"test seal key"))


@pytest.fixture
def holder(engine: Engine) -> Holder:
    tenant = TenantRepository(engine).create(f"tenant-{uuid.uuid4().hex[:8]}")
    return Holder(tenant.id, "pickup", str(uuid.uuid4()), str(uuid.uuid4()))


def _link(access: AccessService, holder: Holder) -> str:
    with access.transaction() as conn:
        return access.issue_link_in(conn, holder, now=NOW, expires_at=NOW + timedelta(hours=1))


def _open(access: AccessService, link: str, subject_type: str = "pickup") -> str | None:
    grant = access.link(link, subject_type)
    assert grant is not None
    with access.transaction() as conn:
        return access.open_session_in(
            conn,
            link,
            grant,
            now=NOW,
            expires_at=NOW + timedelta(minutes=30),
            ip="192.0.2.1",
            user_agent="pytest",
        )


def test_checking_a_link_spends_nothing_opening_it_spends_it_once(
    access: AccessService, holder: Holder
) -> None:
    link = _link(access, holder)
    for _ in range(3):  # a mail scanner fetching the page
        grant = access.link(link, "pickup")
        assert grant is not None and grant.holder == holder and grant.used_at is None
    assert access.link(link, "signature_process") is None  # a pickup link opens pickups only
    session = _open(access, link)
    assert session is not None
    assert _open(access, link) is None  # single use
    found = access.session(session, "pickup", NOW)
    assert found is not None and found.holder == holder
    assert access.session(session, "pickup", NOW + timedelta(minutes=31)) is None
    assert access.session(link, "pickup", NOW) is None  # a link is not a session
    assert access.links_since(holder, NOW - timedelta(minutes=1)) == 1


def test_ending_sessions_closes_the_holders_open_pages_only(
    access: AccessService, holder: Holder
) -> None:
    other = Holder(holder.tenant_id, holder.subject_type, holder.subject_id, str(uuid.uuid4()))
    mine, theirs = _open(access, _link(access, holder)), _open(access, _link(access, other))
    with access.transaction() as conn:
        access.end_sessions_in(conn, holder, NOW)
    assert access.session(mine, "pickup", NOW) is None
    assert access.session(theirs, "pickup", NOW) is not None


def test_codes_count_sends_and_attempts_and_lock_until_reset(
    access: AccessService, holder: Holder
) -> None:
    sent: list[str] = []

    def deliver(code: str) -> str:
        sent.append(code)
        return f"communication-{len(sent)}"

    with access.transaction() as conn, pytest.raises(InvalidInput, match="Ask for a code"):
        access.check_code_in(conn, holder, "123456", NOW, session=PAGE)
    challenge = access.send_code(
        holder, channel=EMAIL, to="jane@example.test", deliver=deliver, now=NOW, session=PAGE
    )
    assert (
        challenge.sent_to == "jane@example.test" and challenge.communication_id == "communication-1"
    )
    assert mask("jane@example.test", EMAIL) == "j***@example.test"
    wrong = "000000" if sent[-1] != "000000" else "111111"
    for left in range(MAX_ATTEMPTS - 1, 0, -1):
        with access.transaction() as conn:
            check = access.check_code_in(conn, holder, wrong, NOW, session=PAGE)
        assert not check.matched and not check.locked and check.attempts_left == left
    with access.transaction() as conn:
        check = access.check_code_in(conn, holder, wrong, NOW, session=PAGE)
    assert check.locked
    with access.transaction() as conn, pytest.raises(Locked):  # even the right code
        access.check_code_in(conn, holder, sent[-1], NOW, session=PAGE)

    with access.transaction() as conn:
        access.reset_codes_in(conn, holder)  # whoever issues links vouches
    for _ in range(MAX_SENDS):
        access.send_code(
            holder, channel=EMAIL, to="jane@example.test", deliver=deliver, now=NOW, session=PAGE
        )
    with pytest.raises(TooManyRequests):
        access.send_code(
            holder, channel=EMAIL, to="jane@example.test", deliver=deliver, now=NOW, session=PAGE
        )
    with access.transaction() as conn:
        assert access.check_code_in(conn, holder, sent[-1], NOW, session=PAGE).matched
    with access.transaction() as conn, pytest.raises(InvalidInput, match="Ask for a code"):
        access.check_code_in(conn, holder, sent[-1], NOW, session=PAGE)  # used up


def test_a_code_is_bound_to_its_holder_and_expires(access: AccessService, holder: Holder) -> None:
    other = Holder(holder.tenant_id, holder.subject_type, holder.subject_id, str(uuid.uuid4()))
    codes_sent: list[str] = []
    access.send_code(
        holder,
        channel=EMAIL,
        to="a@example.test",
        deliver=lambda c: codes_sent.append(c) or "m1",
        now=NOW,
        session=PAGE,
    )
    access.send_code(
        other,
        channel=EMAIL,
        to="b@example.test",
        deliver=lambda c: codes_sent.append(c) or "m2",
        now=NOW,
        session=PAGE,
    )
    if codes_sent[0] != codes_sent[1]:
        with access.transaction() as conn:
            assert not access.check_code_in(conn, other, codes_sent[0], NOW, session=PAGE).matched
    later = NOW + timedelta(minutes=11)
    with access.transaction() as conn, pytest.raises(InvalidInput, match="expired"):
        access.check_code_in(conn, holder, codes_sent[0], later, session=PAGE)


def test_a_new_link_brings_new_code_sends_but_not_new_checks(
    access: AccessService, holder: Holder
) -> None:
    """At most 5 codes per link (docs/signatures.md); a holder who used them all is not stuck
    once a new link comes, but a new link never undoes a lockout."""
    sent: list[str] = []

    def deliver(code: str) -> str:
        sent.append(code)
        return "m"

    def send() -> None:
        access.send_code(
            holder, channel=EMAIL, to="jane@example.test", deliver=deliver, now=NOW, session=PAGE
        )

    for _ in range(MAX_SENDS):
        send()
    with pytest.raises(TooManyRequests):
        send()
    wrong = "000000" if sent[-1] != "000000" else "111111"
    for _ in range(MAX_ATTEMPTS):
        with access.transaction() as conn:
            access.check_code_in(conn, holder, wrong, NOW, session=PAGE)
    _link(access, holder)
    send()  # the new link's budget
    with access.transaction() as conn, pytest.raises(Locked):
        access.check_code_in(conn, holder, sent[-1], NOW, session=PAGE)


def test_a_code_works_only_in_the_page_session_that_asked_for_it(
    access: AccessService, holder: Holder
) -> None:
    """The sender of record can read its own certified emails: the code it reads there is
    worth nothing in a page of its own.  Typed elsewhere, the right code is not even compared:
    the page is told a newer code was asked from another page, and the try is not counted
    (review 2 M2: two open pages of one recipient); in the page that asked for it, it works."""
    sent: list[str] = []
    access.send_code(
        holder,
        channel=EMAIL,
        to="jane@example.test",
        deliver=lambda c: sent.append(c) or "m1",
        now=NOW,
        session=PAGE,
    )
    with pytest.raises(NewerCode), access.transaction() as conn:
        access.check_code_in(conn, holder, sent[-1], NOW, session="another-page")
    found = access.challenge(holder)
    assert found is not None and found.attempts == 0
    with access.transaction() as conn:
        here = access.check_code_in(conn, holder, sent[-1], NOW, session=PAGE)
    assert here.matched and here.attempts_left == MAX_ATTEMPTS - 1
