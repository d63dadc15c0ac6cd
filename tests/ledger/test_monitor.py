"""``sealpost ledger monitor``: a log's checkpoints checked against each other from its tiles.

The unit tests feed :func:`check` tampered notes, tiles and histories; the last test runs the
command as a subprocess against real ``sealpost serve`` processes, the log rewritten between
two of its runs.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from sealpost.app import Sealpost, build
from sealpost.config import Settings
from sealpost.ledger import merkle
from sealpost.ledger.monitor import LogClient, LogMisbehaved, Verified, check, open_checkpoint
from sealpost.ledger.note import signature_line
from sealpost.ledger.tiles import read_tile
from sealpost.ledger.tree_head import Checkpoint
from tests.support.records import submission
from tests.support.serve import SealpostProcess, _sealpost_command, serve_env
from tests.support.smtp_peer import free_port


def _sealed_note(sealpost: Sealpost, tenant_id: str, size: int) -> str:
    have = sealpost.log_storage.state().tree_size
    sealpost.log_storage.append([submission(tenant_id, n) for n in range(have, size)])
    head = sealpost.sequencer.seal_pending()
    assert head is not None and head.tree_size == size
    note = head.signed_note()
    assert note is not None
    return note


def _fetch(sealpost: Sealpost):  # type: ignore[no-untyped-def]
    size = sealpost.log_storage.state().tree_size
    return lambda level, index, width: read_tile(sealpost.log_storage, level, index, width, size)


def test_a_growing_log_passes_and_each_kind_of_misbehaviour_is_named(
    sealpost: Sealpost, tenant_id: str
) -> None:
    verifier = sealpost.note_signer.verifier
    small = _sealed_note(sealpost, tenant_id, 5)
    first = check(None, small, verifier, _fetch(sealpost))
    large = _sealed_note(sealpost, tenant_id, 300)
    second = check(first, large, verifier, _fetch(sealpost))
    assert second.checkpoint.tree_size == 300

    with pytest.raises(LogMisbehaved, match="the tree shrank") as shrank:
        check(second, small, verifier, _fetch(sealpost))
    assert shrank.value.notes == (large, small)

    with pytest.raises(LogMisbehaved, match="does not verify"):
        check(first, large.replace("\n300\n", "\n301\n"), verifier, _fetch(sealpost))

    def flipped(level: int, index: int, width: int) -> bytes:
        data = bytearray(_fetch(sealpost)(level, index, width))
        data[-1] ^= 1
        return bytes(data)

    with pytest.raises(LogMisbehaved, match="tiles do not give the root"):
        check(first, large, verifier, flipped)

    # the same key signed another tree of size 5: the log forked
    old = open_checkpoint(verifier, small)
    other = Checkpoint(old.origin, 5, merkle.leaf_hash(b"other"), old.time)
    text = other.to_text()
    forged = text + "\n" + signature_line(old.origin, sealpost.note_signer.sign(text))
    with pytest.raises(LogMisbehaved, match=r"fork: checkpoint \(size 300, .*\(size 5, ") as fork:
        check(Verified(other, forged), large, verifier, _fetch(sealpost))
    assert fork.value.notes == (forged, large)


# -- the command against real servers ----------------------------------------------------------

ORIGIN = "monitor.sealpost.test/log"


def _monitor(url: str, vkey: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *_sealpost_command(),
            "ledger",
            "monitor",
            url,
            "--key",
            vkey,
            "--state",
            str(state),
            "--once",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _state_size(path: Path) -> int:
    """The tree size of the last checkpoint a monitor verified (its state file)."""
    return int(json.loads(path.read_text())["checkpoint"].split("\n")[1])


def _wait_for_size(url: str, size: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/checkpoint")
        if answer.status_code == 200 and answer.text.split("\n")[1] == str(size):
            return
        time.sleep(0.05)
    raise AssertionError(f"the log did not reach size {size}")


def test_the_monitor_follows_a_served_log_and_exits_non_zero_on_a_rewritten_copy(
    tmp_path: Path,
) -> None:
    keys_dir = tmp_path / "keys"
    honest_db, rewritten_db = tmp_path / "honest.db", tmp_path / "rewritten.db"
    api_port = free_port()
    url = f"http://127.0.0.1:{api_port}/log"

    def settings(db: Path) -> Settings:
        return Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=tmp_path / "data",
            keys_dir=keys_dir,
            database_url=f"sqlite:///{db}",
            ledger_origin=ORIGIN,
        )

    def server(db: Path, name: str) -> SealpostProcess:
        env = serve_env(
            tmp_path / "data",
            keys_dir,
            free_port(),
            SEALPOST_DATABASE_URL=f"sqlite:///{db}",
            SEALPOST_API_PORT=str(api_port),
            SEALPOST_LEDGER_ORIGIN=ORIGIN,
            SEALPOST_BATCH_WINDOW_MS="20",
        )
        (tmp_path / name).mkdir()
        return SealpostProcess(tmp_path / name, env, int(env["SEALPOST_SMTP_SUBMISSION_PORT"]))

    sp = build(settings(honest_db))
    tenant = sp.tenants.create(f"monitor-{uuid.uuid4().hex[:6]}").id
    vkey = sp.note_signer.verifier.vkey()
    state = tmp_path / "monitor-state.json"
    honest = server(honest_db, "honest")
    honest.start("api")
    # a second monitor polls all along: through the growth, the outage and the rewritten log
    polling_state = tmp_path / "polling-state.json"
    polling = subprocess.Popen(
        [
            *_sealpost_command(),
            "ledger",
            "monitor",
            url,
            "--key",
            vkey,
            "--interval",
            "0.2",
            "--state",
            str(polling_state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert httpx.get(f"{url}/verifier-key").text.strip() == vkey
        cli_vkey = honest.run("ledger", "verifier-key").strip()
        assert cli_vkey == vkey
        size = 0
        for grow in (3, 250, 60):  # 3, 253, 313: level-1 tiles from the third head on
            sp.log_storage.append([submission(tenant, size + n) for n in range(grow)])
            size += grow
            _wait_for_size(url, size)
            run = _monitor(url, vkey, state)
            assert run.returncode == 0, run.stdout + run.stderr
            assert f"ok: {ORIGIN} at size {size}" in run.stdout
        assert _state_size(state) == 313
        deadline = time.monotonic() + 30
        while not polling_state.exists() or _state_size(polling_state) != 313:
            assert time.monotonic() < deadline and polling.poll() is None
            time.sleep(0.1)
    finally:
        honest.stop()
    sp.engine.dispose()

    # a copy of the log with record 100 changed, resealed with the same keys, a bit longer
    with sqlite3.connect(honest_db) as source, sqlite3.connect(rewritten_db) as copy:
        source.backup(copy)
        copy.execute("UPDATE evidence_records SET leaf_index = NULL")
        for table in ("ledger_nodes", "tree_heads", "ledger_state"):
            copy.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed names)
        canonical = copy.execute(
            "SELECT canonical FROM evidence_records ORDER BY seq LIMIT 1 OFFSET 100"
        ).fetchone()[0]
        changed = bytes(canonical).replace(b"250 2.0.0 queued", b"250 2.0.0 QUEUED")
        assert changed != canonical
        copy.execute(
            "UPDATE evidence_records SET canonical = ?, leaf_hash = ? WHERE canonical = ?",
            (changed, merkle.leaf_hash(changed), canonical),
        )
    forger = build(settings(rewritten_db))
    forger.log_storage.append([submission(tenant, size + n) for n in range(7)])
    heads = forger.sequencer.seal_all()
    assert heads[-1].tree_size == size + 7
    forger.engine.dispose()

    rewritten = server(rewritten_db, "rewritten")
    rewritten.start("api")
    try:
        _wait_for_size(url, size + 7)
        run = _monitor(url, vkey, state)
        assert run.returncode == 1, run.stdout + run.stderr
        assert "LOG MISBEHAVED: fork" in run.stderr
        assert f"size {size + 7}, root" in run.stderr and f"size {size}, root" in run.stderr
        assert run.stderr.count(f"\u2014 {ORIGIN} ") == 2  # both signed notes, the evidence
        # the state still holds the honest head: the next run says the same
        assert _state_size(state) == size
        assert _monitor(url, vkey, state).returncode == 1
        out, err = polling.communicate(timeout=30)  # it stops by itself, on the fork
        assert polling.returncode == 1, out + err
        assert "could not check the log (retrying)" in err  # while no server answered
        assert "LOG MISBEHAVED: fork" in err
        assert "ok: monitor.sealpost.test/log at size 313" in out
    finally:
        rewritten.stop()
        if polling.poll() is None:
            polling.kill()
            polling.communicate()


class _Hostile(BaseHTTPRequestHandler):
    """A "log" answering a checkpoint of 1 MiB and tiles of 9,000 bytes."""

    def do_GET(self) -> None:
        body = b"x" * (1 << 20) if self.path.endswith("/checkpoint") else b"\0" * 9000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def test_an_oversized_answer_is_refused_as_it_streams_in() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = LogClient(f"http://127.0.0.1:{server.server_address[1]}/log")
    try:
        with pytest.raises(LogMisbehaved, match="over 65536 bytes"):
            client.checkpoint_note()
        with pytest.raises(LogMisbehaved, match="over 8192 bytes"):
            client.tile(0, 0, 256)
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def test_one_monitor_per_state_file_and_a_state_that_cannot_be_saved_is_exit_2(
    sealpost: Sealpost, tenant_id: str, tmp_path: Path
) -> None:
    """Two monitors sharing a state file would overwrite each other's progress (and could move
    it back to a smaller checkpoint): the second is refused while the first runs.  A state
    that cannot be written is StateUnusable (exit 2), leaving no temporary file behind."""
    from sealpost.ledger.monitor import Monitor, MonitorState, StateUnusable

    verifier = sealpost.note_signer.verifier
    verified = check(None, _sealed_note(sealpost, tenant_id, 3), verifier, _fetch(sealpost))
    state_path = tmp_path / "state" / "log.json"
    first = Monitor("http://127.0.0.1:9/", verifier, MonitorState(state_path))
    try:
        with pytest.raises(StateUnusable, match="another monitor") as refused:
            Monitor("http://127.0.0.1:9/", verifier, MonitorState(state_path))
        assert refused.value.exit_code == 2
        first.state.save(first.url, verifier, verified)
        assert json.loads(state_path.read_text())["checkpoint"] == verified.note
    finally:
        first.close()
    again = Monitor("http://127.0.0.1:9/", verifier, MonitorState(state_path))  # lock released
    assert again.last is not None and again.last.note == verified.note
    again.close()

    blocked = tmp_path / "blocked"
    (blocked / "log.json").mkdir(parents=True)  # the rename onto it fails after the write
    state = MonitorState(blocked / "log.json")
    with pytest.raises(StateUnusable, match="cannot save") as failed:
        state.save("http://127.0.0.1:9/", verifier, verified)
    assert failed.value.exit_code == 2
    assert [p.name for p in blocked.iterdir()] == ["log.json"]  # no temporary file left
