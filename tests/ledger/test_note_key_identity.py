"""The log's note key is its identity: it never changes silently, across hosts or restarts.

Monitors and witnesses pin the log's verifier key.  Two Sealpost instances over one database
(two sequencer candidates) with different note keys must not both sign heads: the second
refuses to start, or, when it started before the log had any signed head, to seal.  A missing
key is only made for a log none of whose heads is signed; ``keys init --force`` keeps it; a
leftover temporary file of a killed process does not block its creation.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sealpost.app import Sealpost, build
from sealpost.config import Settings
from sealpost.ledger.errors import NoteKeyMismatch
from sealpost.ledger.note import NoteSigner
from sealpost.ledger.tables import tree_heads
from sealpost.pki.errors import KeyMaterialError
from sealpost.pki.keys import init_keys, init_note_key, load_note_key
from tests.support.records import submission


def _key_id(path: Path, origin: str) -> str:
    return NoteSigner(origin, load_note_key(path)).verifier.key_id.hex()


def _other(settings: Settings, tmp_path: Path, **update: object) -> Settings:
    """The settings of a second host: same database, keys of its own (new settings: a
    ``model_copy`` would keep the first host's cached keys directory)."""
    values: dict[str, object] = {
        "data_dir": tmp_path / "host-b",
        "database_url": settings.database_url,
        "keys_dir": settings.keys_dir,
        "batch_window_ms": settings.batch_window_ms,
        "ledger_origin": settings.ledger_origin,
        **update,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def _heads(sp: Sealpost) -> int:
    with sp.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(tree_heads)).scalar_one())


def test_a_second_host_with_another_note_key_refuses_to_start(
    sealpost: Sealpost, settings: Settings, tenant_id: str, tmp_path: Path
) -> None:
    sealpost.log_storage.append([submission(tenant_id, 0)])
    assert sealpost.sequencer.seal_all()
    expected = sealpost.note_signer.verifier.key_id.hex()
    foreign = tmp_path / "foreign-note.key"
    init_note_key(foreign)
    own = _key_id(foreign, settings.ledger_origin)

    with pytest.raises(KeyMaterialError) as refused:
        build(_other(settings, tmp_path, log_note_key=foreign))
    assert expected in refused.value.message
    assert own in refused.value.message
    assert "SEALPOST_LOG_NOTE_KEY" in refused.value.message


def test_a_missing_note_key_is_not_made_once_the_log_has_signed_heads(
    sealpost: Sealpost, settings: Settings, tenant_id: str, tmp_path: Path
) -> None:
    sealpost.log_storage.append([submission(tenant_id, 0)])
    assert sealpost.sequencer.seal_all()
    expected = sealpost.note_signer.verifier.key_id.hex()
    missing = tmp_path / "host-b-keys" / "log-note.key"

    # a host of its own (or an emptied keys directory): its X.509 keys are made, not the note key
    with pytest.raises(KeyMaterialError) as refused:
        build(_other(settings, tmp_path, keys_dir=tmp_path / "host-b-keys"))
    assert expected in refused.value.message
    assert "SEALPOST_LOG_NOTE_KEY" in refused.value.message
    assert not missing.exists()
    assert (tmp_path / "host-b-keys" / "seal.pem").exists()


def test_hosts_sharing_the_note_key_take_over_from_each_other(
    sealpost: Sealpost, settings: Settings, tenant_id: str, tmp_path: Path
) -> None:
    sealpost.log_storage.append([submission(tenant_id, 0)])
    assert sealpost.sequencer.seal_all()
    shared = settings.resolved_log_note_key
    other = build(_other(settings, tmp_path, keys_dir=tmp_path / "b", log_note_key=shared))
    try:
        other.log_storage.append([submission(tenant_id, 1)])
        heads = other.sequencer.seal_all()
        assert heads
        assert heads[-1].note_signature is not None
        assert heads[-1].note_signature[:4] == sealpost.note_signer.verifier.key_id
    finally:
        other.engine.dispose()


