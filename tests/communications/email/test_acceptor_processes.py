"""`serve` with several SMTP acceptor processes on one port (SO_REUSEPORT)."""

from __future__ import annotations

import os
import smtplib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import create_engine, func, select

from sealpost.communications.tables import communications
from tests.support.mail import RECIPIENT_DOMAIN
from tests.support.serve import SealpostProcess, serve_env
from tests.support.smtp_peer import free_port


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def _listeners(port: int) -> str:
    import subprocess

    return subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.split(")")[1].split()[0] != "Z"


def test_two_acceptor_processes_share_the_port_and_stop_with_their_parent(
    tmp_path: Path, keys_dir: Path
) -> None:
    port = free_port()
    env = serve_env(tmp_path / "data", keys_dir, port, SEALPOST_SMTP_PROCESSES="2")
    sealpost = SealpostProcess(tmp_path, env, port)
    sealpost.run("tenant", "create", "Relay")
    sealpost.run("tenant", "smtp-network", "Relay", "127.0.0.1/32")
    try:
        pid = sealpost.start(role="smtp")  # no API port needed
        deadline = time.monotonic() + 20
        while len(_children(pid)) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        (child,) = _children(pid)

        def send(n: int) -> int:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.ehlo("mta.acme.test")
                client.mail("service@acme.test")
                client.rcpt(f"p{n}@{RECIPIENT_DOMAIN}")
                code, _ = client.data(f"From: service@acme.test\r\nSubject: {n}\r\n\r\nhi\r\n")
                return code

        deadline = time.monotonic() + 20
        while f"pid={child}," not in _listeners(port) and time.monotonic() < deadline:
            time.sleep(0.1)  # the child binds its listener after its own start-up
        assert f"pid={pid}," in _listeners(port) and f"pid={child}," in _listeners(port)
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(send, range(60)))
        assert codes == [250] * 60
        engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'sealpost.db'}")
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(communications)).scalar_one()
        engine.dispose()
        assert stored == 60

        sealpost.stop()  # SIGTERM to the parent: the acceptor goes too
        deadline = time.monotonic() + 15
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child)
    finally:
        sealpost.stop()
