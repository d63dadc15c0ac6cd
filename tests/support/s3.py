"""A real S3 API server on 127.0.0.1 for the blob-store tests: moto in server mode, as its own
process (``python -m moto.server``), spoken to over HTTP by boto3 exactly as an AWS, MinIO or
Ceph endpoint would be.  Each test gets a bucket of its own."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import boto3
from pydantic import SecretStr

ACCESS_KEY_ID = "sealpost-test"
SECRET_ACCESS_KEY = "sealpost-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def client(self) -> Any:
        """A plain boto3 client: what an operator (or an attacker) does behind Sealpost."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def blob_settings(self, bucket: str, prefix: str) -> dict[str, object]:
        """The Settings fields that keep a Sealpost's blobs in ``bucket`` under ``prefix``."""
        return {
            "blob_url": f"s3://{bucket}/{prefix}",
            "blob_s3_endpoint_url": self.endpoint_url,
            "blob_s3_region": REGION,
            "blob_s3_access_key_id": ACCESS_KEY_ID,
            "blob_s3_secret_access_key": SecretStr(SECRET_ACCESS_KEY),
            "blob_s3_addressing_style": "path",
        }

    def blob_env(self, bucket: str, prefix: str) -> dict[str, str]:
        """The same as ``SEALPOST_*`` variables, for ``sealpost serve`` processes."""
        return {
            f"SEALPOST_{name.upper()}": (
                value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            )
            for name, value in self.blob_settings(bucket, prefix).items()
        }

    def new_bucket(self) -> str:
        name = f"sealpost-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        found: list[str] = []
        paginator = self.client().get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            found.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(found)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server(timeout: float = 30.0) -> Iterator[S3Server | str]:
    """A running moto server, or the reason it could not start (a string)."""
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        yield f"moto[server] is not installed ({exc})"
        return
    port = _free_port()
    # its request log goes to a file: a pipe nobody reads would fill and stall the server
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            yield _wait_for(S3Server(f"http://127.0.0.1:{port}"), process, log, timeout)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for(
    server: S3Server, process: subprocess.Popen[bytes], log: IO[bytes], timeout: float
) -> S3Server | str:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            log.seek(0)
            err = log.read().decode(errors="replace")
            return f"moto server exited with {process.returncode}: {err[-500:]}"
        try:
            server.client().list_buckets()
            return server
        except Exception:
            if time.monotonic() > deadline:
                return f"moto server did not answer on {server.endpoint_url} in {timeout} s"
            time.sleep(0.2)
