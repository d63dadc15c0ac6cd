"""A RabbitMQ node of the tests' own, on free loopback ports, that a test may restart.

The shared broker at 127.0.0.1:5672 serves every other test (and other sessions on the
machine): a fault test must not stop it.  This node has its own name, AMQP and distribution
ports, database (``RABBITMQ_MNESIA_BASE``), logs, configuration and Erlang cookie (``HOME``),
all in one temporary directory; it registers with the machine's epmd like any node.  Its
first boot takes 15-25 s on a busy machine (one per test session); a restart, with its
database in place, about 5 s.  A restart is a real one: the server process stops (SIGTERM,
RabbitMQ's clean shutdown), every connection drops, and a new process recovers the durable
queues from disk.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from tests.conftest import require_service

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
"""The server script itself: ``/usr/sbin/rabbitmq-server`` is a wrapper that, run as root,
switches to the ``rabbitmq`` user and that user's home (cookie, paths)."""
BOOT_TIMEOUT_SECONDS = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_script() -> Path | None:
    if SERVER.exists():
        return SERVER
    found = shutil.which("rabbitmq-server")
    return Path(found) if found and os.geteuid() != 0 else None


class PrivateRabbitMQ:
    """``start()``, ``restart()``, ``stop()``; ``url`` is its AMQP URL (guest over loopback)."""

    def __init__(self, root: Path) -> None:
        script = _server_script()
        if script is None:
            raise FileNotFoundError("the RabbitMQ server (rabbitmq-server) is not installed")
        self.script = script
        self.root = root
        self.node = f"sealpost-test-{uuid.uuid4().hex[:8]}@localhost"
        self.port = _free_port()
        self.dist_port = _free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[bytes] | None = None
        self.boot_seconds: list[float] = []
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\nlog.console = false\n"
        )
        (root / "rabbitmq-env.conf").write_text("")
        (root / "enabled_plugins").write_text("[].\n")

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.root),  # its own Erlang cookie
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONFIG_FILE=str(self.root / "rabbitmq.conf"),
            RABBITMQ_CONF_ENV_FILE=str(self.root / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.root / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(self.root / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.root / "log"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def _answers(self) -> bool:
        async def probe() -> None:
            connection = await aio_pika.connect(self.url, timeout=2)
            await connection.close()

        try:
            asyncio.run(probe())
        except Exception:
            return False
        return True

    def start(self) -> float:
        """Start the node and wait until it accepts AMQP connections; returns the seconds."""
        started = time.monotonic()
        log = (self.root / "server.out").open("ab")
        self.process = subprocess.Popen(
            [str(self.script)],
            cwd=self.root,
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one
        )
        log.close()
        while not self._answers():
            if self.process.poll() is not None:
                output = self.root / "server.out"
                raise OSError(f"the node exited ({self.process.returncode}); see {output}")
            if time.monotonic() - started > BOOT_TIMEOUT_SECONDS:
                self.stop()
                raise OSError(f"the RabbitMQ node did not start in {BOOT_TIMEOUT_SECONDS} s")
            time.sleep(0.2)
        took = time.monotonic() - started
        self.boot_seconds.append(took)
        return took

    def stop(self) -> None:
        """Stop the node (SIGTERM to its process group: a clean shutdown) and wait."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        deadline = time.monotonic() + 10  # the node's helpers leave with it
        while self._answers() and time.monotonic() < deadline:
            time.sleep(0.1)

    def restart(self) -> float:
        self.stop()
        return self.start()


@pytest.fixture(scope="session")
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    """One private node for the session (its first boot is the slow part)."""
    root = Path(tempfile.mkdtemp(prefix="sealpost-rabbitmq-"))
    try:
        try:
            node = PrivateRabbitMQ(root)
            node.start()
        except OSError as exc:  # FileNotFoundError included
            require_service("a private RabbitMQ node (rabbitmq-server)", str(exc))
            pytest.skip("unreachable")  # require_service has failed or skipped already
        try:
            yield node
        finally:
            node.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
