"""Per-address limits of the SMTP listeners: too many open connections, new connections or
commands before AUTH from one address get ``421`` and the connection is closed (RFC 5321
§3.8); another address goes on, an authenticated session's commands are not counted, a
tenant's trusted relay network is exempt, and the limits recover once the wait is over (the
limiters' clock is moved, nothing sleeps).  AUTH brute force keeps its own lockout
(``test_submission_server.py``)."""

from __future__ import annotations

import smtplib
import ssl
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from sealpost.communications.email.client_limits import SmtpClientLimits
from sealpost.ratelimit import Rate
from tests.support.mail import RECIPIENT_DOMAIN, MailEnv, make_message

ELSEWHERE = ("127.0.0.2", 0)
"""Another client address (all of 127/8 is loopback on Linux)."""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite"])  # the limits live in memory, not in the database
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sealpost.db'}"


@pytest.fixture
def mail_overrides() -> dict[str, object]:
    return {
        "smtp_max_connections_per_ip": 2,
        "rate_limit_smtp_connections_per_ip": Rate(4, 60.0),  # one more every 15 s
        "rate_limit_smtp_commands_per_ip": Rate(6, 60.0),  # one more every 10 s
    }


@pytest.fixture
def limits(mail_env: MailEnv) -> tuple[SmtpClientLimits, Clock]:
    found = mail_env.sp.smtp_client_limits
    assert found is not None and found.connections and found.commands
    clock = Clock()
    found.connections.clock = found.commands.clock = clock
    return found, clock


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _connect(env: MailEnv, source: tuple[str, int] | None = None) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", env.submission_port, timeout=10, source_address=source)


def _refused(env: MailEnv, source: tuple[str, int] | None = None) -> str:
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        _connect(env, source)
    assert refused.value.smtp_code == 421
    return bytes(refused.value.smtp_error).decode()


def _wait_open(limits: SmtpClientLimits, ip: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while limits.open_connections(ip) != count:
        assert time.monotonic() < deadline, limits.open_connections(ip)
        time.sleep(0.02)


def test_a_third_open_connection_from_one_address_is_refused_with_421(
    mail_env: MailEnv, limits: tuple[SmtpClientLimits, Clock]
) -> None:
    found, _clock = limits
    with ExitStack() as stack:
        first = stack.enter_context(_connect(mail_env))
        stack.enter_context(_connect(mail_env))
        assert "Too many connections" in _refused(mail_env)
        with _connect(mail_env, ELSEWHERE) as other:  # another address is not held up
            assert other.noop()[0] == 250
        assert first.noop()[0] == 250  # the admitted ones go on
        first.quit()
        _wait_open(found, "127.0.0.1", 1)
        with _connect(mail_env) as again:  # a slot freed is a slot again
            assert again.noop()[0] == 250


def test_connections_over_the_rate_are_refused_until_the_wait_is_over(
    mail_env: MailEnv, limits: tuple[SmtpClientLimits, Clock]
) -> None:
    _found, clock = limits
    for _ in range(4):
        with _connect(mail_env) as client:
            client.noop()
    assert "try again in 15 s" in _refused(mail_env)
    with _connect(mail_env, ELSEWHERE) as other:
        assert other.noop()[0] == 250
    clock.now += 15
    with _connect(mail_env) as client:
        assert client.noop()[0] == 250


def test_commands_before_auth_over_the_rate_get_421_and_the_connection_closes(
    mail_env: MailEnv, limits: tuple[SmtpClientLimits, Clock]
) -> None:
    _found, clock = limits
    with _connect(mail_env) as client:
        assert [client.noop()[0] for _ in range(6)] == [250] * 6
        code, text = client.noop()
        assert code == 421 and b"Too many commands" in text and b"10 s" in text
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()

    clock.now += 60  # refilled: 6 commands to authenticate with, then none are counted
    with _connect(mail_env) as client:
        client.starttls(context=_tls())  # EHLO, STARTTLS
        client.login(mail_env.credential.username, mail_env.credential.password)  # EHLO, AUTH
        assert [client.noop()[0] for _ in range(20)] == [250] * 20
        refused = client.sendmail(
            "service@acme.test", [f"limits@{RECIPIENT_DOMAIN}"], make_message("after NOOPs")
        )
        assert refused == {}


def test_a_tenants_trusted_relay_network_is_exempt(
    mail_env: MailEnv, limits: tuple[SmtpClientLimits, Clock]
) -> None:
    found, _clock = limits
    mail_env.sp.senders.add_network(mail_env.tenant_id, "127.0.0.1/32")
    with ExitStack() as stack:
        clients = [stack.enter_context(_connect(mail_env)) for _ in range(6)]
        assert [c.noop()[0] for c in clients for _ in range(3)] == [250] * 18
        assert found.open_connections("127.0.0.1") == 0
    assert "Too many" in _refused_after_four(mail_env)


def _refused_after_four(env: MailEnv) -> str:
    """127.0.0.2 is not in the network: still limited."""
    for _ in range(4):
        with _connect(env, ELSEWHERE) as client:
            client.noop()
    return _refused(env, ELSEWHERE)


def test_a_client_is_greeted_while_the_exemption_cannot_be_read(
    mail_env: MailEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trusted networks live in the database: while it is away, a new client is counted
    like any other and greeted (its MAIL then gets a 4xx), never left in silence."""

    def database_away(client_ip: str) -> None:
        raise OperationalError("SELECT network", {}, ConnectionRefusedError("database away"))

    monkeypatch.setattr(mail_env.sp.senders, "tenant_for_client", database_away)
    client = _connect(mail_env)
    try:
        assert client.ehlo("crm.acme.test")[0] == 250
    finally:
        client.close()
