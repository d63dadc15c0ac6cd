"""The ``sealpost`` command as a user runs it: real processes, a real HTTP server, real files."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sealpost.app import Sealpost
from tests.support.records import store_old_record, submission

SEALPOST = str(Path(sys.executable).parent / "sealpost")


def run(args: list[str], env: dict[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SEALPOST, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,  # type: ignore[call-overload]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fresh_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a first start: nothing but a data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALPOST_")}
    env.update(SEALPOST_DATA_DIR=str(tmp_path / "data"), SEALPOST_LOG_LEVEL="WARNING")
    return env


@pytest.fixture
def server(fresh_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    fresh_env["SEALPOST_API_PORT"] = str(port)
    fresh_env["SEALPOST_BATCH_WINDOW_MS"] = "20"
    for name in ("SUBMISSION", "TLS", "INBOUND"):  # not the defaults: they may be taken
        fresh_env[f"SEALPOST_SMTP_{name}_PORT"] = str(free_port())
    proc = subprocess.Popen(
        [SEALPOST, "serve"],
        env=fresh_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            proc.kill()
            pytest.fail(f"sealpost serve did not start: {proc.communicate()[0]}")
        yield base
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
        assert "Traceback" not in output, output


def test_first_start_creates_keys_schema_and_serves_the_api(
    server: str, fresh_env: dict[str, str], tmp_path: Path
) -> None:
    keys = tmp_path / "data" / "keys"
    for key in keys.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert (tmp_path / "data" / "sealpost.db").exists()

    created = run(["tenant", "create", "Acme"], fresh_env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("sp_")
    assert httpx.get(f"{server}/v1/ledger/heads/latest").status_code == 401
    response = httpx.get(
        f"{server}/v1/ledger/heads/latest", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 404 and "no tree head" in response.json()["message"]
    assert httpx.get(f"{server}/openapi.json").json()["info"]["title"] == "Sealpost"
    again = run(["tenant", "create", "Acme"], fresh_env)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_keys_init_refuses_to_overwrite(fresh_env: dict[str, str], tmp_path: Path) -> None:
    first = run(["keys", "init", "--directory", str(tmp_path / "k")], fresh_env)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "k" / "seal.key").read_bytes()
    second = run(["keys", "init", "--directory", str(tmp_path / "k")], fresh_env)
    assert second.returncode == 1
    assert (tmp_path / "k" / "seal.key").read_bytes() == before


def test_keys_init_prints_the_verifier_key_of_the_note_key_in_use(
    fresh_env: dict[str, str], tmp_path: Path
) -> None:
    """With SEALPOST_LOG_NOTE_KEY (a key shared by every host), `keys init` makes no other
    note key in the keys directory and prints the shared key's verifier key, or says it is
    missing: a verifier key printed for a file nothing uses would be pinned by monitors."""
    from sealpost.ledger.note import NoteSigner
    from sealpost.pki.keys import init_note_key, load_note_key

    alone = run(["keys", "init", "--directory", str(tmp_path / "a")], fresh_env)
    assert alone.returncode == 0, alone.stderr
    assert (tmp_path / "a" / "log-note.key").exists()
    assert f"({tmp_path / 'a' / 'log-note.key'})" in alone.stdout

    shared = tmp_path / "shared" / "log-note.key"
    env = {**fresh_env, "SEALPOST_LOG_NOTE_KEY": str(shared)}
    missing = run(["keys", "init", "--directory", str(tmp_path / "b")], env)
    assert missing.returncode == 0, missing.stderr
    assert "does not exist" in missing.stdout and "log verifier key" not in missing.stdout
    assert not (tmp_path / "b" / "log-note.key").exists() and not shared.exists()

    shared.parent.mkdir()
    init_note_key(shared)
    from sealpost.config import Settings

    origin = fresh_env.get("SEALPOST_LEDGER_ORIGIN", Settings.model_fields["ledger_origin"].default)
    expected = NoteSigner(origin, load_note_key(shared)).verifier.vkey()
    found = run(["keys", "init", "--directory", str(tmp_path / "c")], env)
    assert found.returncode == 0, found.stderr
    assert f"log verifier key: {expected} ({shared})" in found.stdout
    assert not (tmp_path / "c" / "log-note.key").exists()


def test_verify_says_valid_names_what_was_altered_and_refuses_garbage(
    sealpost: Sealpost, tenant_id: str, tmp_path: Path, keys_dir: Path, fresh_env: dict[str, str]
) -> None:
    record = submission(tenant_id)
    sealpost.log_storage.append([record])
    sealpost.sequencer.seal_pending()
    bundle = sealpost.ledger.bundle(record.id, tenant_id)
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(bundle, indent=2))

    good = run(["verify", str(path), "--trust", str(keys_dir / "root-ca.pem")], fresh_env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "VALID" in good.stdout and "SubmissionAcceptance" in good.stdout

    bundle["record"]["recipient"]["address"] = "mallory@example.net"
    path.write_text(json.dumps(bundle))
    bad = run(["verify", str(path), "--json"], fresh_env)
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["valid"] is False
    assert [c["field"] for c in report["checks"] if not c["ok"]] == ["record"]

    path.write_bytes(b"GIF89a not a bundle")
    garbage = run(["verify", str(path)], fresh_env)
    assert garbage.returncode == 2 and "not JSON" in garbage.stderr

    path.write_bytes(b"%PDF-1.7 damaged")  # a certificate that cannot be read proves nothing
    damaged = run(["verify", str(path)], fresh_env)
    assert damaged.returncode == 1 and "damaged" in damaged.stdout


def test_verify_accepts_a_record_sealed_under_the_first_event_catalogue(
    sealpost: Sealpost, tenant_id: str, tmp_path: Path, keys_dir: Path, fresh_env: dict[str, str]
) -> None:
    from sealpost.ledger.records import record_from_json

    text = Path(__file__).parent / "testdata" / "ledger" / "record-v1-acceptance-by-recipient.json"
    old = record_from_json(json.loads(text.read_text().replace("TENANT", tenant_id)))
    store_old_record(sealpost.engine, old)
    sealpost.sequencer.seal_pending()
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(sealpost.ledger.bundle(old.id, tenant_id), indent=2))
    good = run(["verify", str(path), "--trust", str(keys_dir / "root-ca.pem")], fresh_env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "VALID" in good.stdout and "AcceptanceByRecipient" in good.stdout
