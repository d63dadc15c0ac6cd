"""``sealpost`` as a subprocess, the way an operator runs it: commands and one ``serve``."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def serve_env(data_dir: Path, keys_dir: Path, submission_port: int, **extra: str) -> dict[str, str]:
    """This environment minus inherited SEALPOST_* settings, plus a submission port alone
    (implicit-TLS and inbound listeners off) and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALPOST_")}
    env.update(
        {
            "SEALPOST_DATA_DIR": str(data_dir),
            "SEALPOST_KEYS_DIR": str(keys_dir),
            "SEALPOST_SMTP_SUBMISSION_PORT": str(submission_port),
            "SEALPOST_SMTP_TLS_PORT": "",  # empty: that listener is off
            "SEALPOST_SMTP_INBOUND_PORT": "",
            "SEALPOST_LOG_LEVEL": "WARNING",
            **extra,
        }
    )
    return env


def _sealpost_command() -> list[str]:
    script = Path(sys.executable).with_name("sealpost")
    if script.exists():
        return [str(script)]
    found = shutil.which("sealpost")
    if found:
        return [found]
    return [sys.executable, "-c", "from sealpost.cli import main; main()"]


class SealpostProcess:
    """``sealpost`` commands and one ``serve`` subprocess, with one environment."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        submission_port: int,
        *,
        separate_stderr: bool = False,
        new_session: bool = False,
    ) -> None:
        self.workdir = workdir
        self.env = env
        self.submission_port = submission_port
        self.separate_stderr = separate_stderr
        """Write ``serve``'s stderr (its log lines) to ``serve-N.err``, apart from stdout."""
        self.new_session = new_session
        """Start ``serve`` in a session (process group) of its own, as a service manager
        does: a signal to that group reaches it and nothing else of the test."""
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.start_timeout = 30.0
        """Seconds a start may take (imports, keys, migrations): more on a busy machine."""

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [*_sealpost_command(), *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
        return done.stdout.decode()

    def start(self, role: str = "all") -> int:
        """Start ``serve --role role``; ready once it answers SMTP (``api``: HTTP on
        SEALPOST_API_PORT; ``worker`` and ``dispatcher``, which listen to nothing: once they
        say they run).
        Returns its pid."""
        self.starts += 1
        log = (self.workdir / f"serve-{self.starts}.log").open("wb")
        errors = (self.workdir / f"serve-{self.starts}.err").open("wb")
        self.process = subprocess.Popen(
            [*_sealpost_command(), "serve", "--role", role],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=errors if self.separate_stderr else subprocess.STDOUT,
            start_new_session=self.new_session,
        )
        log.close()
        errors.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"sealpost serve exited: {self.log_tail()}")
            if role in ("worker", "dispatcher"):
                if f"role {role} running" in self._log(self.starts):
                    return self.process.pid
                time.sleep(0.05)
                continue
            if role == "api":
                if self._answers_http():
                    return self.process.pid
                time.sleep(0.05)
                continue
            try:
                with smtplib.SMTP("127.0.0.1", self.submission_port, timeout=5) as probe:
                    if probe.noop()[0] == 250:
                        return self.process.pid
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)
        raise AssertionError(
            f"sealpost serve did not listen in {self.start_timeout:g} s: {self.log_tail()}"
        )

    def kill(self) -> int:
        assert self.process is not None
        pid = self.process.pid
        os.kill(pid, signal.SIGKILL)
        self.process.wait(10)
        return pid

    def stop(self) -> None:
        """Always safe (finally blocks): SIGTERM, then SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def _answers_http(self) -> bool:
        url = f"http://127.0.0.1:{self.env['SEALPOST_API_PORT']}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5):
                return True
        except urllib.error.HTTPError:
            return True  # it answers (503 while a loop settles)
        except OSError:
            return False

    def _log(self, start: int) -> str:
        return (self.workdir / f"serve-{start}.log").read_text(errors="replace")

    def stderr_lines(self) -> list[str]:
        """Every line ``serve`` wrote on stderr (``separate_stderr``), all its starts."""
        return [
            line
            for path in sorted(self.workdir.glob("serve-*.err"))
            for line in path.read_text(errors="replace").splitlines()
        ]

    def log_tail(self) -> str:
        logs = sorted(self.workdir.glob("serve-*.log")) + sorted(self.workdir.glob("serve-*.err"))
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in logs)


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc: acceptor and API worker processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found
