"""Sessions that stop half-way or send absurd lines (docs/security.md, resource exhaustion):
nothing half-stored, no evidence of a message that was never accepted, and the next client is
served as usual."""

from __future__ import annotations

import smtplib
import time
import tracemalloc

from tests.support.mail import RECIPIENT_DOMAIN, MailEnv, _client_tls, make_message, submit


def _open_data(env: MailEnv) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", env.submission_port, timeout=20)
    client.ehlo("crm.acme.test")
    client.starttls(context=_client_tls())
    client.ehlo("crm.acme.test")
    client.login(env.credential.username, env.credential.password)
    client.mail("service@acme.test")
    client.rcpt(f"bob@{RECIPIENT_DOMAIN}")
    assert client.docmd("DATA")[0] == 354
    return client


def _nothing_stored(env: MailEnv, *, rejection_allowed: bool = False) -> None:
    assert env.sp.communications.search(env.tenant_id) == []
    if not rejection_allowed:  # no evidence of a message nobody finished sending
        assert env.sp.log_storage.pending_count() == 0 and env.sp.log_storage.head() is None


def test_a_client_gone_in_the_middle_of_data_leaves_nothing(mail_env: MailEnv) -> None:
    client = _open_data(mail_env)
    client.send(make_message()[:200])  # half a message, then the connection drops
    client.sock.close()  # type: ignore[union-attr]
    time.sleep(0.5)  # the server notices the closed socket
    _nothing_stored(mail_env)
    code, _ = submit(mail_env, make_message("After the drop"), [f"bob@{RECIPIENT_DOMAIN}"])
    assert code == 250


def test_a_ten_megabyte_line_is_refused_and_nothing_is_stored(mail_env: MailEnv) -> None:
    client = _open_data(mail_env)
    try:
        client.send(b"Subject: long\r\n\r\n" + b"A" * (10 * 1024 * 1024) + b"\r\n.\r\n")
        code, reply = client.getreply()
    except (smtplib.SMTPServerDisconnected, ConnectionError):
        code, reply = 0, b"disconnected"  # closing on an abusive line is a refusal too
    finally:
        client.close()
    assert code == 0 or 500 <= code < 600, (code, reply)
    _nothing_stored(mail_env, rejection_allowed=True)
    code, _ = submit(mail_env, make_message("After the long line"), [f"bob@{RECIPIENT_DOMAIN}"])
    assert code == 250


def test_a_refused_line_is_not_kept_while_it_goes_on(mail_env: MailEnv) -> None:
    """Once a line is over the limit, the rest of it is read and dropped: a client sending one
    endless line cannot make the server hold it (the listener runs in this process here, so
    its allocations are traced)."""
    endless = b"B" * (48 * 1024 * 1024)
    client = _open_data(mail_env)
    tracemalloc.start()
    try:
        client.send(b"Subject: endless\r\n\r\n" + endless[:1024])
        client.send(endless)
        client.send(b"\r\n.\r\n")
        code, _reply = client.getreply()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        client.close()
    assert 500 <= code < 600
    assert peak < 16 * 1024 * 1024, f"{peak / 2**20:.0f} MiB held for a refused line"
    _nothing_stored(mail_env, rejection_allowed=True)
