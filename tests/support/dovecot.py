"""A Dovecot IMAP server of the tests' own: 127.0.0.1, a free port, one temporary directory.

Never the system's Dovecot, never ports 143/993: the package's own service is not started
(``scripts/system-deps`` installs ``dovecot-imapd``; its postinst cannot start a service where
there is no init system, and a running one would not matter: this server has its own port,
``base_dir``, state and logs).  It runs unprivileged: as the current user, or, when the tests
run as root, as ``nobody`` (Dovecot refuses mail access as UID 0, and a login process chrooted
by root is what the defaults expect; an unprivileged master has no chroot at all).  Users
come from a passwd-file with plain passwords (``{PLAIN}``); mail is in Maildir under the
directory, so :meth:`DovecotServer.restart` is a real restart that keeps every message and
UIDVALIDITY.  Plain-text login without TLS over loopback only (``ssl = no``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from imapclient import IMAPClient

from tests.conftest import require_service

BINARY = Path("/usr/sbin/dovecot")
BOOT_TIMEOUT_SECONDS = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
instance_name = sealpost-test-{port}
listen = 127.0.0.1
protocols = imap
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain xoauth2
auth_failure_delay = 0
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
mail_plugins =
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
  default_fields = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{  # no growing delay after a failed login: the
    mode = 0                           # fault tests log in wrongly on purpose
  }}
}}
service stats {{
  chroot =
}}
protocol imap {{
  imap_idle_notify_interval = 1 secs
}}
"""


class DovecotServer:
    """``start()``, ``stop()``, ``restart()``; ``port``; ``add_user()``; ``client()``."""

    def __init__(self, *, tls: bool = False) -> None:
        if not BINARY.exists():
            raise FileNotFoundError(f"{BINARY} (Debian package dovecot-imapd) is not installed")
        self.root = Path(tempfile.mkdtemp(prefix="sealpost-dovecot-"))
        self.port = free_port()
        self.tls_port = free_port() if tls else 0
        """Implicit TLS (``imaps``); STARTTLS is offered on ``port`` too."""
        self.users: dict[str, str] = {}
        self._process: subprocess.Popen[bytes] | None = None
        root = os.geteuid() == 0
        account = pwd.getpwnam("nobody") if root else pwd.getpwuid(os.geteuid())
        self.account = account
        os.chmod(self.root, 0o755)  # noqa: S103  (nobody must reach its own files)
        for sub in ("run", "state", "mail", "home"):
            (self.root / sub).mkdir()
        (self.root / "users").write_text("")
        ssl = "ssl = no"
        if tls:
            self._self_signed()
            ssl = f"ssl = yes\nssl_cert = <{self.certificate}\nssl_key = <{self.root / 'key.pem'}"
        (self.root / "dovecot.conf").write_text(
            _CONFIG.format(
                root=self.root,
                port=self.port,
                tls_port=self.tls_port,
                ssl=ssl,
                user=account.pw_name,
                group=_group_name(account.pw_gid),
                uid=account.pw_uid,
                gid=account.pw_gid,
            )
        )
        self._own_tree()

    @property
    def certificate(self) -> Path:
        """The server's self-signed certificate (for 127.0.0.1): a test's trust anchor."""
        return self.root / "cert.pem"

    def _self_signed(self) -> None:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1",
                "-keyout", str(self.root / "key.pem"), "-out", str(self.certificate),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip

    def _own_tree(self) -> None:
        if os.geteuid() != 0:
            return
        for path in [self.root, *self.root.rglob("*")]:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    @property
    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def add_user(self, name: str, password: str) -> None:
        """A user (or a new password for one); Dovecot rereads the passwd-file on change."""
        self.users[name] = password
        lines = [f"{u}:{{PLAIN}}{p}::::::" for u, p in self.users.items()]
        (self.root / "users").write_text("\n".join(lines) + "\n")
        self._own_tree()

    def start(self) -> None:
        if self._process is not None:
            return
        kwargs: dict[str, object] = {}
        if os.geteuid() == 0:  # drop to the unprivileged account before exec
            kwargs = {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}
        with open(self.root / "stderr.log", "ab") as stderr:
            self._process = subprocess.Popen(
                [str(BINARY), "-F", "-c", str(self.root / "dovecot.conf")],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=self.root,
                **kwargs,  # type: ignore[call-overload]
            )
        deadline = time.monotonic() + BOOT_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = (self.root / "stderr.log").read_text(errors="replace")
                self._process = None
                raise RuntimeError(f"dovecot exited at start: {err}\n{self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(64).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not listen on 127.0.0.1:{self.port}\n{self.log}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        # its children (login, imap) end with the master; wait for the port to be free
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return
            time.sleep(0.05)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def client(self, user: str) -> IMAPClient:
        """A logged-in client, to set up cases (APPEND, EXPUNGE, folders)."""
        c = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        c.login(user, self.users[user])
        return c

    def append(self, user: str, messages: list[bytes], folder: str = "INBOX") -> None:
        with self.client(user) as c:
            if folder != "INBOX" and not c.folder_exists(folder):
                c.create_folder(folder)
            for raw in messages:
                c.append(folder, raw)


def _group_name(gid: int) -> str:
    import grp

    return grp.getgrgid(gid).gr_name


def message(
    subject: str, *, body: str = "Hola.\n", msg_id: str | None = None, sender: str = ""
) -> bytes:
    m = EmailMessage()
    m["From"] = sender or "cliente@gmail.com"
    m["To"] = "soporte@acme.es"
    m["Subject"] = subject
    m["Date"] = "Mon, 07 Dec 2026 09:00:00 +0100"
    if msg_id:
        m["Message-ID"] = msg_id
    m.set_content(body)
    return m.as_bytes(policy=SMTP)  # CRLF: what IMAP gives back byte for byte


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    """A running Dovecot with the user ``agent`` (password ``secret-1``)."""
    yield from _running(tls=False)


@pytest.fixture
def dovecot_tls() -> Iterator[DovecotServer]:
    """The same, with TLS: implicit on ``tls_port``, STARTTLS on ``port``."""
    yield from _running(tls=True)


def _running(*, tls: bool) -> Iterator[DovecotServer]:
    try:
        server = DovecotServer(tls=tls)
    except FileNotFoundError as exc:
        require_service("Dovecot", str(exc))
        raise
    try:
        server.add_user("agent", "secret-1")
        server.start()
        yield server
    finally:
        server.close()
