"""The roles of ``sealpost serve``: what each runs, and a clean exit on SIGTERM.

The process tests run the real command on the embedded default (SQLite); the production shape
over PostgreSQL and RabbitMQ is tests/test_production_shape.py and
tests/test_graceful_shutdown.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from sealpost import roles
from sealpost.config import Settings
from sealpost.db.engine import make_test_engine
from sealpost.db.tables import ledger_leases
from sealpost.ledger.repository import as_utc
from tests.support.serve import SealpostProcess, children_of, serve_env
from tests.support.smtp_peer import free_port


def _settings(**extra: object) -> Settings:
    return Settings(_env_file=None, **extra)  # type: ignore[call-arg]


def _running(settings: Settings) -> set[str]:
    return {part for part in roles.PARTS if getattr(settings, part)}


def test_each_part_runs_in_exactly_one_role_besides_all() -> None:
    settings = _settings()
    by_role = {role: _running(roles.for_role(settings, role)) for role in roles.ROLES}
    assert by_role["all"] == set(roles.PARTS)
    assert by_role["api"] == set()
    assert by_role["smtp"] == {"smtp_enabled"}
    assert by_role["dispatcher"] == {"events_dispatcher_enabled", "webhooks_enabled"}
    assert "delivery_enabled" in by_role["worker"]
    assert by_role["worker"].isdisjoint(by_role["dispatcher"])
    union = set().union(*(by_role[r] for r in roles.ROLES if r != "all"))
    assert union == set(roles.PARTS)


def test_a_role_never_turns_on_a_part_switched_off() -> None:
    settings = _settings(webhooks_enabled=False, delivery_enabled=False)
    assert _running(roles.for_role(settings, "dispatcher")) == {"events_dispatcher_enabled"}
    assert "delivery_enabled" not in _running(roles.for_role(settings, "worker"))


def test_an_unknown_role_is_refused_with_the_list() -> None:
    with pytest.raises(ValueError, match="one of all, api, smtp, worker, dispatcher"):
        roles.for_role(_settings(), "workers")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "sealpost"), "serve", "--role", "workers"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--role is one of all, api, smtp, worker, dispatcher" in done.stderr


def test_the_help_describes_every_role() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "sealpost"), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for role in roles.ROLES:
        assert f"{role}:" in text
    assert "SIGTERM" in text


@pytest.mark.slow
def test_sigterm_releases_the_dispatcher_and_sequencer_leases_and_exits_0(
    tmp_path: Path, keys_dir: Path
) -> None:
    data_dir = tmp_path / "data"
    env = serve_env(data_dir, keys_dir, free_port(), SEALPOST_EVENTS_LEASE_SECONDS="60")
    process = SealpostProcess(tmp_path, env, int(env["SEALPOST_SMTP_SUBMISSION_PORT"]))
    process.run("db", "upgrade")
    pid = process.start("dispatcher")
    engine = make_test_engine(f"sqlite:///{data_dir / 'sealpost.db'}")

    def held() -> dict[str, bool]:
        with engine.connect() as conn:
            rows = conn.execute(select(ledger_leases)).all()
        now = datetime.now(UTC)
        return {
            r.name: as_utc(r.expires_at) > now for r in rows if r.holder.split(":")[1] == str(pid)
        }

    deadline = time.monotonic() + 30
    while held() != {"sequencer": True, "events-dispatcher": True}:
        assert time.monotonic() < deadline, held()
        time.sleep(0.1)
    assert process.process is not None
    os.kill(pid, signal.SIGTERM)
    assert process.process.wait(30) == 0, process.log_tail()
    assert held() == {"sequencer": False, "events-dispatcher": False}  # released, 60 s early
    engine.dispose()


def test_a_second_signal_forces_the_exit_after_releasing() -> None:
    """The bound or a second signal: ``on_force`` runs, then the process exits 1 at once."""
    script = (
        "import os, signal, time\n"
        "from sealpost.shutdown import Shutdown\n"
        "s = Shutdown(60, on_force=lambda: print('released', flush=True))\n"
        "s.install()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "print('stopping', s.requested.wait(5), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(30)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    # serve.stopping (logged by a thread, unconfigured: on stdout) may share a line with it
    assert "stopping True" in done.stdout and done.stdout.splitlines()[-1] == "released"
    assert "serve.forced_exit" in done.stderr and "a second SIGINT" in done.stderr
    assert time.monotonic() - started < 20


def test_the_bound_forces_the_exit() -> None:
    script = (
        "import os, signal, time\n"
        "from sealpost.shutdown import Shutdown\n"
        "s = Shutdown(0.5, on_force=lambda: print('released', flush=True))\n"
        "s.install()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(30)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "released"
    assert "the bound passed" in done.stderr


def test_the_forced_exit_does_not_hang_on_a_blocked_stderr() -> None:
    """A log line blocked on a full stderr holds the logger's lock: the bound still forces
    the exit (no log through that lock on the way out)."""
    script = (
        "import os, signal, threading, time\n"
        "from sealpost.logging import configure_logging, get_logger\n"
        "from sealpost.shutdown import Shutdown\n"
        "configure_logging('INFO', 'json')\n"  # on stderr, as serve logs
        "log = get_logger('flood')\n"
        "s = Shutdown(0.5, on_force=lambda: print('released', flush=True))\n"
        "s.install()\n"
        "def flood():\n"
        "    while True:\n"
        "        log.error('flood', padding='x' * 4096)\n"
        "threading.Thread(target=flood, daemon=True).start()\n"
        "time.sleep(1)\n"  # the pipe is full: the flooder blocks holding the lock
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        code = process.wait(30)  # stderr is never read while it runs
    finally:
        process.kill()
        process.wait(10)
    assert process.stdout is not None and process.stderr is not None
    output = process.stdout.read().decode()
    process.stdout.close()
    process.stderr.close()
    assert code == 1
    assert time.monotonic() - started < 20
    assert output.strip() == "released"


def test_an_exit_past_the_bound_is_a_forced_one_and_the_only_one() -> None:
    """serve's own exit after the bound passed: code 1 and ``serve.forced_exit``, never
    also ``serve.stopped`` (the last words are not said)."""
    script = (
        "import os, signal, time\n"
        "from sealpost.shutdown import Shutdown\n"
        "s = Shutdown(600, on_force=lambda: print('released', flush=True))\n"
        "s.install()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "s.requested.wait(5)\n"
        "s.deadline = time.monotonic() - 1\n"  # as if stopping took longer than the bound
        "s.exit(0, last_words=lambda: print('serve.stopped', flush=True))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "serve.stopped" not in done.stdout and "released" not in done.stdout
    assert done.stderr.count("serve.forced_exit") == 1 and "the bound passed" in done.stderr


def test_an_exit_within_the_bound_says_its_last_words_and_exits_with_its_code() -> None:
    script = (
        "import os, signal\n"
        "from sealpost.shutdown import Shutdown\n"
        "s = Shutdown(600, on_force=lambda: print('released', flush=True))\n"
        "s.install()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "s.requested.wait(5)\n"
        "s.exit(0, last_words=lambda: print('serve.stopped', flush=True))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("serve.stopped") == 1 and "released" not in done.stdout
    assert "serve.forced_exit" not in done.stderr


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:  # the process is gone
        return b""


@pytest.mark.slow
def test_api_workers_share_the_port_and_stop_with_the_first(tmp_path: Path, keys_dir: Path) -> None:
    """``SEALPOST_API_WORKERS=2`` (``serve --workers 2``): a second API process listens on the
    same port and exits when the first is stopped."""
    port = free_port()
    env = serve_env(tmp_path / "data", keys_dir, free_port())
    env |= {"SEALPOST_API_PORT": str(port), "SEALPOST_API_WORKERS": "2"}
    process = SealpostProcess(tmp_path, env, int(env["SEALPOST_SMTP_SUBMISSION_PORT"]))
    process.run("db", "upgrade")
    pid = process.start("api")
    try:
        deadline = time.monotonic() + 30
        workers: list[int] = []
        while time.monotonic() < deadline and not workers:
            children = children_of(pid)
            workers = [c for c in children if b"--api-worker" in _read(f"/proc/{c}/cmdline")]
            time.sleep(0.1)
        assert len(workers) == 1, process.log_tail()
        listening = f"{port:04X}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the worker has bound the same port
            inodes = set()
            for fd in os.listdir(f"/proc/{workers[0]}/fd"):
                with contextlib.suppress(FileNotFoundError):  # closed meanwhile
                    inodes.add(os.readlink(f"/proc/{workers[0]}/fd/{fd}"))
            table = Path("/proc/net/tcp").read_text().splitlines()[1:]
            mine = [
                row
                for row in table
                if row.split()[1].endswith(":" + listening)
                and row.split()[3] == "0A"
                and f"socket:[{row.split()[9]}]" in inodes
            ]
            if mine:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the API worker does not listen on the port")
        assert process.process is not None
        os.kill(pid, signal.SIGTERM)
        assert process.process.wait(30) == 0, process.log_tail()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{workers[0]}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        stat = _read(f"/proc/{workers[0]}/stat")  # gone, or a zombie not reaped yet
        assert not stat or stat.rsplit(b")", 1)[1].split()[0] == b"Z"
    finally:
        process.stop()