def test_a_sequencer_started_on_a_fresh_log_does_not_seal_once_another_key_signed_it(
    sealpost: Sealpost, settings: Settings, tenant_id: str, tmp_path: Path
) -> None:
    # both start on a fresh log: each may make a key, the first head decides the identity
    other = build(_other(settings, tmp_path, keys_dir=tmp_path / "b"))
    try:
        first = sealpost.note_signer.verifier.key_id.hex()
        second = other.note_signer.verifier.key_id.hex()
        assert first != second
        sealpost.log_storage.append([submission(tenant_id, 0)])
        assert sealpost.sequencer.seal_all()
        sealpost.log_storage.append([submission(tenant_id, 1)])
        before = _heads(sealpost)

        with pytest.raises(NoteKeyMismatch) as refused:
            other.sequencer.seal_pending()
        assert first in refused.value.message
        assert second in refused.value.message
        assert _heads(sealpost) == before  # the X.509 seal did not go on alone either

        # the loop does not retry holding the lease: it stops and releases it
        stop = threading.Event()
        with pytest.raises(NoteKeyMismatch):
            other.sequencer.run(stop, window_seconds=0.01, lease_seconds=5.0)
        assert sealpost.log_storage.acquire_lease(sealpost.sequencer.holder, 5.0)
        assert sealpost.sequencer.seal_all()  # the log's own key goes on
    finally:
        other.engine.dispose()


def test_keys_init_force_renews_the_certificates_and_keeps_the_note_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    files = init_keys(keys)
    note = files.log_note_key.read_bytes()
    seal = files.seal_cert.read_bytes()

    init_keys(keys, force=True)
    assert files.seal_cert.read_bytes() != seal
    assert files.log_note_key.read_bytes() == note
    assert stat.S_IMODE(files.log_note_key.stat().st_mode) == 0o600


def test_keys_init_makes_a_missing_note_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    files = init_keys(keys)
    files.log_note_key.unlink()
    init_keys(keys, force=True)
    load_note_key(files.log_note_key)


def test_a_leftover_temporary_file_does_not_block_the_note_key(tmp_path: Path) -> None:
    path = tmp_path / "log-note.key"
    for pid in (os.getpid(), 1):  # a process killed mid-write, e.g. pid 1 in a container
        stale = tmp_path / f".log-note.key.{pid}"
        stale.write_bytes(b"half a key")
        stale.chmod(0o600)

    init_note_key(path)
    load_note_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    leftovers = {p.name for p in tmp_path.iterdir()} - {"log-note.key"}
    assert leftovers == {f".log-note.key.{os.getpid()}", ".log-note.key.1"}  # only the stale


def test_the_note_key_is_never_replaced_and_a_failed_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log-note.key"
    init_note_key(path)
    first = path.read_bytes()
    with pytest.raises(FileExistsError):  # another process won: its key stays
        init_note_key(path)
    assert path.read_bytes() == first

    def broken_link(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "link", broken_link)
    with pytest.raises(OSError, match="space"):
        init_note_key(tmp_path / "other.key")
    assert {p.name for p in tmp_path.iterdir()} == {"log-note.key"}


def test_a_host_that_never_seals_starts_without_the_note_key_and_makes_none(
    sealpost: Sealpost, settings: Settings, tenant_id: str, tmp_path: Path
) -> None:
    sealpost.log_storage.append([submission(tenant_id, 0)])
    assert sealpost.sequencer.seal_all()
    keys = tmp_path / "smtp-host-keys"
    smtp_host = build(_other(settings, tmp_path, keys_dir=keys, sequencer_enabled=False))
    try:
        assert not (keys / "log-note.key").exists()
        with pytest.raises(KeyMaterialError, match="SEALPOST_LOG_NOTE_KEY"):
            _ = smtp_host.note_signer  # what the API would serve: refused, not made up
    finally:
        smtp_host.engine.dispose()


def test_a_note_key_copied_in_before_the_first_start_is_kept(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    init_note_key(keys / "log-note.key")  # copied from the host that made the log's key
    copied = (keys / "log-note.key").read_bytes()
    files = init_keys(keys)  # the embedded PKI of a new host's first start
    assert files.seal_cert.exists()
    assert files.log_note_key.read_bytes() == copied
