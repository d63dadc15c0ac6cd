"""C2SP signed notes (Ed25519): the spec's own example, round trips and tampered notes."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealpost.app import build
from sealpost.config import Settings
from sealpost.ledger.note import NoteError, NoteSigner, NoteVerifier, signature_line
from sealpost.pki.keys import init_keys

SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
"""c2sp.org/signed-note, "Verifier keys", "Example"."""


def test_the_example_of_the_signed_note_spec_verifies() -> None:
    verifier = NoteVerifier.parse(SPEC_VKEY)
    assert verifier.vkey() == SPEC_VKEY
    assert verifier.open(SPEC_NOTE) == "This is an example message.\n"


def test_a_changed_text_or_signature_is_refused() -> None:
    verifier = NoteVerifier.parse(SPEC_VKEY)
    with pytest.raises(NoteError, match="does not verify"):
        verifier.open(SPEC_NOTE.replace("example message", "exemplary message"))
    with pytest.raises(NoteError, match=r"no signature by example\.com/foo"):
        verifier.open(SPEC_NOTE.replace("\u2014 example.com/foo", "\u2014 example.com/bar"))
    with pytest.raises(NoteError):
        verifier.open("This is an example message.\n")  # no signature at all
    with pytest.raises(NoteError, match="control"):
        verifier.open(SPEC_NOTE.replace("This", "Th\ris"))


def _signer_whose_vkey_has_a_plus(name: str) -> NoteSigner:
    while True:  # base64 holds "+" in 1 key of 2 or so: the parser must not split on it
        signer = NoteSigner(name, Ed25519PrivateKey.generate())
        if "+" in signer.verifier.vkey().split("+", 2)[2]:
            return signer


def test_signatures_by_other_keys_are_ignored_and_the_log_key_still_counts() -> None:
    signer = _signer_whose_vkey_has_a_plus("log.example/a")
    text = "log.example/a\n5\nAAAA\n"
    witness = NoteSigner("witness.example/w", Ed25519PrivateKey.generate())
    note = (
        text
        + "\n"
        + signature_line(witness.name, witness.sign(text))
        + signature_line(signer.name, signer.sign(text))
    )
    verifier = NoteVerifier.parse(signer.verifier.vkey())
    assert verifier == signer.verifier
    assert verifier.open(note) == text


@pytest.mark.parametrize(
    "vkey",
    [
        "example.com/foo+530d903a",
        "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",  # wrong id
        "example.com/foo+530d903a+" + base64.b64encode(b"\x02" + b"\0" * 32).decode(),
        "example.com/foo+530d903a+not-base64",
        "+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    ],
)
def test_a_bad_verifier_key_is_refused(vkey: str) -> None:
    with pytest.raises(NoteError):
        NoteVerifier.parse(vkey)


def test_a_keys_directory_older_than_the_note_key_gets_one_once(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    init_keys(keys)
    (keys / "log-note.key").unlink()  # a keys directory made before signed notes

    def vkey() -> str:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=tmp_path / "data",
            keys_dir=keys,
            ledger_origin="old.example/log",
        )
        sp = build(settings)
        try:
            return sp.note_signer.verifier.vkey()
        finally:
            sp.engine.dispose()

    first = vkey()
    assert stat.S_IMODE((keys / "log-note.key").stat().st_mode) == 0o600
    assert first.startswith("old.example/log+")
    assert vkey() == first  # never replaced: it is the log's identity to its monitors
