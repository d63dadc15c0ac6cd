"""SIGTERM to each role under load loses nothing and leaves no lease behind.

The production shape (tests/support/production_shape.py) takes certified mail by SMTP and by
the API while the ``smtp``, ``worker``, ``dispatcher`` and one ``api`` process are SIGTERMed
in turn and started again, as a rolling restart does.  Each must exit 0 within its bound, and
right after it exits no lease may still name it: the sequencer's, the events dispatcher's,
claimed deliveries and webhook deliveries are released, not left to expire.  Nothing is lost
and nothing happens twice: every accepted message delivered once, sealed once, certified
once, every event published once.
"""

from __future__ import annotations

import os
import signal
import smtplib
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.support import production_shape
from tests.support.amqp import Topology, amqp, rabbitmq_available
from tests.support.production_shape import Stop
from tests.support.serve import SealpostProcess, children_of, serve_env
from tests.support.silent_peer import SilentServer
from tests.support.smtp_peer import free_port

__all__ = ["amqp", "rabbitmq_available"]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.postgres
def test_sigterm_to_each_role_under_load_loses_nothing_and_releases_its_leases(
    postgres_schema_url: str,
    amqp: Topology,
    tmp_path: Path,
    keys_dir: Path,
    root: x509.Certificate,
) -> None:
    stops = [
        Stop(0.15, "smtp"),
        Stop(0.35, "worker"),
        Stop(0.55, "dispatcher"),
        Stop(0.75, "api-a"),
    ]
    outcome = production_shape.run(
        tmp_path,
        keys_dir,
        postgres_schema_url,
        amqp,
        [root],
        smtp_messages=80,
        api_messages=80,
        stops=stops,
        senders=2,
    )
    print("\n" + outcome.report())
    outcome.check()
    assert all(stop.held_before or stop.process != "dispatcher" for stop in outcome.stops), (
        "the dispatcher held nothing when stopped: the lease check proved nothing"
    )


@pytest.mark.slow
def test_a_client_silent_mid_auth_does_not_hold_up_the_stop(tmp_path: Path, keys_dir: Path) -> None:
    """Only a mail transaction is waited for: a client that started ``AUTH LOGIN`` and went
    quiet (aiosmtpd waits 300 s for its reply) gets its 421 at once, and the process exits 0
    well within the bound instead of being forced at it."""
    port = free_port()
    env = serve_env(tmp_path / "data", keys_dir, port, SEALPOST_SHUTDOWN_TIMEOUT_SECONDS="6")
    process = SealpostProcess(tmp_path, env, port)
    try:
        pid = process.start("smtp")
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        client = smtplib.SMTP("127.0.0.1", port, timeout=30)
        client.ehlo()
        client.starttls(context=tls)
        client.ehlo()
        client.putcmd("AUTH", "LOGIN")
        assert client.getreply()[0] == 334  # the server now waits for the user name
        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        assert client.getreply()[0] == 421
        client.close()
        assert process.process is not None
        assert process.process.wait(20) == 0, process.log_tail()
        assert time.monotonic() - started < 4.5, "the stop waited for the silent client"
        assert "serve.forced_exit" not in process.log_tail()
    finally:
        process.stop()


def _handles_sigterm(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


@pytest.mark.slow
def test_a_signal_to_the_process_group_stops_every_acceptor_gracefully(
    tmp_path: Path, keys_dir: Path
) -> None:
    """Ctrl-C, ``kill -INT -<pgid>`` or systemd's KillMode=control-group signal the whole
    group: the acceptor processes must not take the parent's forwarded SIGTERM for a second
    signal (a forced exit, transactions cut).  Every process exits, none forced."""
    port = free_port()
    env = serve_env(
        tmp_path / "data",
        keys_dir,
        port,
        SEALPOST_SMTP_PROCESSES="2",
        SEALPOST_SHUTDOWN_TIMEOUT_SECONDS="10",
    )
    process = SealpostProcess(tmp_path, env, port, new_session=True)
    try:
        pid = process.start("smtp")
        deadline = time.monotonic() + 60
        while not ((children := children_of(pid)) and all(map(_handles_sigterm, children))):
            assert time.monotonic() < deadline, "the acceptor did not start"
            time.sleep(0.1)
        time.sleep(1.0)  # past the handlers: the acceptor builds and listens
        os.killpg(pid, signal.SIGINT)
        assert process.process is not None
        assert process.process.wait(30) == 0, process.log_tail()
        deadline = time.monotonic() + 15
        while any(Path(f"/proc/{child}").exists() for child in children):
            assert time.monotonic() < deadline, "an acceptor outlived its parent"
            time.sleep(0.1)
        assert "serve.forced_exit" not in process.log_tail()
    finally:
        process.stop()


@pytest.mark.slow
def test_a_delivery_stuck_on_a_silent_smarthost_ends_by_the_bound_with_one_exit(
    tmp_path: Path, keys_dir: Path
) -> None:
    """``serve --role all`` whose smarthost accepts and never greets: SIGTERM with a 6 s bound.
    The delivery is given up by the one deadline, so the process exits on its own, once:
    ``serve.stopped`` and 0, or past the bound ``serve.forced_exit`` and 1, never both; a
    claim released means its attempt had stopped."""
    from sealpost.app import build
    from sealpost.communications.email.submission import SubmissionRequest
    from sealpost.config import Settings
    from tests.support.delivery_load import numbered_message

    silent = SilentServer()
    port = free_port()
    data_dir = tmp_path / "data"
    env = serve_env(
        data_dir,
        keys_dir,
        port,
        SEALPOST_SHUTDOWN_TIMEOUT_SECONDS="6",
        SEALPOST_DELIVERY_SMARTHOST=f"127.0.0.1:{silent.port}",
        SEALPOST_API_PORT=str(free_port()),
        SEALPOST_LOG_LEVEL="INFO",
    )
    process = SealpostProcess(tmp_path, env, port)
    try:
        process.run("db", "upgrade")
        sp = build(Settings(_env_file=None, data_dir=data_dir, keys_dir=keys_dir))  # type: ignore[call-arg]
        tenant = sp.tenants.create("acme")
        _, raw = numbered_message(0, to="bob@recipient.test")
        request = SubmissionRequest(
            tenant_id=tenant.id,
            via="api",
            mail_from="service@acme.test",
            recipients=("bob@recipient.test",),
            raw=raw,
            identification={"method": "api-key"},
        )
        sp.submissions.submit(request).result(60)
        sp.stop_background(5.0)
        sp.engine.dispose()
        pid = process.start("all")
        deadline = time.monotonic() + 60
        while not silent.accepted:
            assert time.monotonic() < deadline, "the delivery never connected"
            time.sleep(0.1)
        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        assert process.process is not None
        code = process.process.wait(30)
        log = process.log_tail()
        assert time.monotonic() - started < 6 + 5 + 2
        assert not ("serve.forced_exit" in log and "serve.stopped" in log), log
        assert code == (1 if "serve.forced_exit" in log else 0), log
        assert code == 0, log  # the loops end by the deadline: no need to force
    finally:
        process.stop()
        silent.close()
