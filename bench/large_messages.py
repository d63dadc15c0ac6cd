"""Large messages: peak RSS growth of a real ``sealpost serve`` accepting 25 MiB attachments.

Issue 16 §2 (P6): a message's acceptance must not cost the process many times its size.  This
starts ``sealpost serve`` (role ``all``; SQLite, a fresh data directory; delivery and the
certificate issuer off, so that only acceptance is measured) and reads ``VmRSS``/``VmHWM``
from ``/proc/<pid>/status``:

- **idle RSS** after start-up (the API answering, nothing sent);
- **one SMTP message** with a ``--mib`` MiB attachment (aiosmtplib to 127.0.0.1): peak RSS
  growth = ``VmHWM`` after the ``250`` minus ``VmRSS`` before (the peak is reset first by
  writing ``5`` to ``/proc/<pid>/clear_refs``, which needs root);
- **``--parallel`` such messages at once** (one connection each): the process's peak RSS;
- **one REST send** (``POST /v1/communications`` with the attachment, base64 in JSON);
- **one ``GET .../original.eml``** of the SMTP message (read and discarded by the client).

    .venv/bin/python bench/large_messages.py            # 25 MiB, 20 in parallel
    .venv/bin/python bench/large_messages.py --quick    # 2 MiB, 3 in parallel (a smoke run)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import aiosmtplib
import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _report import figure

MIB = 1024 * 1024
SENDER = "sender@bench-large.example"
RCPT = "rcpt@sink.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """``VmHWM`` back to the current RSS (proc(5): clear_refs, value 5; needs root or the
    process's owner)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError as exc:
        raise SystemExit(f"cannot reset the peak RSS of {pid} ({exc}): run as root") from None


def attachment_message(payload: bytes) -> bytes:
    """multipart/mixed: a text part and ``payload`` as a base64 attachment (76-column lines)."""
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    boundary = f"=_large_{uuid.uuid4().hex}"
    head = (
        f"From: <{SENDER}>\r\nTo: <{RCPT}>\r\nDate: {formatdate()}\r\n"
        f"Message-ID: <{uuid.uuid4()}@bench-large.example>\r\nSubject: large attachment\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"An attachment follows.\r\n"
        f"--{boundary}\r\nContent-Type: application/octet-stream; name=blob.bin\r\n"
        f'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="blob.bin"'
        f"\r\n\r\n"
    ).encode()
    return head + encoded + f"--{boundary}--\r\n".encode()


class Server:
    """One ``sealpost serve`` in a scratch directory."""

    def __init__(self, work: Path, api_key: str | None = None) -> None:
        self.work = work
        self.smtp_port = free_port()
        self.api_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEALPOST_")}
        env.update(
            SEALPOST_DATA_DIR=str(work / "data"),
            SEALPOST_API_HOST="127.0.0.1",
            SEALPOST_API_PORT=str(self.api_port),
            SEALPOST_SMTP_HOST="127.0.0.1",
            SEALPOST_SMTP_SUBMISSION_PORT=str(self.smtp_port),
            SEALPOST_SMTP_TLS_PORT=str(free_port()),
            SEALPOST_SMTP_INBOUND_PORT=str(free_port()),
            SEALPOST_DELIVERY_ENABLED="false",
            SEALPOST_CERTIFICATES_ENABLED="false",
            SEALPOST_LOG_LEVEL="WARNING",
        )
        self.env = env
        self.exe = [sys.executable, "-m", "sealpost"]
        if api_key is None:
            api_key = self._tenant()
        self.api_key = api_key
        self.log = (work / "server.out").open("ab")
        self.proc = subprocess.Popen(
            [*self.exe, "serve", "--role", "all"],
            env=env,
            cwd=work,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid
        self._wait_ready()

    def _tenant(self) -> str:
        env, work = self.env, self.work
        out = subprocess.run(
            [*self.exe, "tenant", "create", "Bench"],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            check=True,
        )
        subprocess.run(
            [*self.exe, "tenant", "smtp-network", "Bench", "127.0.0.1/32"],
            env=env,
            cwd=work,
            capture_output=True,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1]

    def _wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.work / "server.out").read_text()[-2000:])
            with contextlib.suppress(OSError, httpx.HTTPError):
                socket.create_connection(("127.0.0.1", self.smtp_port), 1).close()
                r = httpx.get(f"{self.url}/healthz", timeout=2)
                if r.status_code < 500:
                    return
            time.sleep(0.3)
        raise RuntimeError("sealpost serve did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@contextlib.contextmanager
def server(work: Path | None = None, api_key: str | None = None) -> Iterator[Server]:
    """A fresh server for each measurement: the allocator keeps the memory an earlier one
    freed, which would hide the next one's growth."""
    fresh = work is None
    work = work or Path(tempfile.mkdtemp(prefix="sealpost-large."))
    srv = Server(work, api_key)
    try:
        yield srv
    finally:
        srv.stop()
        if fresh:
            shutil.rmtree(work, ignore_errors=True)


async def smtp_send(port: int, message: bytes) -> None:
    await aiosmtplib.send(
        message,
        sender=SENDER,
        recipients=[RCPT],
        hostname="127.0.0.1",
        port=port,
        start_tls=False,
        use_tls=False,
        timeout=600,
    )


def peak_growth(pid: int, action: object) -> tuple[float, float]:
    """(peak RSS growth MiB, peak RSS MiB) of ``pid`` while ``action()`` runs."""
    time.sleep(0.5)
    reset_peak(pid)
    before = status_kib(pid, "VmRSS")
    action()  # type: ignore[operator]
    hwm = status_kib(pid, "VmHWM")
    return (hwm - before) / 1024, hwm / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=float, default=25.0, help="attachment size in MiB")
    ap.add_argument("--parallel", type=int, default=20, help="messages sent at once")
    ap.add_argument("--quick", action="store_true", help="2 MiB, 3 in parallel")
    args = ap.parse_args()
    if args.quick:
        args.mib, args.parallel = 2.0, 3
    cmd = "python bench/large_messages.py" + (" --quick" if args.quick else "")
    payload = os.urandom(int(args.mib * MIB))
    message = attachment_message(payload)
    wire_mb = len(message) / 1e6
    wire_mib = len(message) / MIB
    print(f"attachment {args.mib:g} MiB, message {wire_mb:.1f} MB ({wire_mib:.1f} MiB)")
    work = Path(tempfile.mkdtemp(prefix="sealpost-large."))
    try:
        with server(work) as srv:
            key = srv.api_key
            time.sleep(3.0)
            idle = status_kib(srv.pid, "VmRSS") / 1024
            print(f"idle RSS after start-up: {idle:.1f} MiB")
            figure(
                "large: idle RSS (serve, role all)",
                idle,
                "MiB",
                target=150 / 1.048576,
                better="max",
                command=cmd,
            )

            growth, _ = peak_growth(srv.pid, lambda: asyncio.run(smtp_send(srv.smtp_port, message)))
            print(f"SMTP, one message: peak RSS growth {growth:.1f} MiB ({growth / wire_mib:.2f}x)")
            figure(
                "large: SMTP one message, peak RSS growth / message size",
                growth / wire_mib,
                "x",
                target=2.0,
                better="max",
                command=cmd,
            )

        with server(work, key) as srv:

            async def many() -> None:
                await asyncio.gather(
                    *(
                        smtp_send(srv.smtp_port, attachment_message(payload))
                        for _ in range(args.parallel)
                    )
                )

            t0 = time.monotonic()
            growth_n, peak_n = peak_growth(srv.pid, lambda: asyncio.run(many()))
            print(
                f"SMTP, {args.parallel} in parallel: peak RSS {peak_n:.1f} MiB (growth "
                f"{growth_n:.1f} MiB, {time.monotonic() - t0:.1f} s)"
            )
            figure(
                f"large: SMTP {args.parallel} in parallel, peak RSS",
                peak_n,
                "MiB",
                target=1024,
                better="max",
                command=cmd,
            )

        body = {
            "from": SENDER,
            "to": [RCPT],
            "subject": "large attachment (REST)",
            "text": "An attachment follows.",
            "attachments": [
                {"filename": "blob.bin", "content": base64.b64encode(payload).decode()}
            ],
        }
        headers = {"Authorization": f"Bearer {key}"}
        sent: list[str] = []
        with server(work, key) as srv:

            def rest() -> None:
                r = httpx.post(
                    f"{srv.url}/v1/communications", json=body, headers=headers, timeout=600
                )
                r.raise_for_status()
                sent.append(r.json()["communications"][0]["id"])

            growth_r, _ = peak_growth(srv.pid, rest)
            print(f"REST send: peak RSS growth {growth_r:.1f} MiB ({growth_r / wire_mib:.2f}x)")
            figure(
                "large: REST send, peak RSS growth / message size",
                growth_r / wire_mib,
                "x",
                target=2.0,
                better="max",
                command=cmd,
            )

        with server(work, key) as srv:

            def original() -> None:
                url = f"{srv.url}/v1/communications/{sent[0]}/original.eml"
                size = 0
                with httpx.stream("GET", url, headers=headers, timeout=600) as r:
                    r.raise_for_status()
                    for chunk in r.iter_bytes():
                        size += len(chunk)
                assert size > args.mib * MIB, size

            growth_g, _ = peak_growth(srv.pid, original)
            print(
                f"GET original.eml: peak RSS growth {growth_g:.1f} MiB ({growth_g / wire_mib:.2f}x)"
            )
            figure(
                "large: GET original.eml, peak RSS growth / message size",
                growth_g / wire_mib,
                "x",
                target=2.0,
                better="max",
                command=cmd,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
